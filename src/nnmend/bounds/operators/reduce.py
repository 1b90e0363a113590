"""Relaxations of the linear operators of :mod:`nnmend.layers_math`: ``Reduce`` (sum / mean), ``Expand``,
``ConstConcat`` (exact: linear with coefficients 0 or positive, transposed by VJP) and ``ConstantOutput``
(no dependence on the input: its interval is the constant and its form on the input is zero)."""
from __future__ import annotations

import torch

from ...layers_math import ConstantOutput, ConstConcat, Expand, Reduce
from .base import BoundOp, VjpLinear


class BoundReduce(VjpLinear):
    """Sums and means: non-negative coefficients, so the interval image is exact per output."""

    types = (Reduce,)
    monotone = True


class BoundExpand(VjpLinear):
    """Broadcast copies and concatenation with constants: every output is one input or a constant."""

    types = (Expand, ConstConcat)
    monotone = True
    exact_interval = True


class BoundConstant(BoundOp):
    """An output independent of the input: exact, ``A · y = A · value`` with a zero input form."""

    types = (ConstantOutput,)
    exact_interval = True

    def _value(self, like: torch.Tensor) -> torch.Tensor:
        return self.module.value.to(dtype=like.dtype, device=like.device)

    def interval(self, *bounds):
        (lo, _), = bounds
        v = self._value(lo).unsqueeze(0).expand(lo.shape[0], *self.module.value.shape)
        return v, v

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((x.shape[0], *self.module.value.shape), dtype=x.dtype, device=x.device)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return self.linear_map(r)

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        const = (A * self._value(A)).flatten(2).sum(-1)
        return A.new_zeros((*A.shape[:2], *self.in_shape)), const
