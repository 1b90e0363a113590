"""Forward symbolic bounds (DeepPoly without back-substitution, as in DiffAbs/PatchPro, Sec. B.2 of
our research notes; Wang et al., Neurify, 2018).

Every node's output carries a lower and an upper linear function of the *input* (coefficients
(B, d, *shape) and constants (B, *shape), d = input size). Single-input affine nodes map them with
``W+ L + W- U``; sums and concatenations combine them; an element-wise activation uses its relaxation's
lines; any other node falls back to its interval bounds (constant forms), which is sound. Much cheaper
than back-substitution when the input is small (ACAS Xu: d = 5), looser on deep networks; used here for
the input bounds of intermediate non-linear nodes.
"""
from __future__ import annotations

import torch

from .graph import BoundGraph
from .operators import BoundElementwise
from .operators.shape import BoundAdd, BoundConcat, BoundSub

Forms = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]   # Lw, Lb, Uw, Ub


def _concretize(Lw: torch.Tensor, Lb: torch.Tensor, mid: torch.Tensor, rad: torch.Tensor, upper: bool) -> torch.Tensor:
    """min (or max) over the box of ``Lw · x + Lb``; ``mid``/``rad`` (B, d)."""
    shape = Lb.shape
    W = Lw.flatten(2)                                          # (B, d, n)
    c = torch.einsum("bdn,bd->bn", W, mid)
    r = torch.einsum("bdn,bd->bn", W.abs(), rad)
    return (c + r if upper else c - r).reshape(shape) + Lb


def _affine(op, forms: Forms) -> Forms:
    Lw, Lb, Uw, Ub = forms
    B, d = Lw.shape[:2]
    # W+ L + W- U = W (L + U)/2 + |W| (L - U)/2 (and the mirror image for the upper form)
    cw = op.linear_map(((Lw + Uw) / 2).flatten(0, 1))
    rw = op.abs_map(((Uw - Lw) / 2).flatten(0, 1))
    cb = op.forward((Lb + Ub) / 2)
    rb = op.abs_map((Ub - Lb) / 2)
    out = cw.shape[1:]
    cw, rw = cw.reshape(B, d, *out), rw.reshape(B, d, *out)
    return cw - rw, cb - rb, cw + rw, cb + rb


def forward_bounds(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, ibp: dict) -> dict:
    """Input bounds ``{node: (l, u)}`` of every non-linear node from forward symbolic propagation ∩ intervals."""
    B = lo.shape[0]
    d = lo[0].numel()
    mid, rad = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    eye = torch.eye(d, dtype=lo.dtype, device=lo.device).reshape(1, d, *lo.shape[1:]).expand(B, -1, *lo.shape[1:])
    forms: dict[int, Forms] = {-1: (eye, torch.zeros_like(lo), eye, torch.zeros_like(lo))}
    bounds: dict[int, tuple[torch.Tensor, torch.Tensor]] = {-1: (lo, hi)}
    pre: dict = {}

    def constant(l: torch.Tensor, u: torch.Tensor) -> Forms:
        z = l.new_zeros((B, d, *l.shape[1:]))
        return z, l, z, u

    for i, n in enumerate(graph):
        ins = [forms[j] for j in n.inputs]
        if n.nonlinear:
            Lw, Lb, Uw, Ub = ins[0]
            l = torch.max(_concretize(Lw, Lb, mid, rad, False), ibp[n][0])
            u = torch.min(_concretize(Uw, Ub, mid, rad, True), ibp[n][1])
            pre[n] = (l, u)
            if isinstance(n, BoundElementwise):
                a_l, b_l, a_u, b_u = n.lines(l, u)
                # a line with a negative slope swaps the forms it takes (S-shaped lines never do; ReLU's never)
                lw = torch.where(a_l.unsqueeze(1) >= 0, Lw, Uw) * a_l.unsqueeze(1)
                lb = torch.where(a_l >= 0, Lb, Ub) * a_l + b_l
                uw = torch.where(a_u.unsqueeze(1) >= 0, Uw, Lw) * a_u.unsqueeze(1)
                ub = torch.where(a_u >= 0, Ub, Lb) * a_u + b_u
                forms[i] = (lw, lb, uw, ub)
            else:
                forms[i] = constant(*n.interval((l, u)))
        elif isinstance(n, (BoundAdd, BoundSub)) and all(s == n.in_shapes[0] for s in n.in_shapes):
            if isinstance(n, BoundSub):
                (a, b, c, e), (f, g, h, k) = ins
                forms[i] = (a - h, b - k, c - f, e - g)
            else:
                forms[i] = tuple(sum(p[t] for p in ins[1:]) + ins[0][t] for t in range(4))
        elif isinstance(n, BoundConcat):
            ax = (n.module.axis % len(n.out_shape))
            forms[i] = tuple(torch.cat([p[t] for p in ins], ax + (2 if t % 2 == 0 else 1)) for t in range(4))
        elif len(ins) == 1:
            try:
                forms[i] = _affine(n, ins[0])
            except NotImplementedError:
                forms[i] = constant(*n.interval(*(bounds[j] for j in n.inputs)))
        else:
            forms[i] = constant(*n.interval(*(bounds[j] for j in n.inputs)))
        bounds[i] = n.interval(*(bounds[j] if not n.nonlinear else pre[n] for j in n.inputs))
    return pre
