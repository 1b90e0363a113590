"""Back-substitution of the intermediate bounds' one-hot rows of a convolutional layer as *patches*.

The row ``±e_(c, h, w)`` of a convolution's output depends, ``k`` layers back, only on a window of the
earlier layer's grid around ``(h, w)`` (its receptive field), and that window has the same size for every
position (convolutions are translation-equivariant). So each row is kept as its window alone: coefficients
``P (nb, m, C, kh, kw)`` on a ``C x H x W`` grid, row ``(h, w)``'s window starting at ``(h·S - pad, w·S - pad)``
(``S`` and ``pad`` shared by all rows). Through a convolution the window grows by the kernel (a transposed
convolution of each patch with the layer's weight: ``S' = S·s``, ``pad' = pad·s + p``); through a ReLU each
row is multiplied by the relaxation's slopes read at its window; a sum gives the same rows to both inputs,
and forms that meet are aligned to a common window and added. Cells of a window outside the grid stand for
the convolution's zero padding and are dropped (their slopes and input bounds read as 0).

This is auto_LiRPA's "patches" mode idea (Xu et al., NeurIPS 2020), written here from that description.
Any node the patches do not model (and any window that has grown as large as its grid) turns the rows
back into dense forms, and :func:`nnmend.bounds.backward._walk` carries on: the result is the same bound.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .graph import BoundGraph
from .operators import BoundReLU
from .operators.convolution import BoundConv
from .operators.shape import BoundAdd, BoundIdentity


@dataclass
class Patches:
    """Rows ``(nb, m)`` of a linear form, each zero outside its window of a ``C x H x W`` grid."""

    P: torch.Tensor                   # (nb, m, C, kh, kw)
    ah: torch.Tensor                  # (nb, m) anchor row of each window: rows ah·S - pad + [0, kh)
    aw: torch.Tensor                  # (nb, m) anchor column
    stride: tuple[int, int]
    pad: tuple[int, int]
    masked: bool = True               # cells outside the grid are known to be zero

    def window(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` (b, C', H, W) (b = nb, or 1 for every box) read at every row's window: (nb, m, C', kh, kw);
        cells outside the grid read 0."""
        nb, m = self.ah.shape
        kh, kw = self.P.shape[-2:]
        (sh, sw), (ph, pw) = self.stride, self.pad
        H, W = X.shape[-2:]
        bottom = max(0, int(self.ah.max()) * sh - ph + kh - H) if self.ah.numel() else 0
        right = max(0, int(self.aw.max()) * sw - pw + kw - W) if self.aw.numel() else 0
        Xp = F.pad(X, (pw, right, ph, bottom))
        cols = F.unfold(Xp, (kh, kw), stride=(sh, sw)).transpose(1, 2)      # (b, Lh Lw, C' kh kw)
        col = self.ah * ((Xp.shape[-1] - kw) // sw + 1) + self.aw
        got = cols[0][col] if X.shape[0] == 1 else cols[torch.arange(nb, device=col.device).unsqueeze(1), col]
        return got.reshape(nb, m, -1, kh, kw)


def start(idx: torch.Tensor, valid: torch.Tensor, shape: tuple[int, ...]) -> Patches:
    """The rows ``[+e_idx; -e_idx]`` (zero where not ``valid``) of a ``C x H x W`` output as 1x1 patches."""
    C, H, W = shape
    nb, r = idx.shape
    P = valid.new_zeros((nb, r, C))
    P.scatter_(2, (idx // (H * W)).unsqueeze(-1), valid.unsqueeze(-1))
    pos = idx % (H * W)
    ah, aw = torch.cat([pos // W, pos // W], 1), torch.cat([pos % W, pos % W], 1)
    return Patches(torch.cat([P, -P], 1).reshape(nb, 2 * r, C, 1, 1), ah, aw, (1, 1), (0, 0))


def dense(p: Patches, shape: tuple[int, ...]) -> torch.Tensor:
    """The rows as dense forms (nb, m, C, H, W); window cells outside the grid are dropped."""
    C, H, W = shape
    nb, m = p.ah.shape
    kh, kw = p.P.shape[-2:]
    (sh, sw), (ph, pw) = p.stride, p.pad
    Hp = max(H + ph, int(p.ah.max()) * sh + kh) if p.ah.numel() else H + ph
    Wp = max(W + pw, int(p.aw.max()) * sw + kw) if p.aw.numel() else W + pw
    ys = (p.ah * sh).unsqueeze(-1) + torch.arange(kh, device=p.ah.device)          # (nb, m, kh), padded grid
    xs = (p.aw * sw).unsqueeze(-1) + torch.arange(kw, device=p.aw.device)
    at = (ys.unsqueeze(-1) * Wp + xs.unsqueeze(-2)).reshape(nb * m, 1, kh * kw).expand(-1, C, -1)
    out = p.P.new_zeros((nb * m, C, Hp * Wp))
    out.scatter_add_(2, at, p.P.reshape(nb * m, C, kh * kw))
    out = out.reshape(nb, m, C, Hp, Wp)[..., ph:ph + H, pw:pw + W]
    return out.contiguous()


def _add(p: Patches, q: Patches) -> Patches | None:
    """Sum of two patch forms of the same rows on the same grid (None when their strides differ)."""
    if p.stride != q.stride:
        return None
    kp, kq = p.P.shape[-2:], q.P.shape[-2:]
    pad = tuple(max(a, b) for a, b in zip(p.pad, q.pad))
    end = tuple(max(k1 - a, k2 - b) for k1, a, k2, b in zip(kp, p.pad, kq, q.pad))

    def grow(x: Patches, k) -> torch.Tensor:
        top, left = pad[0] - x.pad[0], pad[1] - x.pad[1]
        return F.pad(x.P, (left, end[1] - (k[1] - x.pad[1]), top, end[0] - (k[0] - x.pad[0])))
    return replace(p, P=grow(p, kp) + grow(q, kq), pad=pad, masked=p.masked and q.masked)


def _valid_mask(p: Patches, shape: tuple[int, ...]) -> torch.Tensor:
    return p.window(p.P.new_ones((1, 1, *shape[1:])))


def _conv(n: BoundConv, p: Patches) -> tuple[Patches, torch.Tensor | float]:
    c = n.module
    P = p.P if p.masked else p.P * _valid_mask(p, n.out_shape)
    nb, m, co, kh, kw = P.shape
    const = (P.sum((3, 4)) @ c.bias) if c.bias is not None else 0.0
    rows = F.conv_transpose2d(P.reshape(nb * m, co, kh, kw), c.weight, None, c.stride, 0, 0, c.groups, c.dilation)
    stride = (p.stride[0] * c.stride[0], p.stride[1] * c.stride[1])
    pad = (p.pad[0] * c.stride[0] + c.padding[0], p.pad[1] * c.stride[1] + c.padding[1])
    return Patches(rows.reshape(nb, m, *rows.shape[1:]), p.ah, p.aw, stride, pad, False), const


def _relu(n: BoundReLU, p: Patches, lo: torch.Tensor, hi: torch.Tensor) -> tuple[Patches, torch.Tensor]:
    low, chord, up = n.slopes(lo, hi)
    C = lo.shape[1]
    w = p.window(torch.cat([low, chord, up], 1))                        # (nb, m, 3C, kh, kw)
    low, chord, up = w[:, :, :C], w[:, :, C:2 * C], w[:, :, 2 * C:]
    P = p.P
    const = (P.clamp(max=0) * up).flatten(2).sum(-1)
    return replace(p, P=P * torch.where(P >= 0, low, chord), masked=True), const


def supported(n) -> bool:
    """Whether the patches model node ``n`` (on a C x H x W grid)."""
    if isinstance(n, BoundConv):
        c = n.module
        return isinstance(c, nn.Conv2d) and n._explicit is None
    if isinstance(n, BoundAdd):
        return all(tuple(s) == tuple(n.out_shape) for s in n.in_shapes)
    return isinstance(n, (BoundReLU, BoundIdentity)) and len(n.out_shape) == 3


def applicable(graph: BoundGraph, at: int) -> bool:
    """Patches pay off for the rows of node ``at``: a 2-D convolution's (or a sum of such) output grid."""
    n = graph.nodes[at]
    return len(n.out_shape) == 3 and isinstance(n, (BoundConv, BoundAdd)) and supported(n)


def onehot_bounds(idx: torch.Tensor, valid: torch.Tensor, graph: BoundGraph, at: int, pre: dict,
                  lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Lower bounds (nb, 2r) of the rows ``[+e_idx; -e_idx]`` of node ``at``'s output over the boxes
    ``[lo, hi]`` (nb, *in_shape): as :func:`nnmend.bounds.backward._onehot_backsub` then ``concretize``."""
    from .backward import _walk, concretize

    pending: dict[int, Patches | torch.Tensor] = {at: start(idx, valid, graph.nodes[at].out_shape)}
    const = valid.new_zeros((idx.shape[0], 2 * idx.shape[1]))
    for i in range(at, -1, -1):
        f = pending.get(i)
        if f is None:
            continue
        n = graph.nodes[i]
        shape = n.out_shape
        if isinstance(f, Patches) and (not supported(n) or f.P.shape[-1] * f.P.shape[-2] >= shape[1] * shape[2]):
            # hand the rest to the dense walk: every pending form becomes dense
            for j, g in list(pending.items()):
                if isinstance(g, Patches):
                    pending[j] = dense(g, lo.shape[1:] if j < 0 else graph.nodes[j].out_shape)
            f = pending[i]
        if not isinstance(f, Patches):
            A_in, c = _walk(pending, const, graph, i, pre, None, None)
            return concretize(A_in, c, lo, hi)
        del pending[i]
        if isinstance(n, BoundConv):
            f, c = _conv(n, f)
            const = const + c
            parts = [f]
        elif isinstance(n, BoundReLU):
            f, c = _relu(n, f, *pre[n])
            const = const + c
            parts = [f]
        else:                                              # identity, sum of same-shaped inputs
            parts = [f] * len(n.inputs)
        for j, part in zip(n.inputs, parts):
            g = pending.get(j)
            if g is None:
                pending[j] = part
                continue
            s = None if not isinstance(g, Patches) else _add(g, part)
            if s is None:
                shp = lo.shape[1:] if j < 0 else graph.nodes[j].out_shape
                s = (g if not isinstance(g, Patches) else dense(g, shp)) + dense(part, shp)
            pending[j] = s
    f = pending.pop(-1)
    if not isinstance(f, Patches):
        return concretize(f, const, lo, hi)
    mid, rad = f.window((hi + lo) / 2), f.window((hi - lo) / 2)
    return (f.P * mid).flatten(2).sum(-1) - (f.P.abs() * rad).flatten(2).sum(-1) + const
