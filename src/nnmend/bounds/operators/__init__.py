"""One relaxation per operator type; ``OPERATORS`` maps an ``nn.Module`` class to its relaxation.

Supporting a new layer means writing one ``BoundOp`` subclass and listing it here. Each relaxation
refuses (``BoundOp.check``) every attribute it does not model exactly.
"""
from .base import BoundOp, VjpLinear
from .convolution import BoundConv, BoundConvTranspose2d
from .linear import BoundConstMatMul, BoundLinear
from .nonlinear import BoundPower, BoundProduct, BoundRounding, BoundSign, BoundStep
from .normalization import BoundBatchNorm, BoundElementwiseAffine
from .pooling import BoundMaxPool, BoundSoftmax
from .reduce import BoundConstant, BoundExpand, BoundReduce
from .relu import BoundElementwise, BoundLeakyReLU, BoundReLU, BoundSigmoid, BoundTanh, adaptive_slope
from .shape import BoundAdd, BoundConcat, BoundFlatten, BoundIdentity, BoundSelect, BoundSub, BoundTranspose

ALL_OPS: tuple[type[BoundOp], ...] = (
    BoundLinear, BoundConstMatMul, BoundConv, BoundConvTranspose2d, BoundBatchNorm, BoundElementwiseAffine,
    BoundReLU, BoundLeakyReLU, BoundSigmoid, BoundTanh, BoundMaxPool, BoundSoftmax, BoundFlatten,
    BoundIdentity, BoundTranspose, BoundSelect, BoundAdd, BoundSub, BoundConcat,
    BoundReduce, BoundExpand, BoundConstant, BoundPower, BoundStep, BoundRounding, BoundSign, BoundProduct)

OPERATORS: dict[type, type[BoundOp]] = {t: op for op in ALL_OPS for t in op.types}

__all__ = ["BoundOp", "VjpLinear", "OPERATORS", "ALL_OPS", "BoundReLU", "BoundElementwise", "adaptive_slope"]
