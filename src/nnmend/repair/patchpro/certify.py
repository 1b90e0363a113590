"""Certificates of a PatchPro repair: the float64 bound check of every box, and the independent re-check
of every region on the network *as saved* (save → load → :func:`nnmend.properties.check`).

On region ``r`` the loaded network equals ``head ∘ ext + patch_{routed} ∘ ext`` (the indicator is an
exact box test and routes to the first region containing the input), so each region's property is
re-checked by the project's verifier (CROWN / alpha-CROWN branch and bound, float64) on
:meth:`PatchProNetwork.restricted` built from the loaded weights, over the region's *input* box —
independent of the training boxes, the feature boxes and the training code. Overlapping regions are
re-checked on their intersection with the patch the indicator routes there.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ...bounds.bab import BabConfig, group_max
from ...io import load_checkpoint, save_checkpoint
from ...properties import Box, LocalRobustness, SafetyProperty, check
from .distance import Items, lower_bounds
from .modules import PatchProNetwork, StackedPatches


def certify_items(patches: StackedPatches | None, items: Items, groups: torch.Tensor, n_groups: int, *,
                  intermediate: str = "crown", chunk: int = 1024) -> torch.Tensor:
    """Which boxes the float64 bounds prove (every group has a row with lower bound > 0): (B,) bool."""
    p64 = None
    if patches is not None:
        import copy

        p64 = copy.deepcopy(patches).double()
    out = []
    with torch.no_grad():
        for i in range(0, len(items), chunk):
            it = items.take(torch.arange(i, min(i + chunk, len(items))))
            it = Items(*(t.double() if t.is_floating_point() else t for t in
                         (it.lo, it.hi, it.C, it.d, it.patch, it.region, it.A, it.c)))
            lb, _ = lower_bounds(p64, it, intermediate=intermediate)
            out.append((group_max(lb, groups, n_groups) > 0).all(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def overlaps(lo: torch.Tensor, hi: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Pairs ``(q, p)`` with ``q < p`` whose boxes intersect: (K, 2) long."""
    lf, hf = lo.flatten(1), hi.flatten(1)
    pairs = []
    for i in range(0, len(lf), chunk):
        inter = (torch.max(lf[i:i + chunk, None], lf[None]) <= torch.min(hf[i:i + chunk, None], hf[None])).all(-1)
        q, p = torch.nonzero(inter, as_tuple=True)
        q = q + i
        keep = q < p
        pairs.append(torch.stack([q[keep], p[keep]], 1))
    return torch.cat(pairs) if pairs else torch.zeros((0, 2), dtype=torch.long)


def _region_property(prop, lo: torch.Tensor, hi: torch.Tensor, n_out: int):
    """``prop`` restricted to the box ``[lo, hi]`` (same unsafe set)."""
    box = prop.boxes(n_out)[0]
    return SafetyProperty([Box(lo.flatten(), hi.flatten(), box.unsafe)], "overlap")


def recheck_saved(network: PatchProNetwork, regions, *, timeout: float = 60.0, path: str | Path | None = None,
                  bab: BabConfig = BabConfig(samples=0)) -> tuple[PatchProNetwork, dict]:
    """Save ``network``, load it back, and re-check every region's property on the loaded network.

    Args:
        network: the repaired network. regions: the :class:`~.spec.Regions` it was repaired for.
        timeout: seconds per region. path: where to save (default a temporary file).
        bab: branch-and-bound settings of the verifier (no random sampling by default: the question is
            whether the proof goes through, and a counterexample would still be found by its PGD).
    Returns:
        ``(loaded network, record)`` with per-region statuses, counts and seconds.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(path) if path is not None else Path(tmp) / "patchpro.pt"
        save_checkpoint(network, file)
        loaded = load_checkpoint(file).model
    statuses = []
    shape = regions.in_shape
    for r in range(loaded.n_regions):
        net = loaded.restricted(int(loaded.region_patch[r]))
        prop = regions.props[r]
        if isinstance(prop, LocalRobustness):
            res = check(net, prop, timeout, config=bab)
        else:
            res = check(net, _with_shape(prop, net, shape), timeout, config=bab)
        statuses.append(res.status)
    over = overlaps(loaded.region_lo.double(), loaded.region_hi.double())
    over_status = []
    for q, p in over.tolist():
        lo = torch.max(loaded.region_lo[p], loaded.region_lo[q]).double()
        hi = torch.min(loaded.region_hi[p], loaded.region_hi[q]).double()
        net = loaded.restricted(int(loaded.region_patch[q]))        # the indicator routes p ∩ q to region q
        net.nnmend_input_shape = shape
        over_status.append(check(net, _region_property(regions.props[p], lo, hi, regions.n_out), timeout, config=bab).status)
    record = {"regions": len(statuses), "verified": sum(s == "verified" for s in statuses),
              "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
              "failed_regions": [i for i, s in enumerate(statuses) if s != "verified"][:50],
              "overlaps": len(over), "overlaps_verified": sum(s == "verified" for s in over_status),
              "seconds": round(time.perf_counter() - t0, 3)}
    record["all_verified"] = record["verified"] == record["regions"] and record["overlaps_verified"] == record["overlaps"]
    return loaded, record


def _with_shape(prop: SafetyProperty, net, shape) -> SafetyProperty:
    net.nnmend_input_shape = tuple(shape)
    return prop


__all__ = ["certify_items", "overlaps", "recheck_saved"]
