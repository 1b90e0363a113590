"""Relaxations of layers that only move values around: ``Flatten``, ``Identity``, ``Dropout`` (eval)."""
from __future__ import annotations

import torch
from torch import nn

from .base import BoundOp


class BoundFlatten(BoundOp):
    types = (nn.Flatten,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return r.flatten(1)

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        return A.reshape(*A.shape[:2], *self.in_shape), 0.0


class BoundIdentity(BoundOp):
    """Identity, and Dropout, which is the identity in eval mode (bounds describe the deployed network)."""

    types = (nn.Identity, nn.Dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return r

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        return A, 0.0
