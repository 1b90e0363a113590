"""One relaxation per operator type; ``OPERATORS`` maps an ``nn.Module`` class to its relaxation.

Supporting a new layer means writing one ``BoundOp`` subclass and listing it here.
"""
from .base import BoundOp
from .convolution import BoundConv2d
from .linear import BoundLinear
from .normalization import BoundBatchNorm, BoundElementwiseAffine
from .relu import BoundReLU, adaptive_slope
from .shape import BoundFlatten, BoundIdentity

OPERATORS: dict[type, type[BoundOp]] = {
    t: op for op in (BoundLinear, BoundConv2d, BoundBatchNorm, BoundElementwiseAffine, BoundReLU, BoundFlatten, BoundIdentity)
    for t in op.types
}

__all__ = ["BoundOp", "OPERATORS", "BoundReLU", "adaptive_slope"]
