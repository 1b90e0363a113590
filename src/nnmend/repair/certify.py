"""One certificate for every method: a region property re-proved on the *saved and reloaded* network.

Used by the harness (:func:`nnmend.repair.run`) for every property target, and by ProRepair, PatchPro and
the output guard for their own records; nothing from a training loop is trusted.

* :func:`certify`: save → load → (the method's leaf partition first, when it left one) → the ordinary
  verifier, :func:`nnmend.properties.check`, on the whole boxes with the time left.
* :func:`certify_partition`: re-prove a property through a partition of its regions into leaves:
  1. **Cover** (:func:`check_cover`): the leaves of each region must cover its box. Checked exactly by
     rebuilding a binary cut tree from the leaves alone: a node box is covered when one leaf contains
     it, or when some axis-aligned cut through its interior crosses no leaf and both halves are covered.
     Every leaf set that bisection produced passes; a missing leaf makes some node fail. (Overlapping
     leaves are harmless for soundness; a cover is all a proof needs.) Leaves are compared in float64
     with no tolerance; the cut halves share their face, so their union is exactly the node.
  2. **Proof of every leaf** on the loaded network: CROWN in float64, then alpha-CROWN with the branch
     and bound's settings on the leaves CROWN leaves open (proof margin of :class:`BabConfig`), batched;
     the leaves still open go together to one batched branch and bound, :func:`nnmend.bounds.bab.bab_boxes`.
  Only when both steps succeed is the status ``verified``; a confirmed counterexample is ``falsified``.

Example::

    cert = certify(repaired, read_property("prop_2.vnnlib"), timeout=300, partition=res.details.get("partition"))
    cert["status"]                                        # verified / falsified / unknown / timeout
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..bounds.backward import crown_lower, intermediate_bounds
from ..bounds.bab import BabConfig, bab_boxes, group_max
from ..bounds.graph import compile_network
from ..bounds.optimized import alpha_crown_lower
from ..errors import DataError, PropertyError
from ..properties import SafetyProperty, check

__all__ = ["certify", "certify_partition", "check_cover", "roundtrip"]


def roundtrip(network: nn.Module, what: str = "network") -> nn.Module:
    """Save ``network`` as a weights-only ``.pt`` checkpoint and load it back (the network users will get)."""
    from ..errors import NnmendError, RepairError
    from ..io import load_network, save_network

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "repaired.pt"
        try:
            save_network(network, path)
            return load_network(path).eval()
        except NnmendError as exc:
            raise RepairError(f"{what}: the repaired network does not save and reload ({exc})") from None


def certify(network: nn.Module, prop: SafetyProperty, timeout: float | None, partition: dict | None = None, *,
            config: BabConfig = BabConfig()) -> dict:
    """Save → load → certificate on the loaded network; nothing is trusted from the training loop.

    With a ``partition`` (the loop's final leaves) the loaded network is re-proved leaf by leaf
    (:func:`certify_partition`: exact cover check, float64 CROWN, branch and bound on open
    leaves) for at most half of ``timeout`` (None: no limit); if that does not settle it, :func:`nnmend.properties.check`
    on the whole boxes gets the remaining time. Without one, only the whole-box check runs. ``config``: the
    whole-box check's branch-and-bound settings.
    """
    start = time.monotonic()
    loaded = roundtrip(network)
    tried = {}
    if partition is not None and len(partition["lo"]):
        # at most half the time: the whole-box check below always gets the rest
        cert = certify_partition(loaded, prop, partition, None if timeout is None else timeout / 2)
        if cert["status"] in ("verified", "falsified"):
            return {**cert, "checked_on": "saved and reloaded network"}
        tried = {"partition_attempt": {k: v for k, v in cert.items() if k != "leaf"}}
    left = None if timeout is None else max(timeout - (time.monotonic() - start), 1.0)
    res = check(loaded, prop, timeout=left, config=config)
    return {"status": res.status, "seconds": round(time.monotonic() - start, 3), "method": "properties.check (whole boxes)",
            "checked_on": "saved and reloaded network", **tried}


def check_cover(box_lo: torch.Tensor, box_hi: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
                ) -> tuple[bool, list[float] | None]:
    """Whether the leaves ``[lo, hi]`` (L, d) cover the box ``[box_lo, box_hi]`` (d,) (exact, float64).

    Returns ``(covered, witness)``: ``witness`` is the flat ``lo + hi`` of a sub-box no leaf set covers
    (``None`` when covered). Rebuilds a cut tree: a node is covered by a leaf containing it, or split at
    a leaf face strictly inside it that no leaf crosses (the face nearest the node's midpoint per
    dimension); a node with no such cut is uncovered. Cost O(L · depth · d), vectorised per node.
    """
    blo, bhi = box_lo.detach().double().reshape(-1).numpy(), box_hi.detach().double().reshape(-1).numpy()
    L_lo, L_hi = lo.detach().double().reshape(len(lo), -1).numpy(), hi.detach().double().reshape(len(hi), -1).numpy()
    valid = (L_lo <= L_hi).all(1) & np.isfinite(L_lo).all(1) & np.isfinite(L_hi).all(1)
    stack = [(blo, bhi, np.nonzero(valid)[0])]
    while stack:
        nlo, nhi, idx = stack.pop()
        a, b = L_lo[idx], L_hi[idx]
        if ((a <= nlo) & (b >= nhi)).all(1).any():
            continue
        # keep leaves that meet the node's interior (others cannot help cover it)
        meet = ((a < nhi) & (b > nlo)).all(1)
        idx, a, b = idx[meet], a[meet], b[meet]
        cut = None
        mid = (nlo + nhi) / 2
        for j in np.argsort(-(nhi - nlo)):                   # widest dimension first: bisection's usual cut
            faces = np.concatenate([a[:, j], b[:, j]])
            faces = faces[(faces > nlo[j]) & (faces < nhi[j])]
            if not len(faces):
                continue
            c = faces[np.argmin(np.abs(faces - mid[j]))]
            if ((b[:, j] <= c) | (a[:, j] >= c)).all():
                cut = (j, c)
                break
        if cut is None or not len(idx):
            return False, np.concatenate([nlo, nhi]).tolist()
        j, c = cut
        left_hi, right_lo = nhi.copy(), nlo.copy()
        left_hi[j], right_lo[j] = c, c
        stack.append((nlo, left_hi, idx[b[:, j] <= c]))
        stack.append((right_lo, nhi, idx[a[:, j] >= c]))
    return True, None


def _spec(box) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    C = torch.cat([A for A, _ in box.unsafe]).double()
    d = torch.cat([b for _, b in box.unsafe]).double()
    groups = torch.cat([torch.full((A.shape[0],), i, dtype=torch.long) for i, (A, _) in enumerate(box.unsafe)])
    return C, d, groups, len(box.unsafe)


def _crown_proven(net64: nn.Module, lo: torch.Tensor, hi: torch.Tensor, spec: tuple, config: BabConfig,
                  deadline: float, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Which leaves (L, *in_shape) float64 CROWN proves (every disjunct has a row with lb - d > margin), and
    which of the rest alpha-CROWN (the branch and bound's own ``alpha_iters``/``alpha_lr``) proves, batched."""
    C, d, groups, k = spec
    nodes = compile_network(net64)
    by_crown, by_alpha = [], []
    for i in range(0, len(lo), chunk):
        blo, bhi = lo[i:i + chunk], hi[i:i + chunk]
        A = C.reshape(1, len(d), -1).expand(len(blo), -1, -1)
        with torch.no_grad():
            pre = intermediate_bounds(nodes, blo, bhi, "crown")
            lb, _ = crown_lower(nodes, blo, bhi, A, pre)
        ok = (group_max(lb - d, groups, k) > config.proof_margin).all(1)
        alpha = torch.zeros_like(ok)
        todo = torch.nonzero(~ok).squeeze(1)
        if len(todo) and config.alpha_iters:
            sub = {n: (p[0][todo], p[1][todo]) for n, p in pre.items()}
            lb2, _ = alpha_crown_lower(nodes, blo[todo], bhi[todo], A[todo], sub, iters=config.alpha_iters,
                                       lr=config.alpha_lr, deadline=deadline)
            alpha[todo] = (group_max(lb2.detach() - d, groups, k) > config.proof_margin).all(1)
        by_crown.append(ok)
        by_alpha.append(alpha)
    if not by_crown:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
    return torch.cat(by_crown), torch.cat(by_alpha)


def certify_partition(network: nn.Module, prop: SafetyProperty, partition: dict, timeout: float | None,
                      config: BabConfig = BabConfig()) -> dict:
    """Re-prove ``prop`` on ``network`` through the leaf partition (see the module docstring).

    Args:
        network: the network to certify (load it from the saved file; it is not modified).
        prop: the region property. partition: ``{"region": (L,) long, "lo": (L, d), "hi": (L, d)}``.
        timeout: seconds for the whole certificate (None: no limit). config: branch-and-bound settings for open leaves.
    Returns:
        dict ``status`` (verified / falsified / unknown / timeout), ``cover`` (True or the uncovered box),
        ``leaves``, ``proven_by_crown``, ``proven_by_alpha_crown``, ``proven_by_bab``, ``seconds``, ``method``.
    """
    start = time.monotonic()
    deadline = start + timeout if timeout is not None else math.inf
    try:
        region, lo, hi = partition["region"].long(), partition["lo"].double(), partition["hi"].double()
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"partition: expected tensors 'region', 'lo', 'hi' ({exc})") from None
    if lo.shape != hi.shape or lo.dim() != 2 or len(region) != len(lo):
        raise DataError(f"partition: 'lo' {tuple(lo.shape)}, 'hi' {tuple(hi.shape)} and 'region' {tuple(region.shape)} "
                        "must be (L, d), (L, d), (L,)")
    p = next(iter(network.parameters()))
    shape = tuple(getattr(network, "nnmend_input_shape", None) or (lo.shape[1],))
    with torch.no_grad():
        n_out = network(torch.zeros(1, *shape, dtype=p.dtype)).shape[1]
    boxes = prop.boxes(n_out)
    if len(region) and (region.min() < 0 or region.max() >= len(boxes)):
        raise PropertyError(f"partition: region indices must be in [0, {len(boxes)})")
    rec = {"method": "leaf partition (cover check + float64 CROWN / alpha-CROWN, branch and bound on open leaves)",
           "leaves": len(lo), "proven_by_crown": 0, "proven_by_alpha_crown": 0, "proven_by_bab": 0, "cover": True}
    for r, box in enumerate(boxes):
        if not box.unsafe:
            continue
        mine = torch.nonzero(region == r).squeeze(1)
        ok, witness = check_cover(box.lo, box.hi, lo[mine], hi[mine])
        if not ok:
            return {**rec, "status": "unknown", "cover": witness, "region": r,
                    "seconds": round(time.monotonic() - start, 3)}
    net64 = copy.deepcopy(network).double().eval()
    for r, box in enumerate(boxes):
        if not box.unsafe:
            continue
        if any(A.shape[0] == 0 for A, _ in box.unsafe):
            return {**rec, "status": "falsified", "region": r, "seconds": round(time.monotonic() - start, 3)}
        spec = _spec(box)
        mine = torch.nonzero(region == r).squeeze(1)
        llo, lhi = lo[mine].reshape(-1, *shape), hi[mine].reshape(-1, *shape)
        by_crown, by_alpha = _crown_proven(net64, llo, lhi, spec, config, deadline)
        proven = by_crown | by_alpha
        rec["proven_by_crown"] += int(by_crown.sum())
        rec["proven_by_alpha_crown"] += int(by_alpha.sum())
        rest = torch.nonzero(~proven).squeeze(1)
        if len(rest):             # one batched branch and bound over every open leaf of the region
            if time.monotonic() > deadline:
                return {**rec, "status": "timeout", "seconds": round(time.monotonic() - start, 3)}
            out = bab_boxes(net64, llo[rest], lhi[rest], *spec[:3], deadline=deadline, config=config)
            rec["bab"] = {k: v for k, v in out.stats.items() if k in ("rounds", "boxes_bounded", "proven_volume")}
            if out.status != "verified":
                res = {**rec, "status": out.status, "region": r, "seconds": round(time.monotonic() - start, 3)}
                if out.counterexample is not None:
                    res["counterexample"] = out.counterexample[0].flatten().tolist()
                return res
            rec["proven_by_bab"] += len(rest)
    return {**rec, "status": "verified", "seconds": round(time.monotonic() - start, 3)}
