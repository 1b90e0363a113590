"""Sound bound propagation: interval (IBP), CROWN/DeepPoly back-substitution, alpha-CROWN, and branch
and bound on the input or on ReLU neurons.

Algorithms (``interval``, ``backward``, ``forward``, ``optimized``, ``bab``, ``relu_split``) are separate from
the per-operator relaxations (``operators/``), as in auto_LiRPA, and walk the network as a graph
(``graph.compile_network``): ``nn.Sequential``, :class:`nnmend.layers.SumOfNetworks`,
:class:`nnmend.graph.GraphNetwork` and any module ``torch.fx`` traces. Operators: Linear, Conv1d/Conv2d
(every padding mode), ConvTranspose2d, BatchNorm (eval), ElementwiseAffine, ReLU, LeakyReLU, Sigmoid,
Tanh, Sign, MaxPool, AvgPool/AdaptiveAvgPool, Softmax (interval), Flatten/Unflatten/Reshape, Transpose, Pad,
Slice, Gather, Concat, Add, Sub, constant MatMul, Identity, Dropout (eval). Anything else, and any
attribute a relaxation does not model, is refused naming the node.

:class:`BoundedNetwork` is the auto_LiRPA-style object form: built once from a network and its input
shape, ``compute_bounds(lo, hi, C, method="crown")``.
"""
from .api import METHODS, alpha_crown_bounds, bound, crown_bounds, crown_linear_form, interval_bounds
from .bounded import BoundedNetwork

__all__ = ["bound", "interval_bounds", "crown_bounds", "alpha_crown_bounds", "crown_linear_form", "METHODS",
           "BoundedNetwork"]
