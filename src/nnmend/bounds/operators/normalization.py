"""Relaxations of per-element affine layers: ``BatchNorm`` in eval mode and ``ElementwiseAffine``.

Both are ``y = x * scale + shift`` with ``scale``/``shift`` broadcasting against one sample's shape.
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ModelError
from ...layers import ElementwiseAffine
from .base import BoundOp


class _ElementwiseBase(BoundOp):
    exact_interval = True

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, t = self.scale_shift()
        return x * s + t

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_shift()[0]

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        s, _ = self.scale_shift()
        return r * s.abs()

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        s, t = self.scale_shift()
        A_in = (A * s).sum_to_size(*A.shape[:2], *self.in_shape)
        const = (A * t).flatten(2).sum(-1)
        return A_in, const


class BoundBatchNorm(_ElementwiseBase):
    """BatchNorm with running statistics (eval mode); in training mode its output depends on the batch."""

    types = (nn.BatchNorm1d, nn.BatchNorm2d)

    def check(self) -> None:
        bn = self.module
        if bn.training:
            raise self.refuse("training mode (its output depends on the batch); call eval()")
        if bn.running_mean is None:
            raise self.refuse("track_running_stats=False (no running statistics)")

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.module
        if bn.training or bn.running_mean is None:
            raise ModelError(f"bounds: {self.path} ({type(bn).__name__}) must be in eval mode with running statistics")
        s = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            s = s * bn.weight
        t = -bn.running_mean * s + (bn.bias if bn.bias is not None else 0.0)
        # channel dim is the first of one sample's dims; broadcast over the rest
        extra = (1,) * (len(self.in_shape) - 1)
        return s.reshape(-1, *extra), t.reshape(-1, *extra)


class BoundElementwiseAffine(_ElementwiseBase):
    types = (ElementwiseAffine,)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module.scale, self.module.shift
