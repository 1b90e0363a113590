"""Box refinement (paper 002, Sec. III-C; ART's Bisecter): bisect the boxes whose distance stays positive.

The split dimension maximises ``|slope| × width`` summed over the rows that are not yet proved (the
"smear" heuristic: how much that dimension can move the lower bound), and the halving itself is
:func:`nnmend.bounds.bab.bisect`, shared with branch and bound. Children keep their parent's routed
patch and region; their base forms are recomputed (smaller boxes, tighter relaxation).
"""
from __future__ import annotations

import torch

from ...bounds.bab import bisect
from .distance import Items


def split_scores(slope: torch.Tensor, lb: torch.Tensor, width: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, D) score per dimension: ``sum_{rows with lb < margin} |slope| × width``."""
    open_rows = (lb < margin).to(slope.dtype).unsqueeze(-1)
    return (slope.abs() * open_rows).sum(1) * width


def split_items(items: Items, chosen: torch.Tensor, scores: torch.Tensor, tiny_width: float) -> tuple[Items, int]:
    """Replace the boxes ``chosen`` (indices) by their two halves; boxes whose best dimension is narrower
    than ``tiny_width`` stay whole. Returns the new items (without base forms for the children: the
    caller recomputes them) and how many boxes were split."""
    width = (items.hi - items.lo)[chosen]
    sc = torch.where(width > tiny_width, scores[chosen] + width * 1e-12, torch.zeros_like(width))
    dim = sc.argmax(1)
    ok = width.gather(1, dim[:, None]).squeeze(1) > tiny_width
    chosen, dim = chosen[ok], dim[ok]
    if len(chosen) == 0:
        return items, 0
    keep = torch.ones(len(items), dtype=torch.bool)
    keep[chosen] = False
    parent = items.take(chosen)
    llo, lhi, rlo, rhi = bisect(parent.lo, parent.hi, dim)
    left = Items(llo, lhi, parent.C, parent.d, parent.patch, parent.region, parent.A, parent.c)
    right = Items(rlo, rhi, parent.C, parent.d, parent.patch, parent.region, parent.A, parent.c)
    return Items.cat([items.take(torch.nonzero(keep).squeeze(1)), left, right]), len(chosen)
