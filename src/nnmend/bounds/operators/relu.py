"""Relaxation of ``ReLU`` (Zhang et al., CROWN, NeurIPS 2018; Singh et al., DeepPoly, POPL 2019).

For a pre-activation bounded by ``[l, u]`` with ``l < 0 < u`` (unstable):
upper line ``y <= u (x - l) / (u - l)``, lower line ``y >= a x`` for any ``a`` in [0, 1].
The adaptive choice (DeepPoly) takes ``a = 1`` when ``u >= -l`` else 0; alpha-CROWN optimises ``a``.
Stable neurons are exact: ``y = x`` when ``l >= 0``, ``y = 0`` when ``u <= 0``.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import BoundOp


def adaptive_slope(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """DeepPoly's lower slope for unstable neurons: 1 where ``u >= -l`` else 0."""
    return (hi >= -lo).to(lo.dtype)


class BoundReLU(BoundOp):
    types = (nn.ReLU,)
    is_relu = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def interval(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(lo), torch.relu(hi)

    def backward_relaxed(self, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower bound of ``A · relu(x)`` by linear functions of ``x`` for ``x`` in ``[lo, hi]``.

        Args:
            A: (B, m, *s). lo, hi: pre-activation bounds (B, *s).
            alpha: lower slopes for unstable neurons, (B, m, *s) or (B, *s) in [0, 1]; default adaptive.
        """
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)          # (B, 1, *s): broadcast over the m rows
        active = (lo >= 0).to(lo.dtype)
        unstable = (lo < 0) & (hi > 0)
        # clamp the denominator so stable neurons never divide by zero (their slope is overwritten)
        up_slope = torch.where(unstable, hi / (hi - lo).clamp_min(1e-30), active)
        up_const = torch.where(unstable, -lo * up_slope, torch.zeros_like(lo))
        if alpha is None:
            alpha = adaptive_slope(lo, hi)
        elif alpha.dim() == lo.dim() - 1:
            alpha = alpha.unsqueeze(1)
        low_slope = torch.where(unstable, alpha, active)
        # one slope per coefficient: the lower line where A >= 0, the upper line (chord) where A < 0
        A_in = A * torch.where(A >= 0, low_slope, up_slope)
        const = (A.clamp(max=0).flatten(2) @ up_const.flatten(1).unsqueeze(-1)).squeeze(-1)
        return A_in, const
