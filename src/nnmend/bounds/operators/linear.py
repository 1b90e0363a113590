"""Relaxations of ``nn.Linear`` and of a matrix product with a constant (exact: both are affine)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import ConstMatMul
from .base import BoundOp, VjpLinear


class BoundLinear(BoundOp):
    types = (nn.Linear,)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.module.weight)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return F.linear(r, self.module.weight.abs())

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        w, b = self.module.weight, self.module.bias
        A_in = A @ w                                   # (B, m, *, out) @ (out, in)
        return A_in, ((A @ b).reshape(*A.shape[:2], -1).sum(-1) if b is not None else 0.0)


class BoundConstMatMul(VjpLinear):
    """``x @ W`` or ``W @ x`` per sample (ONNX MatMul with one constant operand, on either side)."""

    types = (ConstMatMul,)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        w = self.module.weight.abs()
        return r @ w if self.module.right else w @ r

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        return self.transpose(A), 0.0
