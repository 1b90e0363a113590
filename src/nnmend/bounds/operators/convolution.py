"""Relaxation of ``nn.Conv2d`` (exact: the layer is affine). The backward map of a convolution is its
transposed convolution, applied to all ``B * m`` rows of ``A`` at once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BoundOp


class BoundConv2d(BoundOp):
    types = (nn.Conv2d,)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        c = self.module
        return F.conv2d(x, c.weight, None, c.stride, c.padding, c.dilation, c.groups)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        c = self.module
        return F.conv2d(r, c.weight.abs(), None, c.stride, c.padding, c.dilation, c.groups)

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        c = self.module
        B, m = A.shape[:2]
        co, ho, wo = self.out_shape
        ci, hi, wi = self.in_shape
        # output_padding recovers input rows/cols that the forward stride dropped
        op = tuple(n_in - ((n_out - 1) * s - 2 * p + d * (k - 1) + 1)
                   for n_in, n_out, s, p, d, k in zip((hi, wi), (ho, wo), c.stride, c.padding, c.dilation, c.kernel_size))
        A_in = F.conv_transpose2d(A.reshape(B * m, co, ho, wo), c.weight, None, c.stride, c.padding, op, c.groups, c.dilation)
        const = (A.sum((-2, -1)) @ c.bias) if c.bias is not None else 0.0
        return A_in.reshape(B, m, ci, hi, wi), const
