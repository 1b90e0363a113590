"""Relaxations of element-wise activations: ReLU, LeakyReLU, Sigmoid, Tanh.

Each gives, for a pre-activation bounded by ``[l, u]``, a lower line ``a_l x + b_l`` and an upper line
``a_u x + b_u`` valid on ``[l, u]``; back-substitution takes the lower line where a coefficient of ``A``
is non-negative and the upper line where it is negative.

* ReLU (Zhang et al., CROWN, NeurIPS 2018; Singh et al., DeepPoly, POPL 2019), unstable ``l < 0 < u``:
  upper chord ``u (x - l) / (u - l)``, lower ``a x`` for any ``a`` in [0, 1] (DeepPoly's adaptive choice:
  1 where ``u >= -l``; alpha-CROWN optimises ``a``). Stable neurons are exact.
* LeakyReLU with slope ``s`` in [0, 1]: the same with the lower slope in ``[s, 1]``.
* Sigmoid / Tanh (S-shaped: convex below 0, concave above): on a convex piece the chord is above and the
  tangent at the midpoint below; on a concave piece the reverse; across 0 the lower line goes through
  ``(l, f(l))`` with slope ``min(f'(l), chord)`` and the upper through ``(u, f(u))`` with slope
  ``min(f'(u), chord)`` (each below / above the tangent at its end on the convex / concave side and
  meeting the far end below / above the curve).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import BoundOp

Lines = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def adaptive_slope(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """DeepPoly's lower slope for unstable neurons: 1 where ``u >= -l`` else 0."""
    return (hi >= -lo).to(lo.dtype)


class BoundElementwise(BoundOp):
    """An element-wise non-linear activation relaxed by two lines per neuron."""

    nonlinear = True

    def lines(self, lo: torch.Tensor, hi: torch.Tensor, alpha: torch.Tensor | None = None) -> Lines:
        """``(a_l, b_l, a_u, b_u)`` broadcasting against ``lo``."""
        raise NotImplementedError

    def interval(self, *bounds):
        (lo, hi), = bounds
        return self.forward(lo), self.forward(hi)        # every activation here is non-decreasing

    def backward_relaxed(self, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower bound of ``A · f(x)`` by linear functions of ``x`` for ``x`` in ``[lo, hi]``.

        Args:
            A: (B, m, *s). lo, hi: pre-activation bounds (B, *s).
            alpha: lower slopes for unstable neurons, (B, m, *s) or (B, *s); default adaptive.
        """
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)          # (B, 1, *s): broadcast over the m rows
        if alpha is not None and alpha.dim() == lo.dim() - 1:
            alpha = alpha.unsqueeze(1)
        a_l, b_l, a_u, b_u = self.lines(lo, hi, alpha)
        pos = A >= 0
        A_in = A * torch.where(pos, a_l, a_u)
        c = torch.where(pos, b_l, b_u)
        return A_in, (A * c).flatten(2).sum(-1)


class BoundReLU(BoundElementwise):
    types = (nn.ReLU, nn.ReLU6)
    optimizable = True
    slope = 0.0                                          # the negative side's slope

    def check(self) -> None:
        if isinstance(self.module, nn.ReLU6):
            raise self.refuse("ReLU6 (clipping at 6)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def alpha_range(self) -> tuple[float, float]:
        return self.slope, 1.0

    def initial_alpha(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        s = self.slope
        return torch.where(hi >= -lo, torch.ones_like(lo), torch.full_like(lo, s))

    def needs_bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return ((lo < 0) & (hi > 0)).flatten(1)

    def slopes(self, lo: torch.Tensor, hi: torch.Tensor, alpha: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(low, chord, up_const)`` broadcasting against ``lo``: the lower line's slope (through the origin),
        the upper line's slope and its constant (non-zero only on unstable neurons)."""
        s = self.slope
        unstable = (lo < 0) & (hi > 0)
        stable = (lo >= 0).to(lo.dtype) if s == 0 else s + (1 - s) * (lo >= 0).to(lo.dtype)
        chord = torch.where(unstable, (hi - s * lo) / (hi - lo).clamp_min(1e-30), stable)
        up_const = torch.where(unstable, (s - chord) * lo, torch.zeros_like(lo))
        if alpha is None:
            alpha = (hi >= -lo).to(lo.dtype) if s == 0 else s + (1 - s) * (hi >= -lo).to(lo.dtype)
        return torch.where(unstable, alpha, stable), chord, up_const

    def backward_relaxed(self, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The hot path of every bound: :meth:`BoundElementwise.backward_relaxed` for lines through the
        origin below and the chord above, with the constant term as one matrix product."""
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
        if alpha is not None and alpha.dim() == lo.dim() - 1:
            alpha = alpha.unsqueeze(1)
        low, chord, up_const = self.slopes(lo, hi, alpha)
        A_in = A * torch.where(A >= 0, low, chord)
        const = (A.clamp(max=0).flatten(2) @ up_const.flatten(1).unsqueeze(-1)).squeeze(-1)
        return A_in, const

    def lines(self, lo, hi, alpha=None) -> Lines:
        s = self.slope
        unstable = (lo < 0) & (hi > 0)
        active = lo >= 0
        stable_slope = torch.where(active, torch.ones_like(lo), torch.full_like(lo, s))
        # clamp the denominator so stable neurons never divide by zero (their slope is overwritten)
        chord = (hi - s * lo) / (hi - lo).clamp_min(1e-30)
        a_u = torch.where(unstable, chord, stable_slope)
        b_u = torch.where(unstable, (s - chord) * lo, torch.zeros_like(lo))
        if alpha is None:
            alpha = self.initial_alpha(lo, hi)
        a_l = torch.where(unstable, alpha, stable_slope)
        return a_l, torch.zeros_like(b_u), a_u, b_u


class BoundLeakyReLU(BoundReLU):
    types = (nn.LeakyReLU,)

    def check(self) -> None:
        s = float(self.module.negative_slope)
        if not 0.0 <= s <= 1.0:
            raise self.refuse(f"negative_slope={s} (only slopes in [0, 1] are relaxed)")

    @property
    def slope(self) -> float:  # type: ignore[override]
        return float(self.module.negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.leaky_relu(x, self.slope)


class _SShaped(BoundElementwise):
    """Sigmoid-like: convex on (-inf, 0], concave on [0, inf)."""

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def df(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)

    def lines(self, lo, hi, alpha=None) -> Lines:
        fl, fu = self.f(lo), self.f(hi)
        width = hi - lo
        point = width <= 1e-12
        chord = torch.where(point, self.df(lo), (fu - fl) / width.clamp_min(1e-12))
        mid = (lo + hi) / 2
        fm, dm = self.f(mid), self.df(mid)
        tan_b = fm - dm * mid
        convex, concave = hi <= 0, lo >= 0
        # across zero: lines through an end point with the smaller of the end's slope and the chord
        cross_al = torch.minimum(self.df(lo), chord)
        cross_au = torch.minimum(self.df(hi), chord)
        a_l = torch.where(convex, dm, torch.where(concave, chord, cross_al))
        b_l = torch.where(convex, tan_b, fl - a_l * lo)
        a_u = torch.where(concave, dm, torch.where(convex, chord, cross_au))
        b_u = torch.where(concave, tan_b, fu - a_u * hi)
        return a_l, b_l, a_u, b_u


class BoundSigmoid(_SShaped):
    types = (nn.Sigmoid,)

    def f(self, x):
        return torch.sigmoid(x)

    def df(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)


class BoundTanh(_SShaped):
    types = (nn.Tanh,)

    def f(self, x):
        return torch.tanh(x)

    def df(self, x):
        return 1 - torch.tanh(x) ** 2
