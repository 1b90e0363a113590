"""Relaxations of operators that only move, select, copy or average values (exact, coefficients >= 0):
``Flatten``, ``Unflatten``, ``Identity``, ``Dropout`` (eval), ``Reshape``, ``Transpose``, ``Pad`` (every
mode), ``Slice``, ``Gather``, average pooling; and the operators with several inputs: ``Add``, ``Sub``,
``Concat``."""
from __future__ import annotations

import torch
from torch import nn

from ...layers import Add, Concat, Gather, Pad, Reshape, Slice, Sub, Transpose
from .base import BoundOp, VjpLinear


class _Reshaping(BoundOp):
    """Any operator that keeps every value and only changes the shape."""

    exact_interval = True

    def interval(self, *bounds):
        (lo, hi), = bounds
        return self.forward(lo), self.forward(hi)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return self.forward(r)

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        return A.reshape(*A.shape[:2], *self.in_shape), 0.0


class BoundFlatten(_Reshaping):
    types = (nn.Flatten, nn.Unflatten, Reshape)

    def check(self) -> None:
        m = self.module
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            raise self.refuse("start_dim=0 (it would merge the batch)")
        if isinstance(m, nn.Unflatten) and m.dim == 0:
            raise self.refuse("dim=0 (it would split the batch)")


class BoundIdentity(_Reshaping):
    """Identity, and Dropout, which is the identity in eval mode (bounds describe the deployed network)."""

    types = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        return A, 0.0


class BoundTranspose(_Reshaping):
    types = (Transpose,)

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        perm = self.module.perm
        inverse = [perm.index(i) for i in range(len(perm))]
        return A.permute(0, 1, *(p + 2 for p in inverse)), 0.0


class BoundSelect(VjpLinear):
    """Pad, Slice, Gather and average pooling: linear with non-negative coefficients (transpose by VJP)."""

    types = (Pad, Slice, Gather, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
             nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ReflectionPad1d, nn.ReflectionPad2d,
             nn.ReplicationPad1d, nn.ReplicationPad2d, nn.CircularPad1d, nn.CircularPad2d)
    monotone = True
    exact_interval = True

    def check(self) -> None:
        m = self.module
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            self.exact_interval = False                  # an average mixes values
        if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None and m.divisor_override <= 0:
            raise self.refuse(f"divisor_override={m.divisor_override}")


class BoundAdd(BoundOp):
    types = (Add,)

    def interval(self, *bounds):
        lo = bounds[0][0]
        hi = bounds[0][1]
        for l, u in bounds[1:]:
            lo, hi = lo + l, hi + u
        return lo, hi

    def backward_inputs(self, A: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | float]:
        return [A.sum_to_size(*A.shape[:2], *s) if tuple(s) != tuple(self.out_shape) else A
                for s in self.in_shapes], 0.0


class BoundSub(BoundOp):
    types = (Sub,)

    def interval(self, *bounds):
        (l1, u1), (l2, u2) = bounds
        return l1 - u2, u1 - l2

    def backward_inputs(self, A: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | float]:
        a, b = (A.sum_to_size(*A.shape[:2], *s) for s in self.in_shapes)
        return [a, -b], 0.0


class BoundConcat(BoundOp):
    types = (Concat,)
    exact_interval = True

    def interval(self, *bounds):
        return self.forward(*(b[0] for b in bounds)), self.forward(*(b[1] for b in bounds))

    def backward_inputs(self, A: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | float]:
        axis = (self.module.axis % len(self.out_shape)) + 2
        sizes = [s[axis - 2] for s in self.in_shapes]
        return list(A.split(sizes, dim=axis)), 0.0
