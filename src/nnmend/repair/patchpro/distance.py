"""PatchPro's loss: the sound safety distance of base + patch over each box (paper 002, Sec. III-B).

For box ``b`` with specification rows ``C_b y - d_b`` (grouped into disjuncts), the frozen base's CROWN
lower linear form ``A_base x + c_base`` (computed once, the base never changes) and the routed patch's
CROWN lower linear form ``A_p x + c_p`` are **added before concretisation** (the same input variables,
so correlation is kept) and minimised over the box: ``lb = min_box (A_base + A_p) x + c_base + c_p - d``.
The distance ``sum_groups min_{rows in group} relu(margin - lb)`` is 0 exactly when every disjunct of
the unsafe set is excluded by some row with ``lb >= margin``: zero means proved. Everything is batched
over boxes; each box gathers its own patch's weights (no loop over boxes or patches).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ...bounds import crown_linear_form
from ...bounds.backward import concretize
from ...bounds.operators.relu import BoundReLU
from .modules import StackedPatches

_RELU = BoundReLU(nn.ReLU(), "patch.relu")


@dataclass(frozen=True, eq=False)
class Items:
    """Boxes being trained, in patch space (input or feature), flat: lo, hi (B, D); C (B, R, out); d (B, R);
    patch (B,) routed patch; region (B,) region whose property the box certifies; A, c: the base's
    cached lower linear form (B, R, D), (B, R)."""

    lo: torch.Tensor
    hi: torch.Tensor
    C: torch.Tensor
    d: torch.Tensor
    patch: torch.Tensor
    region: torch.Tensor
    A: torch.Tensor
    c: torch.Tensor

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, idx: torch.Tensor) -> "Items":
        return Items(*(t[idx] for t in (self.lo, self.hi, self.C, self.d, self.patch, self.region, self.A, self.c)))

    @staticmethod
    def cat(parts: list["Items"]) -> "Items":
        return Items(*(torch.cat([getattr(p, f) for p in parts]) for f in ("lo", "hi", "C", "d", "patch", "region", "A", "c")))


def base_form(head: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, shape: tuple[int, ...], *,
              intermediate: str = "crown", chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen head's CROWN lower form over flat boxes (B, D) → ``(A (B, R, D), c (B, R))``, no gradient."""
    As, cs = [], []
    with torch.no_grad():
        for i in range(0, len(lo), chunk):              # chunks bound memory; each chunk is one batched pass
            A, c = crown_linear_form(head, lo[i:i + chunk].reshape(-1, *shape), hi[i:i + chunk].reshape(-1, *shape),
                                     C[i:i + chunk], intermediate=intermediate)
            As.append(A.flatten(2)), cs.append(c)
    return torch.cat(As), torch.cat(cs)


def with_base_forms(head: nn.Module, items: Items, shape: tuple[int, ...], intermediate: str, chunk: int = 256) -> Items:
    A, c = base_form(head, items.lo, items.hi, items.C, shape, intermediate=intermediate, chunk=chunk)
    return replace(items, A=A.to(items.lo.dtype), c=c.to(items.lo.dtype))


def patch_form(patches: StackedPatches, idx: torch.Tensor, C: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *,
               intermediate: str = "crown") -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN lower form of ``C_b · patch_{idx_b}(x)`` over each flat box: ``(A (B, m, D), c (B, m))``.

    Every box gathers its patch's stacked weights, so all boxes go through one batched back-substitution.
    Hidden ReLU bounds come from back-substitution too (``"crown"``) or from intervals (``"ibp"``).
    """
    Ws = [w[idx].to(lo.dtype) for w in patches.weights]                 # (B, out_k, in_k)
    bs = [b[idx].to(lo.dtype) for b in patches.biases]
    pre: list[tuple[torch.Tensor, torch.Tensor]] = []

    def backsub(A: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
        const = A.new_zeros(A.shape[:2])
        for k in range(top, -1, -1):
            const = const + (A @ bs[k].unsqueeze(-1)).squeeze(-1)
            A = A @ Ws[k]
            if k > 0:
                A, c = _RELU.backward_relaxed(A, *pre[k - 1])
                const = const + c
        return A, const

    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    for k in range(len(Ws) - 1):                                        # pre-activation bounds of hidden layer k
        if intermediate == "ibp" or k == 0:
            # layer 0 is affine in the input: its interval is exact either way
            if k == 0:
                m, r = mid, rad
            else:
                pl, pu = pre[k - 1]
                m, r = (torch.relu(pl) + torch.relu(pu)) / 2, (torch.relu(pu) - torch.relu(pl)) / 2
            cm = (Ws[k] @ m.unsqueeze(-1)).squeeze(-1) + bs[k]
            cr = (Ws[k].abs() @ r.unsqueeze(-1)).squeeze(-1)
            pre.append((cm - cr, cm + cr))
        else:
            n = Ws[k].shape[1]
            eye = torch.eye(n, dtype=lo.dtype).expand(len(lo), -1, -1)
            A, c = backsub(torch.cat([eye, -eye], 1), k)
            lb = concretize(A, c, lo, hi)
            pre.append((lb[:, :n], -lb[:, n:]))
    return backsub(C.to(lo.dtype), len(Ws) - 1)


def lower_bounds(patches: StackedPatches | None, items: Items, *, intermediate: str = "crown"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lb (B, R), slope (B, R, D))`` of ``C y - d`` for base + routed patch over each box; ``patches=None``
    bounds the base alone. ``slope`` is the combined linear form (used to choose split dimensions)."""
    A, c = items.A, items.c
    if patches is not None:
        Ap, cp = patch_form(patches, items.patch, items.C, items.lo, items.hi, intermediate=intermediate)
        A, c = A + Ap, c + cp
    return concretize(A, c, items.lo, items.hi) - items.d, A


def safety_distance(lb: torch.Tensor, groups: torch.Tensor, n_groups: int, margin: float) -> torch.Tensor:
    """``sum_k min_{i in group k} relu(margin - lb_i)``: (B,); 0 exactly when every group has a row with
    ``lb >= margin`` (the box is proved)."""
    gap = torch.relu(margin - lb)
    per = gap.new_full((len(lb), n_groups), float("inf"))
    per = per.scatter_reduce(1, groups.expand(len(lb), -1), gap, "amin", include_self=True)
    return per.sum(1)
