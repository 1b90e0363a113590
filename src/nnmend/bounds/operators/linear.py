"""Relaxation of ``nn.Linear`` (exact: the layer is affine)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BoundOp


class BoundLinear(BoundOp):
    types = (nn.Linear,)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.module.weight)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return F.linear(r, self.module.weight.abs())

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        w, b = self.module.weight, self.module.bias
        A_in = A @ w                                   # (B, m, out) @ (out, in)
        return A_in, (A @ b if b is not None else 0.0)
