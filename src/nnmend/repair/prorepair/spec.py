"""Output specifications as batched rows: what "correct" means for each repair item.

An item's *unsafe* output set is a disjunction of conjunctions ``C_i y <= d_i`` (VNN-LIB semantics,
as :mod:`nnmend.bounds.bab`); rows are grouped by disjunct. A set of outputs is proven safe when
every disjunct has one row whose lower bound of ``C_i y - d_i`` is positive. Point-wise items with
label ``y`` have one row ``e_y - e_j`` per other class ``j`` (each its own disjunct).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...bounds.bab import group_max


@dataclass(frozen=True)
class RowSpec:
    """``C`` (B, R, n_out), ``d`` (B, R), ``groups`` (R,) disjunct index of each row, ``k`` disjuncts."""

    C: torch.Tensor
    d: torch.Tensor
    groups: torch.Tensor
    k: int

    def take(self, idx: torch.Tensor) -> "RowSpec":
        return RowSpec(self.C[idx], self.d[idx], self.groups, self.k)

    def proven(self, lb: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
        """Per item: every disjunct has a row with ``lb(C_i y) - d_i > margin``. ``lb`` (B, R) → (B,) bool."""
        return (group_max(lb - self.d, self.groups, self.k) > margin).all(1)

    def value(self, y: torch.Tensor) -> torch.Tensor:
        """Concrete ``min_k max_{i in k} (C_i y - d_i)`` per item: > 0 iff ``y`` is safe. ``y`` (B, n_out)."""
        rows = torch.einsum("brn,bn->br", self.C.to(y.dtype), y) - self.d.to(y.dtype)
        return group_max(rows, self.groups, self.k).min(1).values


def label_spec(labels: torch.Tensor, n_out: int) -> RowSpec:
    """Rows ``e_y - e_j`` (j != y) for each label: the item is safe when class ``y`` beats every other."""
    B = len(labels)
    eye = torch.eye(n_out)
    others = torch.stack([torch.cat([torch.arange(0, int(y)), torch.arange(int(y) + 1, n_out)]) for y in range(n_out)])
    C = eye[labels].unsqueeze(1) - eye[others[labels]]            # (B, n_out-1, n_out)
    return RowSpec(C, torch.zeros(B, n_out - 1), torch.arange(n_out - 1), n_out - 1)


def box_spec(unsafe: list[tuple[torch.Tensor, torch.Tensor]], B: int) -> RowSpec:
    """The rows of one property region's unsafe set ``[(A_k, b_k), ...]``, repeated for ``B`` leaves."""
    C = torch.cat([torch.as_tensor(A, dtype=torch.float32) for A, _ in unsafe])
    d = torch.cat([torch.as_tensor(b, dtype=torch.float32).reshape(-1) for _, b in unsafe])
    groups = torch.cat([torch.full((len(torch.as_tensor(b).reshape(-1)),), i, dtype=torch.long)
                        for i, (_, b) in enumerate(unsafe)])
    return RowSpec(C.expand(B, -1, -1), d.expand(B, -1), groups, len(unsafe))
