"""Sound bound propagation: interval (IBP), CROWN/DeepPoly back-substitution, alpha-CROWN, and
branch and bound on the input.

Algorithms (``interval``, ``backward``, ``optimized``, ``bab``) are separate from the per-layer
relaxations (``operators/``), as in auto_LiRPA. Supported layers: Linear, Conv2d, ReLU, Flatten,
BatchNorm (eval), ElementwiseAffine, Identity, Dropout (eval), nested Sequential, and
:class:`nnmend.layers.SumOfNetworks` (bounded symbolically).
"""
from .api import METHODS, alpha_crown_bounds, bound, crown_bounds, crown_linear_form, interval_bounds

__all__ = ["bound", "interval_bounds", "crown_bounds", "alpha_crown_bounds", "crown_linear_form", "METHODS"]
