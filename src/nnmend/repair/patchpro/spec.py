"""What PatchPro repairs: regions (input boxes) with output specifications, checked at the edge.

A problem is a :class:`~nnmend.repair.repair_sets.RepairSet`, a list of
:class:`~nnmend.properties.LocalRobustness`, or a :class:`~nnmend.properties.SafetyProperty`. Each
becomes one *region*: an input box and an unsafe set given as a disjunction of conjunctions
``A y <= b`` (VNN-LIB semantics). All regions are stacked as rows ``C (R, rows, n_out)``, ``d (R, rows)``
with a shared group index per row (one group per disjunct). A region is proved when, for every group,
some row has lower bound ``C y - d > 0`` over the box. All regions of one run must have the same
structure of rows and disjuncts (true of local robustness and of every ACAS Xu property).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ...errors import PropertyError
from ...properties import LocalRobustness, SafetyProperty, nnet_domain
from ..repair_sets import RepairSet


@dataclass(frozen=True, eq=False)
class Regions:
    """Stacked regions. lo, hi (R, *in_shape) float64; C (R, rows, n_out); d (R, rows); groups (rows,);
    n_groups; tags (R, 2) long (true, wrong label; -1 when not a classification property); props: one
    property per region (for the independent re-check); kind "robustness" or "safety"."""

    lo: torch.Tensor
    hi: torch.Tensor
    C: torch.Tensor
    d: torch.Tensor
    groups: torch.Tensor
    n_groups: int
    tags: torch.Tensor
    props: list
    kind: str
    in_shape: tuple[int, ...]
    n_out: int


def _output_size(net: nn.Module, shape: tuple[int, ...], where: str) -> int:
    p = next(iter(net.parameters()), None)
    try:
        with torch.no_grad():
            return net(torch.zeros((1, *shape), dtype=p.dtype if p is not None else torch.float32))[0].numel()
    except RuntimeError as exc:
        raise PropertyError(f"{where}: the network does not accept inputs of shape {shape} "
                            f"({str(exc).splitlines()[0]})") from None


def build_regions(network: nn.Module, problem, *, tol: float = 1e-6) -> Regions:
    """Turn ``problem`` into :class:`Regions`, raising :class:`PropertyError` on bad input (naming it)."""
    wrong = None
    if isinstance(problem, RepairSet):
        props, wrong = problem.properties(), problem.wrong
    elif isinstance(problem, LocalRobustness):
        props = [problem]
    elif isinstance(problem, SafetyProperty):
        props = [problem]
    elif isinstance(problem, Sequence) and problem and all(isinstance(p, LocalRobustness) for p in problem):
        props = list(problem)
    else:
        raise PropertyError("patchpro: the problem must be a RepairSet, LocalRobustness properties or a "
                            f"SafetyProperty; got {type(problem).__name__}")
    if isinstance(props[0], LocalRobustness):
        return _robustness(network, props, wrong)
    return _safety(network, props[0], tol)


def _robustness(network: nn.Module, props: list[LocalRobustness], wrong: torch.Tensor | None) -> Regions:
    shape = tuple(props[0].x.shape)
    for i, p in enumerate(props):
        if tuple(p.x.shape) != shape:
            raise PropertyError(f"patchpro: property {i} has input shape {tuple(p.x.shape)}, property 0 has {shape}")
        if not math.isfinite(p.eps) or p.eps <= 0:
            raise PropertyError(f"patchpro: property {i} has eps={p.eps}; it must be a positive number")
        if not torch.isfinite(p.x).all():
            raise PropertyError(f"patchpro: property {i}'s centre contains NaN or Inf")
        if (p.clip_lo is not None and bool((p.x < p.clip_lo).any())) or (p.clip_hi is not None and bool((p.x > p.clip_hi).any())):
            raise PropertyError(f"patchpro: property {i}'s centre lies outside the input domain "
                                f"[{p.clip_lo}, {p.clip_hi}] (range {float(p.x.min()):.3g}..{float(p.x.max()):.3g})")
    n_out = _output_size(network, shape, "patchpro")
    boxes = [p.boxes(n_out)[0] for p in props]
    lo, hi = torch.stack([b.lo for b in boxes]), torch.stack([b.hi for b in boxes])
    C = torch.stack([torch.cat([A for A, _ in b.unsafe]) for b in boxes])
    d = torch.stack([torch.cat([bb for _, bb in b.unsafe]) for b in boxes])
    groups = torch.arange(C.shape[1])
    labels = torch.tensor([p.label for p in props])
    if wrong is None:                     # no adversarial sample: tag with the runner-up class at the centre
        with torch.no_grad():
            out = network(torch.stack([p.x for p in props]).to(next(network.parameters()).dtype))
        wrong = out.scatter(1, labels[:, None], -float("inf")).argmax(1)
    tags = torch.stack([labels, wrong.long()], 1)
    return Regions(lo, hi, C, d, groups, C.shape[1], tags, props, "robustness", shape, n_out)


def _safety(network: nn.Module, prop: SafetyProperty, tol: float) -> Regions:
    where = prop.source or "property"
    if not prop.regions:
        raise PropertyError(f"{where}: the property has no input region")
    n_in = torch.as_tensor(prop.regions[0].lo).numel()
    shape = tuple(getattr(network, "nnmend_input_shape", None) or (n_in,))
    if math.prod(shape) != n_in:
        raise PropertyError(f"{where} has {n_in} inputs but the network takes input of shape {shape} "
                            f"({math.prod(shape)} values)")
    n_out = _output_size(network, shape, where)
    boxes = prop.boxes(n_out)
    dom = nnet_domain(network)
    los, his, Cs, ds, gs = [], [], [], [], []
    for i, b in enumerate(boxes):
        if b.lo.numel() != n_in:
            raise PropertyError(f"{where}: region {i} has {b.lo.numel()} inputs, region 0 has {n_in}")
        if (b.lo > b.hi).any():
            raise PropertyError(f"{where}: region {i} is empty (lo > hi in some input)")
        if not b.unsafe or any(A.shape[0] == 0 for A, _ in b.unsafe):
            raise PropertyError(f"{where}: region {i} has an empty unsafe set or an always-true disjunct; "
                                "there is nothing a patch can prove")
        if dom is not None and (bool((b.lo < dom[0] - tol).any()) or bool((b.hi > dom[1] + tol).any())):
            raise PropertyError(f"{where}: region {i} leaves the network's input domain "
                                f"[{dom[0].tolist()}, {dom[1].tolist()}]")
        C = torch.cat([A for A, _ in b.unsafe])
        d = torch.cat([bb for _, bb in b.unsafe])
        g = torch.cat([torch.full((A.shape[0],), j) for j, (A, _) in enumerate(b.unsafe)])
        los.append(b.lo.reshape(shape)), his.append(b.hi.reshape(shape)), Cs.append(C), ds.append(d), gs.append(g)
    if any(len(g) != len(gs[0]) or not torch.equal(g, gs[0]) for g in gs):
        raise PropertyError(f"{where}: regions with differently structured unsafe sets are not supported in one run; "
                            "repair them one region at a time")
    R = len(boxes)
    tags = torch.full((R, 2), -1, dtype=torch.long)
    props = [SafetyProperty([b], f"{where} region {i}") for i, b in enumerate(boxes)]
    return Regions(torch.stack(los), torch.stack(his), torch.stack(Cs), torch.stack(ds), gs[0], int(gs[0].max()) + 1, tags, props,
                   "safety", shape, n_out)
