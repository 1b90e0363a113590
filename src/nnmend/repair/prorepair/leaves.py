"""Leaves of the property refinement: a partition of each property box into sub-boxes.

A leaf is a flat input box with the index of the property region it came from. Bisection keeps the
leaves an exact partition (the halves share only their cut face), so proving every leaf proves the
region.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...bounds.bab import bisect


@dataclass
class Leaves:
    """``lo, hi`` (L, d) float64 flat boxes; ``needs_repair`` (L,) bool: a counterexample was found here
    or in the leaf it was split from."""

    lo: torch.Tensor
    hi: torch.Tensor
    needs_repair: torch.Tensor

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, idx: torch.Tensor) -> "Leaves":
        return Leaves(self.lo[idx], self.hi[idx], self.needs_repair[idx])

    def cat(self, other: "Leaves") -> "Leaves":
        return Leaves(torch.cat([self.lo, other.lo]), torch.cat([self.hi, other.hi]),
                      torch.cat([self.needs_repair, other.needs_repair]))


def split(leaves: Leaves, dim: torch.Tensor) -> Leaves:
    """Bisect every leaf along its ``dim``: returns 2L leaves (left halves first), flags inherited."""
    _, left_hi, right_lo, _ = bisect(leaves.lo, leaves.hi, dim)
    return Leaves(torch.cat([leaves.lo, right_lo]), torch.cat([left_hi, leaves.hi]),
                  torch.cat([leaves.needs_repair, leaves.needs_repair]))


def uniform_split(lo: torch.Tensor, hi: torch.Tensor, times: int) -> Leaves:
    """Bisect ``times`` times, each time along the dimension widest relative to the original box."""
    span = (hi - lo).clamp(min=1e-30)
    leaves = Leaves(lo[None].clone(), hi[None].clone(), torch.zeros(1, dtype=torch.bool))
    for _ in range(times):
        rel = (leaves.hi - leaves.lo) / span
        leaves = split(leaves, rel.argmax(1))
    return leaves
