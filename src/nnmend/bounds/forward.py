"""Forward symbolic bounds (DeepPoly without back-substitution, as in DiffAbs/PatchPro, Sec. B.2 of
our research notes; Wang et al., Neurify, 2018).

Every neuron carries a lower and an upper linear function of the *input* (coefficients (B, d, *shape)
and constants (B, *shape), d = input size). Affine layers map them with ``W+ L + W- U``; a ReLU uses
the same relaxation as CROWN. Much cheaper than back-substitution when the input is small (ACAS Xu:
d = 5), looser on deep networks; used here for the pre-activation bounds of intermediate layers.
"""
from __future__ import annotations

import torch

from .graph import Node, SumNode
from .operators import adaptive_slope

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


def forward_bounds(nodes: list[Node], lo: torch.Tensor, hi: torch.Tensor, ibp: dict) -> dict:
    """Pre-activation bounds ``{relu_op: (l, u)}`` from forward symbolic propagation ∩ interval bounds."""
    B = lo.shape[0]
    d = lo[0].numel()
    mid, rad = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    eye = torch.eye(d, dtype=lo.dtype, device=lo.device).reshape(1, d, *lo.shape[1:]).expand(B, -1, *lo.shape[1:])
    zero = torch.zeros_like(lo)
    pre: dict = {}

    def run(seq: list[Node], forms: Forms) -> Forms:
        for n in seq:
            if isinstance(n, SumNode):
                parts = [run(b, forms) for b in n.branches]
                forms = tuple(sum(p[i] for p in parts[1:]) + parts[0][i] for i in range(4))
            elif n.is_relu:
                Lw, Lb, Uw, Ub = forms
                l = torch.max(_concretize(Lw, Lb, mid, rad, False), ibp[n][0])
                u = torch.min(_concretize(Uw, Ub, mid, rad, True), ibp[n][1])
                pre[n] = (l, u)
                active = (l >= 0).to(l.dtype)
                unstable = (l < 0) & (u > 0)
                up = torch.where(unstable, u / (u - l).clamp_min(1e-30), active)
                low = torch.where(unstable, adaptive_slope(l, u), active)
                # lower line a*x with a >= 0 applies to the lower form; chord applies to the upper form
                forms = (Lw * low.unsqueeze(1), Lb * low, Uw * up.unsqueeze(1),
                         torch.where(unstable, up * (Ub - l), Ub * up))
            else:
                forms = _affine(n, forms)
        return forms

    run(nodes, (eye, zero, eye, zero))
    return pre
