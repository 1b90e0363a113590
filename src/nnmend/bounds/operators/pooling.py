"""Relaxations of ``MaxPool`` (DeepPoly's, Singh et al. POPL 2019) and of ``Softmax`` (interval only).

MaxPool: in each window, let ``j`` be the input with the largest lower bound. ``y >= x_j`` always; when
``l_j`` is at least every other input's upper bound the window is decided and ``y = x_j`` exactly, else
``y <= max_i u_i`` (a constant). Padding, strides and dilation are those of the layer (windows found by
``max_pool`` itself); ``ceil_mode`` is modelled too since the windows come from the same call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BoundOp


class BoundMaxPool(BoundOp):
    types = (nn.MaxPool1d, nn.MaxPool2d)
    nonlinear = True

    def check(self) -> None:
        if getattr(self.module, "return_indices", False):
            raise self.refuse("return_indices=True")

    def interval(self, *bounds):
        (lo, hi), = bounds
        return self.module(lo), self.module(hi)

    def _geometry(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple, tuple, tuple[int, int]]:
        """2-D kernel, stride, dilation, pads (torch order) and output size for a (C, [H,] W) input."""
        m = self.module
        two = (lambda v: (1, v if isinstance(v, int) else v[0])) if isinstance(m, nn.MaxPool1d) else \
              (lambda v: (v, v) if isinstance(v, int) else tuple(v))
        k, d, p = two(m.kernel_size), two(m.dilation), two(m.padding)
        s = two(m.stride if m.stride is not None else m.kernel_size)
        if isinstance(m, nn.MaxPool1d):
            p = (0, p[1])
        out = tuple(self.out_shape[1:]) if len(self.out_shape) == 3 else (1, self.out_shape[-1])
        size = tuple(shape[1:]) if len(shape) == 3 else (1, shape[-1])
        extra = [max(0, (o - 1) * st + dl * (kk - 1) + 1 - (n + 2 * pp)) for o, st, dl, kk, n, pp in zip(out, s, d, k, size, p)]
        pads = (p[1], p[1] + extra[1], p[0], p[0] + extra[0])
        return k, s, d, pads, out

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, k*k, L) windows of ``x`` (N, C, [H,] W), padding as ``-inf``."""
        k, s, d, pads, _ = self._geometry(tuple(x.shape[1:]))
        x4 = x if x.dim() == 4 else x.unsqueeze(2)
        x4 = F.pad(x4, pads, value=-float("inf"))
        w = F.unfold(x4, k, dilation=d, stride=s)
        return w.reshape(x.shape[0], x.shape[1], k[0] * k[1], -1)

    def _fold(self, coef: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Adjoint of :meth:`_windows`: (N, C, k*k, L) window coefficients -> (N, *in_shape)."""
        k, s, d, pads, _ = self._geometry(in_shape)
        C = in_shape[0]
        H, W = (in_shape[1], in_shape[2]) if len(in_shape) == 3 else (1, in_shape[1])
        Hp, Wp = H + pads[2] + pads[3], W + pads[0] + pads[1]
        full = F.fold(coef.reshape(coef.shape[0], C * k[0] * k[1], -1), (Hp, Wp), k, dilation=d, stride=s)
        full = full[:, :, pads[2]:pads[2] + H, pads[0]:pads[0] + W]
        return full.reshape(coef.shape[0], *in_shape)

    def backward_relaxed(self, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, m = A.shape[:2]
        wl, wh = self._windows(lo), self._windows(hi)        # (B, C, kk, L)
        best_lo, j = wl.max(2, keepdim=True)                  # the input with the largest lower bound
        others = wh.scatter(2, j, -float("inf")).amax(2)     # largest upper bound among the other inputs
        decided = best_lo.squeeze(2) >= others
        max_hi = wh.amax(2)
        A = A.reshape(B, m, *max_hi.shape[1:])                # (B, m, C, L)
        pos = (A >= 0) | decided.unsqueeze(1)
        coef = torch.where(pos, A, torch.zeros_like(A))      # rows using y >= x_j (y = x_j where decided)
        const = torch.where(pos, torch.zeros_like(A), A * max_hi.unsqueeze(1)).flatten(2).sum(-1)
        kk = wl.shape[2]
        onehot = torch.zeros((B, m, *wl.shape[1:]), dtype=A.dtype, device=A.device)
        onehot = onehot.scatter(3, j.unsqueeze(1).expand(B, m, -1, 1, -1), coef.unsqueeze(3))
        A_in = self._fold(onehot.reshape(B * m, -1, kk, onehot.shape[-1]), tuple(lo.shape[1:]))
        return A_in.reshape(B, m, *lo.shape[1:]), const


class BoundSoftmax(BoundOp):
    """Softmax: its interval only (``exp`` is increasing, so ``y_i`` is smallest at ``x_i = l_i`` and every
    other ``x_j = u_j``); back-substitution uses that interval as a constant, and that every group sums to 1.
    Sound, and loose."""

    types = (nn.Softmax,)
    nonlinear = True

    def _axis(self, rank: int) -> int:
        d = self.module.dim
        if d is None:
            raise self.refuse("dim=None")
        return d if d > 0 else d + rank

    def interval(self, *bounds):
        (lo, hi), = bounds
        ax = self._axis(lo.dim())
        if ax == 0:
            raise self.refuse("dim=0 (the batch axis)")
        # y_i >= e^{l_i} / (e^{l_i} + sum_{j != i} e^{u_j}) = 1 / (1 + sum_j e^{u_j - l_i} - e^{u_i - l_i})
        shift = hi.amax(ax, keepdim=True)
        eu = torch.exp(hi - shift)
        su = eu.sum(ax, keepdim=True)
        low = torch.exp(lo - shift) / (torch.exp(lo - shift) + su - eu)
        el = torch.exp(lo - shift)
        sl = el.sum(ax, keepdim=True)
        up = torch.exp(hi - shift) / (torch.exp(hi - shift) + sl - el)
        return low.nan_to_num(0.0).clamp(0, 1), up.nan_to_num(1.0).clamp(0, 1)

    def backward_relaxed(self, A, lo, hi, alpha=None):
        """The interval as constants, with each group's outputs summing to 1: ``A · y = (A - c) · y + c`` for
        any ``c`` per group, ``c`` chosen among 0 and the group's coefficients (a row summing a group is then
        exact)."""
        ylo, yhi = (t.unsqueeze(1) for t in self.interval((lo, hi)))
        ax = self._axis(lo.dim()) + 1                           # the softmax axis in A (B, m, *s)
        k = A.shape[ax]
        cands = [torch.zeros_like(A.select(ax, 0)).unsqueeze(ax)]
        if k <= 32:
            cands += [A.narrow(ax, j, 1) for j in range(k)]
        best = None
        for c in cands:
            d = A - c
            v = (d.clamp(min=0) * ylo + d.clamp(max=0) * yhi).sum(ax, keepdim=True) + c
            best = v if best is None else torch.max(best, v)
        return torch.zeros((*A.shape[:2], *lo.shape[1:]), dtype=A.dtype, device=A.device), best.flatten(2).sum(-1)
