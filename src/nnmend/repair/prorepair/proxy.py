"""Proxy boxes: feature-space boxes that sound bounds prove map through the frozen head ``g`` to a safe output.

Affine head ``g(z) = W z + b`` (the default split). A row ``C_i`` of the specification becomes the
feature-space half-space ``a_i · z + β_i > 0`` with ``a_i = C_i W``, ``β_i = C_i b - d_i``; its minimum
over a box ``[l, u]`` is exact: ``Σ_{a>0} a l + Σ_{a<0} a u + β``. It involves ``l`` only where
``a > 0`` and ``u`` only where ``a < 0``, so the other side of each coordinate can be ``±∞``: the
largest boxes inside a half-space are half-open. Synthesis per item:

1. per disjunct, keep the row whose half-space is nearest to the current feature box (normalised
   deficit); a safe box must satisfy one row per disjunct;
2. move the bound vector ``p = (l, u)`` of the current feature box (a point has ``l = u = h(x)``) to the
   nearest ``p`` with ``a_k · p ≥ margin · ||a_k||`` for the kept rows and ``l ≤ u``: the Euclidean
   projection onto an intersection of half-spaces. One row: closed form (``p + δ a / ||a||²``);
   several: Dykstra's alternating projections, batched over items;
3. open every side no kept row constrains to ``±∞`` (as large as possible) and certify the box with
   the exact formula in float64.

Non-affine head: bound-constrained growth. The centre starts at the current feature (region: the
centre of its bounds), moves by gradient ascent on the head's safety value until it is classified
correctly, then the box ``c ± s·r`` grows by bisection on ``s`` while CROWN on ``g`` still proves it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...bounds import bound
from .spec import RowSpec


@dataclass
class ProxyBoxes:
    """``lo, hi`` (B, n) with ``±inf`` allowed; ``certified`` (B,) bool: sound bounds prove the box safe."""

    lo: torch.Tensor
    hi: torch.Tensor
    certified: torch.Tensor


def affine_head(g: nn.Module) -> nn.Linear | None:
    """The Linear layer when ``g`` is exactly one affine map (Identity/Flatten around it allowed)."""
    mods = [m for m in (g if isinstance(g, nn.Sequential) else [g]) if not isinstance(m, (nn.Identity, nn.Flatten))]
    return mods[0] if len(mods) == 1 and isinstance(mods[0], nn.Linear) else None


def _feature_rows(lin: nn.Linear, spec: RowSpec) -> tuple[torch.Tensor, torch.Tensor]:
    W, b = lin.weight.detach().double(), lin.bias.detach().double() if lin.bias is not None else 0.0
    C = spec.C.double()
    a = C @ W                                                      # (B, R, n)
    beta = (C @ b if torch.is_tensor(b) else 0.0) - spec.d.double()
    return a, beta


def box_min(a: torch.Tensor, beta: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Exact ``min_{z in [lo, hi]} a_r · z + β_r``: a (B, R, n), lo/hi (B, n) (±inf allowed) → (B, R)."""
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    pos = torch.where(a > 0, a * lo, torch.zeros_like(a))
    neg = torch.where(a < 0, a * hi, torch.zeros_like(a))
    return (pos + neg).sum(-1) + beta


def _select_rows(a: torch.Tensor, beta: torch.Tensor, spec: RowSpec, flo: torch.Tensor, fhi: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per disjunct: the one with the largest normalised value on the current box. → (B, k, n), (B, k)."""
    score = box_min(a, beta, flo, fhi) / a.norm(dim=-1).clamp(min=1e-12)        # signed distance-like
    a_sel, b_sel = [], []
    for g in range(spec.k):                    # disjuncts are few (<= 10); items stay batched
        rows = torch.nonzero(spec.groups == g).squeeze(1)
        best = rows[score[:, rows].argmax(1)]
        a_sel.append(a[torch.arange(len(a)), best])
        b_sel.append(beta[torch.arange(len(a)), best])
    return torch.stack(a_sel, 1), torch.stack(b_sel, 1)


def _project(p0: torch.Tensor, G: torch.Tensor, rhs: torch.Tensor, n: int, iters: int, nonneg: bool = False
             ) -> torch.Tensor:
    """Nearest ``p`` to ``p0`` (B, 2n) with ``G_k · p >= rhs_k`` (G (B, K, 2n)) and ``p[:n] <= p[n:]`` (Dykstra);
    ``nonneg`` adds ``p[n:] >= 0`` (ReLU features can never be negative, so no box may demand it)."""
    K = G.shape[1]
    gg = (G * G).sum(-1).clamp(min=1e-24)
    p = p0.clone()
    sets = K + 1 + int(nonneg)
    q = torch.zeros(sets, *p0.shape, dtype=p0.dtype)
    for _ in range(max(iters, 1)):
        before = p
        for j in range(sets):
            v = p + q[j]
            if j < K:
                gap = (rhs[:, j] - (G[:, j] * v).sum(-1)).clamp(min=0)
                y = v + (gap / gg[:, j]).unsqueeze(-1) * G[:, j]
            elif j == K + 1:
                y = torch.cat([v[:, :n], v[:, n:].clamp(min=0)], 1)
            else:
                lo, hi = v[:, :n], v[:, n:]
                mid = (lo + hi) / 2
                cross = lo > hi
                y = torch.cat([torch.where(cross, mid, lo), torch.where(cross, mid, hi)], 1)
            q[j] = v - y
            p = y
        if (p - before).abs().max() < 1e-10:
            break
    return p


def linear_proxy(lin: nn.Linear, spec: RowSpec, flo: torch.Tensor, fhi: torch.Tensor, *, margin: float,
                 iters: int = 60, nonneg: bool = False) -> ProxyBoxes:
    """Proxy boxes for an affine head, closest to the feature boxes ``[flo, fhi]`` (B, n) (a point: flo = fhi).

    Returns boxes that contain ``[flo, fhi]`` when that box is already proven, as large as the kept
    rows allow (unconstrained sides at ``±inf``), certified in float64 by the exact box minimum.
    ``nonneg``: the features are ReLU outputs; no box asks for an upper side below 0.
    """
    flo, fhi = flo.detach().double(), fhi.detach().double()
    n = flo.shape[1]
    a, beta = _feature_rows(lin, spec)
    a_sel, b_sel = _select_rows(a, beta, spec, flo, fhi)
    norm = a_sel.norm(dim=-1)
    G = torch.cat([a_sel.clamp(min=0), a_sel.clamp(max=0)], -1)           # coefficients of (l, u)
    rhs = margin * norm - b_sel
    p = _project(torch.cat([flo, fhi], 1), G, rhs, n, iters, nonneg)
    lo, hi = p[:, :n], p[:, n:]
    inf = torch.full_like(lo, float("inf"))
    lo = torch.where((a_sel > 0).any(1), lo, -inf)                         # unconstrained sides open
    hi = torch.where((a_sel < 0).any(1), hi, inf)
    certified = (box_min(a_sel, b_sel, lo, hi) > 0).all(1) & (lo <= hi).all(1)
    return ProxyBoxes(lo, hi, certified)


def _head_value(g: nn.Module, spec: RowSpec, z: torch.Tensor) -> torch.Tensor:
    return spec.value(g(z))


def grown_proxy(g: nn.Module, spec: RowSpec, flo: torch.Tensor, fhi: torch.Tensor, *, margin: float,
                steps: int = 12, method: str = "crown", ascent_steps: int = 50) -> ProxyBoxes:
    """Proxy boxes for a non-affine head by bound-constrained growth (see the module docstring).

    The box is ``c ± s·r`` with ``r`` the half-width of ``[flo, fhi]`` plus ``margin`` in every
    coordinate; ``s`` in [0, 4] by ``steps`` bisections on CROWN proofs of ``g`` (all items batched).
    """
    flo, fhi = flo.detach().float(), fhi.detach().float()
    c = ((flo + fhi) / 2).clone()
    r = (fhi - flo) / 2 + margin
    # move unsafe centres to the correct side: linearised (Newton) steps onto the level set
    # v = 2·margin·||grad||, the non-affine analogue of the affine head's projection
    for _ in range(ascent_steps):
        c.requires_grad_(True)
        v = _head_value(g, spec, c)
        grad, = torch.autograd.grad(v.sum(), c)
        gn = grad.norm(dim=1).clamp(min=1e-12)
        bad = v <= 2 * margin * gn
        if not bad.any():
            break
        step = ((2 * margin * gn - v).clamp(min=0) / gn**2 * 1.5).unsqueeze(1) * grad
        c = (c + step * bad.unsqueeze(1).float()).detach()
    c = c.detach()

    def proven(s: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            lb, _ = bound(g, c - s[:, None] * r, c + s[:, None] * r, spec.C, method=method)
        return spec.proven(lb)

    lo_s, hi_s = torch.zeros(len(c)), torch.full((len(c),), 4.0)
    ok_hi = proven(hi_s)
    for _ in range(steps):
        mid = (lo_s + hi_s) / 2
        ok = proven(mid)
        lo_s, hi_s = torch.where(ok, mid, lo_s), torch.where(ok, hi_s, mid)
    s = torch.where(ok_hi, hi_s, lo_s)
    certified = proven(s) if len(c) else torch.zeros(0, dtype=torch.bool)
    return ProxyBoxes((c - s[:, None] * r).double(), (c + s[:, None] * r).double(), certified)


def synthesize(g: nn.Module, spec: RowSpec, flo: torch.Tensor, fhi: torch.Tensor, *, margin: float,
               iters: int = 60, steps: int = 12, method: str = "crown", nonneg: bool = False) -> ProxyBoxes:
    """Proxy boxes for every item at once: closed form / projection when ``g`` is affine, growth otherwise."""
    lin = affine_head(g)
    if lin is not None:
        return linear_proxy(lin, spec, flo, fhi, margin=margin, iters=iters, nonneg=nonneg)
    return grown_proxy(g, spec, flo, fhi, margin=margin, steps=steps, method=method)


def box_distance(flo: torch.Tensor, fhi: torch.Tensor, boxes: ProxyBoxes, scale: torch.Tensor | float = 1.0
                 ) -> torch.Tensor:
    """Bounded distance term per item: ``||relu(l - flo)/s||² + ||relu(fhi - u)/s||²`` (zero inside the box).

    ``scale`` (n,) expresses feature distances in units of each feature's spread on clean data, so the
    term and the preservation term are comparable whatever the network's feature magnitudes.
    """
    lo, hi = boxes.lo.to(flo.dtype), boxes.hi.to(fhi.dtype)
    return ((((lo - flo).clamp(min=0) / scale) ** 2).sum(1) + (((fhi - hi).clamp(min=0) / scale) ** 2).sum(1))
