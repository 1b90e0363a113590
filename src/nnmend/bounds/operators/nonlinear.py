"""Relaxations of the non-linear arithmetic of :mod:`nnmend.layers_math`.

* ``Power`` (``x ** p``, ``c ** x`` with constants): on an interval where the function is convex the chord
  is above it and the tangent at the midpoint below; where concave the reverse (``x ** p``: convex for even
  ``p``, for ``p > 1`` or ``p < 0`` on ``x > 0`` and for odd ``p`` on ``x >= 0``; concave for ``0 < p < 1``
  and for odd ``p`` on ``x <= 0``; ``c ** x`` is convex). Where neither is known (odd ``p`` across 0) both
  lines are the constants of the interval. Inputs outside the domain (``x < 0`` for a fractional ``p``,
  ``0`` in the interval for ``p < 0``) are refused, naming the node.
* ``Step`` (0/1 comparisons) and ``Rounding``: interval only (the bounds of a step are its values at the
  interval's ends, or both values when the interval holds the jump); back-substitution uses the interval
  as a constant, like Softmax. Branch and bound on the input decides them box by box.
* ``Sign`` (-1 / 0 / 1): its interval is the signs of the ends. Lines, where the interval holds 0: below, the
  line from ``(0, v0)`` to ``(u, 1)`` (``v0`` = -1 when ``l < 0``, else 0) — under -1 left of 0, at most
  ``f(0) = 0`` at 0, at most 1 right of it; above, its mirror from ``(l, -1)`` to ``(0, w0)``. An end at 0
  keeps the constant line on that side.
* ``Product`` of a stacked pair: McCormick's envelopes (McCormick, Math. Programming 1976), per element the
  one of the two lower (upper) planes that is higher (lower) at the box's centre.
"""
from __future__ import annotations

import torch

from ...errors import ModelError
from ...layers_math import Power, Product, Rounding, Sign, Step
from .base import BoundOp
from .relu import BoundElementwise, Lines


def _constant_lines(fmin: torch.Tensor, fmax: torch.Tensor) -> Lines:
    zero = torch.zeros_like(fmin)
    return zero, fmin, zero, fmax


class BoundPower(BoundElementwise):
    types = (Power,)

    def _c(self, like: torch.Tensor) -> torch.Tensor:
        return self.module.exponent.to(dtype=like.dtype, device=like.device)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def df(self, x: torch.Tensor) -> torch.Tensor:
        c = self._c(x)
        if self.module.base:
            return torch.log(c) * torch.pow(c, x)
        return torch.where(c == 0, torch.zeros_like(x), c * torch.pow(x, c - 1))

    def check(self) -> None:
        if self.module.base and bool((self.module.exponent <= 0).any()):
            raise self.refuse("a non-positive base (c ** x is not real for every x)")

    def _domain(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        if self.module.base:
            return
        c = self._c(lo)
        frac = c != torch.round(c)
        if bool((frac & (lo < 0)).any()):
            raise ModelError(f"bounds: node {self.path or '<root>'} (Power): a fractional exponent of an input "
                             "interval with negative values is not real (refused)")
        if bool(((c < 0) & (lo <= 0) & (hi >= 0)).any()):
            raise ModelError(f"bounds: node {self.path or '<root>'} (Power): a negative exponent of an input "
                             "interval that contains 0 (refused)")

    def interval(self, *bounds):
        (lo, hi), = bounds
        self._domain(lo, hi)
        fl, fu = self.f(lo), self.f(hi)
        fmin, fmax = torch.min(fl, fu), torch.max(fl, fu)
        if not self.module.base:                       # even powers have their minimum at 0
            f0 = self.f(torch.zeros_like(lo)).expand_as(lo)
            inside = (lo < 0) & (hi > 0) & torch.isfinite(f0)
            fmin = torch.where(inside, torch.min(fmin, f0), fmin)
        return fmin, fmax

    def curvature(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """+1 where convex on [lo, hi], -1 where concave, 0 where neither is known."""
        one = torch.ones_like(lo)
        if self.module.base:
            return one
        c = self._c(lo).expand_as(lo)
        integer = c == torch.round(c)
        even = integer & (torch.remainder(c, 2) == 0)
        odd = integer & ~even
        convex = even | ((c >= 1) & (lo >= 0)) | ((c < 0) & (lo > 0))
        concave = ((c > 0) & (c < 1) & (lo >= 0)) | (odd & (c > 0) & (hi <= 0)) | (odd & (c < 0) & (hi < 0))
        linear = (c == 0) | (c == 1)
        return torch.where(linear | convex, one, torch.where(concave, -one, torch.zeros_like(lo)))

    def lines(self, lo: torch.Tensor, hi: torch.Tensor, alpha=None) -> Lines:
        fmin, fmax = self.interval((lo, hi))
        width = hi - lo
        tiny = width <= 1e-9 * (1 + lo.abs().maximum(hi.abs()))
        safe_w = torch.where(tiny, torch.ones_like(width), width)
        fl, fu = self.f(lo), self.f(hi)
        chord = (fu - fl) / safe_w
        chord_b = fl - chord * lo
        m = (lo + hi) / 2
        tan = self.df(m)
        tan_b = self.f(m) - tan * m
        curv = self.curvature(lo, hi)
        cl, cb_l, cu, cb_u = _constant_lines(fmin, fmax)
        convex, concave = (curv > 0) & ~tiny, (curv < 0) & ~tiny
        a_l = torch.where(convex, tan, torch.where(concave, chord, cl))
        b_l = torch.where(convex, tan_b, torch.where(concave, chord_b, cb_l))
        a_u = torch.where(convex, chord, torch.where(concave, tan, cu))
        b_u = torch.where(convex, chord_b, torch.where(concave, tan_b, cb_u))
        ok = torch.isfinite(a_l) & torch.isfinite(b_l) & torch.isfinite(a_u) & torch.isfinite(b_u)
        return (torch.where(ok, a_l, cl), torch.where(ok, b_l, cb_l), torch.where(ok, a_u, cu),
                torch.where(ok, b_u, cb_u))


class _IntervalOnly(BoundOp):
    """A non-linear element-wise operator bounded by its interval (back-substitution: a constant)."""

    nonlinear = True

    def backward_relaxed(self, A, lo, hi, alpha=None):
        ylo, yhi = self.interval((lo, hi))
        const = (A.clamp(min=0) * ylo.unsqueeze(1) + A.clamp(max=0) * yhi.unsqueeze(1)).flatten(2).sum(-1)
        return torch.zeros((*A.shape[:2], *lo.shape[1:]), dtype=A.dtype, device=A.device), const


class BoundStep(_IntervalOnly):
    types = (Step,)

    def interval(self, *bounds):
        (lo, hi), = bounds
        t = self.module.threshold.to(dtype=lo.dtype, device=lo.device)
        kind = self.module.kind
        if kind in ("gt", "ge"):                                     # non-decreasing
            low, up = self.module(lo), self.module(hi)
        elif kind in ("lt", "le"):                                   # non-increasing
            low, up = self.module(hi), self.module(lo)
        else:
            point = (lo == t) & (hi == t)
            holds = (lo <= t) & (t <= hi)
            low, up = (point, holds) if kind == "eq" else (~holds, ~point)
            low, up = low.to(lo.dtype), up.to(lo.dtype)
        return low, up


class BoundRounding(_IntervalOnly):
    types = (Rounding,)

    def interval(self, *bounds):
        (lo, hi), = bounds
        return self.module(lo), self.module(hi)                      # every mode is non-decreasing


class BoundSign(BoundElementwise):
    types = (Sign,)

    def interval(self, *bounds):
        (lo, hi), = bounds
        return torch.sign(lo), torch.sign(hi)                       # non-decreasing

    def lines(self, lo: torch.Tensor, hi: torch.Tensor, alpha=None) -> Lines:
        zero, one = torch.zeros_like(lo), torch.ones_like(lo)
        s_lo, s_hi = torch.sign(lo), torch.sign(hi)
        v0 = torch.where(lo < 0, -one, zero)                        # lowest value on [lo, min(hi, 0)]
        w0 = torch.where(hi > 0, one, zero)                         # highest value on [max(lo, 0), hi]
        lower = (lo <= 0) & (hi > 0)
        upper = (lo < 0) & (hi >= 0)
        a_l = torch.where(lower, (1 - v0) / torch.where(lower, hi, one), zero)
        b_l = torch.where(lower, v0, s_lo)
        a_u = torch.where(upper, (w0 + 1) / torch.where(upper, -lo, one), zero)
        b_u = torch.where(upper, w0, s_hi)
        return a_l, b_l, a_u, b_u


class BoundProduct(BoundOp):
    """``y = x0 * x1`` of a stacked pair (input shape ``(2, *s)``)."""

    types = (Product,)
    nonlinear = True

    def interval(self, *bounds):
        (lo, hi), = bounds
        c = torch.stack([lo[:, 0] * lo[:, 1], lo[:, 0] * hi[:, 1], hi[:, 0] * lo[:, 1], hi[:, 0] * hi[:, 1]])
        return c.amin(0), c.amax(0)

    def backward_relaxed(self, A, lo, hi, alpha=None):
        lx, ly, ux, uy = lo[:, 0].unsqueeze(1), lo[:, 1].unsqueeze(1), hi[:, 0].unsqueeze(1), hi[:, 1].unsqueeze(1)
        mx, my = (lx + ux) / 2, (ly + uy) / 2
        # lower planes  x*y >= ly*x + lx*y - lx*ly  and  >= uy*x + ux*y - ux*uy
        first = (ly * mx + lx * my - lx * ly) >= (uy * mx + ux * my - ux * uy)
        lax, lay, lb = (torch.where(first, ly, uy), torch.where(first, lx, ux),
                        torch.where(first, -lx * ly, -ux * uy))
        # upper planes  x*y <= uy*x + lx*y - lx*uy  and  <= ly*x + ux*y - ux*ly
        first = (uy * mx + lx * my - lx * uy) <= (ly * mx + ux * my - ux * ly)
        uax, uay, ub = (torch.where(first, uy, ly), torch.where(first, lx, ux),
                        torch.where(first, -lx * uy, -ux * ly))
        pos = A >= 0
        ax, ay, b = torch.where(pos, lax, uax), torch.where(pos, lay, uay), torch.where(pos, lb, ub)
        A_in = torch.stack([A * ax, A * ay], 2)
        return A_in, (A * b).flatten(2).sum(-1)
