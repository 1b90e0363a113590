"""Shared base of the per-operator relaxations (auto_LiRPA's ``operators/base.py`` idea).

Every operator works on a batch of ``B`` boxes and a specification of ``m`` rows. Shapes:

* a concrete or interval tensor: ``(B, *shape)`` (``shape`` is one sample's shape);
* a linear form on the operator's output: ``A`` of shape ``(B, m, *out_shape)`` meaning ``sum(A * y)``.

Back-substitution only ever computes *lower* bounds of ``A · y`` (an upper bound is minus the lower
bound of ``-A · y``), so each operator has one ``backward`` that maps ``A`` on its output to ``A'`` on
its input plus a constant ``(B, m)``, with ``A · y >= A' · x + const`` for every ``x`` in the box
(an equality for affine operators).
"""
from __future__ import annotations

import torch
from torch import nn


class BoundOp:
    """Relaxation of one layer. Subclasses set ``types`` (the ``nn.Module`` classes they handle)."""

    types: tuple[type, ...] = ()
    is_relu: bool = False

    def __init__(self, module: nn.Module, path: str):
        self.module = module
        self.path = path
        self.in_shape: tuple[int, ...] = ()
        self.out_shape: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path or '<root>'})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def interval(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval (IBP) image of the box ``[lo, hi]``; affine layers use the centre/radius form."""
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        mid, rad = self.forward(mid), self.abs_map(rad)
        return mid - rad, mid + rad

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` (the affine layer without its constant term)."""
        return self.forward(x) - self.forward(torch.zeros_like(x[:1]))

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        """``|W| r`` for an affine layer ``x -> W x + b`` (used for interval radii)."""
        raise NotImplementedError

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Map ``A`` (B, m, *out_shape) to ``(A', const)`` with ``A'`` of shape (B, m, *in_shape)."""
        raise NotImplementedError
