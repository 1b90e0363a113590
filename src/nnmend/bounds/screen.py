"""One batched pass over all the regions of a property before any per-region search.

A VNN-LIB file may hold hundreds of input regions, each with its own unsafe disjuncts (nn4sys'
``lindex_3000``: 3,000 one-dimensional boxes). Searching them one by one pays a full branch-and-bound set-up
per region; here every region is bounded by CROWN in one back-substitution (each box with its own
specification rows, padded to a common shape) and probed for counterexamples in one forward pass. Only the
regions this leaves open go on to the per-region search.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from .bab import batch_limit
from .backward import crown_lower, intermediate_bounds
from .graph import compile_network
from .interval import interval_pass


@dataclass
class StackedSpecs:
    """Per-region unsafe sets, padded: ``C (G, R, n_out)``, ``d (G, R)``, ``groups (G, R)`` (padding rows sit in
    group ``k`` with ``d = +inf``), ``real (G, k + 1)``: which groups are disjuncts of the region."""
    C: torch.Tensor
    d: torch.Tensor
    groups: torch.Tensor
    real: torch.Tensor

    @property
    def k(self) -> int:
        return self.real.shape[1] - 1


def stack_specs(specs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], dtype: torch.dtype) -> StackedSpecs:
    """Pad each region's ``(C (R_g, n), d (R_g,), groups (R_g,))`` to common shapes."""
    G, n = len(specs), specs[0][0].shape[1]
    R = max(len(d) for _, d, _ in specs)
    k = max(int(g.max()) + 1 for _, _, g in specs)
    C = torch.zeros(G, R, n, dtype=dtype)
    d = torch.full((G, R), float("inf"), dtype=dtype)
    groups = torch.full((G, R), k, dtype=torch.long)
    real = torch.zeros(G, k + 1, dtype=torch.bool)
    for i, (Ci, di, gi) in enumerate(specs):      # building the padded tensors, once per property
        C[i, :len(di)], d[i, :len(di)], groups[i, :len(di)] = Ci.to(dtype), di.to(dtype), gi
        real[i, gi] = True
    return StackedSpecs(C, d, groups, real)


def _group_max(vals: torch.Tensor, groups: torch.Tensor, k1: int) -> torch.Tensor:
    """(..., R) values, (..., R) group ids → (..., k1) max per group."""
    out = vals.new_full((*vals.shape[:-1], k1), -float("inf"))
    return out.scatter_reduce(-1, groups.expand_as(vals), vals, "amax", include_self=True)


def region_violation(y: torch.Tensor, spec: StackedSpecs, idx: torch.Tensor) -> torch.Tensor:
    """``min over region idx's disjuncts of max over their rows of (C y - d)`` for outputs ``y (N, n_out)`` of points
    in regions ``idx (N,)``: <= 0 exactly when the point is unsafe."""
    vals = torch.einsum("nrj,nj->nr", spec.C[idx], y.flatten(1).to(spec.C.dtype)) - spec.d[idx]
    gm = _group_max(vals, spec.groups[idx], spec.k + 1)
    return gm.masked_fill(~spec.real[idx], float("inf")).min(-1).values


@torch.no_grad()
def screen_regions(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, spec: StackedSpecs, *, deadline: float,
                   budget: int, margin: float = 1e-9, probes: int = 8, seed: int = 0
                   ) -> tuple[torch.Tensor, tuple[int, torch.Tensor, torch.Tensor] | None]:
    """Prove or falsify many regions ``[lo, hi]`` (G, *in_shape) at once, in float64.

    Probes each region's centre, ``probes`` uniform points and, after CROWN, the corners that minimise each
    row's linear lower bound; CROWN proves a region when every disjunct has a row whose lower bound exceeds
    its threshold. ``budget``: bytes one back-substitution may use (sets the regions per batch). Returns ``(proven (G,) bool,
    counterexample (region, x, y) or None)``; regions not reached before ``deadline`` stay unproven.
    """
    net64 = copy.deepcopy(net).double().eval()
    lo, hi = lo.double(), hi.double()
    G, shape = len(lo), lo.shape[1:]
    gen = torch.Generator().manual_seed(seed)

    def confirm(x: torch.Tensor, idx: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        x = torch.max(torch.min(x, hi[idx]), lo[idx])
        y = net64(x)
        bad = torch.nonzero(region_violation(y, spec, idx) <= 0).flatten()
        return None if not len(bad) else (int(idx[bad[0]]), x[bad[0]].clone(), y[bad[0]].clone())

    u = torch.cat([torch.full((G, 1, *shape), 0.5, dtype=torch.float64),
                   torch.rand((G, probes, *shape), generator=gen, dtype=torch.float64)], 1)
    x = (lo[:, None] + u * (hi - lo)[:, None]).reshape(-1, *shape)
    cex = confirm(x, torch.arange(G).repeat_interleave(probes + 1))
    proven = torch.zeros(G, dtype=torch.bool)
    if cex is not None:
        return proven, cex
    nodes = compile_network(net64, input_shape=tuple(shape))
    interval_pass(nodes, lo[:1], hi[:1])
    batch = batch_limit(nodes.nodes, spec.C.shape[1], 8, budget)
    for s in range(0, G, batch):
        if time.monotonic() > deadline:
            break
        idx = torch.arange(s, min(G, s + batch))
        blo, bhi = lo[idx], hi[idx]
        pre = intermediate_bounds(nodes, blo, bhi)
        A = spec.C[idx].reshape(len(idx), spec.C.shape[1], *nodes[-1].out_shape)
        lb, A_in = crown_lower(nodes, blo, bhi, A, pre)
        gm = _group_max(lb - spec.d[idx], spec.groups[idx], spec.k + 1)
        proven[idx] = (gm > margin).logical_or(~spec.real[idx]).all(1)
        flo, fhi = blo.flatten(1), bhi.flatten(1)
        corners = torch.where(A_in.flatten(2) >= 0, flo[:, None], fhi[:, None])     # (b, R, n)
        cex = confirm(corners.reshape(-1, *shape), idx.repeat_interleave(corners.shape[1]))
        if cex is not None:
            return proven, cex
    return proven, None
