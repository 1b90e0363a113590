"""Certificates of a PatchPro repair: the float64 bound check of every box, and the independent re-check
of every region on the network *as saved* (save → load → :func:`nnmend.properties.check`).

On region ``r`` the loaded network equals ``head ∘ ext + patch_{routed} ∘ ext`` (the indicator is an
exact box test and routes to the first region containing the input), so each region's property is
re-checked by the project's verifier (CROWN / alpha-CROWN branch and bound, float64) on
:meth:`PatchProNetwork.restricted` built from the loaded weights, over the region's *input* box —
independent of the training boxes and the training code. In feature space the sound feature box of the
loaded extractor over the input region is recomputed and the verifier decides head + patch on it. Overlapping regions are
re-checked on their intersection with the patch the indicator routes there.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ...bounds import crown_bounds
from ...bounds.bab import BabConfig, group_max
from ...io import load_checkpoint, save_checkpoint
from ...properties import Box, LocalRobustness, SafetyProperty, check
from ..certify import check_cover
from .distance import Items, lower_bounds
from .feature import feature_boxes
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


class _Verified:
    status = "verified"


class _Timeout:
    status = "timeout"


def _leaves_open(net, lo: torch.Tensor, hi: torch.Tensor, unsafe: list, shape, chunk: int = 2048) -> torch.Tensor:
    """Which leaves (k, D) float64 CROWN bounds of ``net`` do *not* prove safe: (k,) bool."""
    import copy

    net64 = copy.deepcopy(net).double().eval()
    C = torch.cat([A for A, _ in unsafe]).double()
    d = torch.cat([b for _, b in unsafe]).double()
    groups = torch.cat([torch.full((A.shape[0],), j) for j, (A, _) in enumerate(unsafe)])
    out = []
    with torch.no_grad():
        for i in range(0, len(lo), chunk):
            lb, _ = crown_bounds(net64, lo[i:i + chunk].reshape(-1, *shape), hi[i:i + chunk].reshape(-1, *shape), C)
            out.append(~(group_max(lb - d, groups, len(unsafe)) > 0).all(1))
    return torch.cat(out)


def boxes_of(prop, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    b = prop.boxes(n_out)[0]
    return b.lo.flatten(), b.hi.flatten()


def recheck_saved(network: PatchProNetwork, regions, *, timeout: float = 60.0, path: str | Path | None = None,
                  bab: BabConfig = BabConfig(samples=0), leaves: dict | None = None,
                  whole_timeout: float = 0.0) -> tuple[PatchProNetwork, dict]:
    """Save ``network``, load it back, and re-check every region's property on the loaded network.

    Args:
        network: the repaired network. regions: the :class:`~.spec.Regions` it was repaired for.
        timeout: seconds per region. path: where to save (default a temporary file).
        bab: branch-and-bound settings of the verifier (no random sampling by default: the question is
            whether the proof goes through, and a counterexample would still be found by its PGD).
    Returns:
        ``(loaded network, record)`` with per-region statuses, counts and seconds.
        leaves: ``{region: (lo (k, *s), hi (k, *s))}`` the repair's final boxes of each region (input
            space). The region is then re-checked on these leaves (after checking exactly that they cover it):
            float64 CROWN of the loaded network on all leaves at once, the verifier on any it leaves open;
            ``whole_timeout > 0`` first gives the verifier that long on the whole region with its own
            splitting. ``record["via_leaves"]`` lists the regions re-checked on leaves.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(path) if path is not None else Path(tmp) / "patchpro.pt"
        save_checkpoint(network, file)
        loaded = load_checkpoint(file).model.eval()       # batch norms: running statistics, as bounds need
    statuses, via_leaves = [], []
    shape = regions.in_shape
    feature = not isinstance(loaded.extractor, torch.nn.Identity)
    if feature:
        # feature space: recompute sound feature boxes of the *loaded* extractor over each input region and
        # let the verifier decide head + patch over them (a whole-network input split in 784 dimensions
        # would not terminate; this chain is just as sound)
        boxes = [p.boxes(regions.n_out)[0] for p in regions.props]
        flo, fhi = feature_boxes(loaded.extractor, torch.stack([b.lo for b in boxes]).reshape(-1, *shape).float(),
                                 torch.stack([b.hi for b in boxes]).reshape(-1, *shape).float(), mode="bounds")
    for r in range(loaded.n_regions):
        net = loaded.restricted(int(loaded.region_patch[r]))
        prop = regions.props[r]
        if feature:
            body = net.body if isinstance(net, torch.nn.Sequential) else net
            fprop = SafetyProperty([Box(flo[r].flatten().double(), fhi[r].flatten().double(), boxes[r].unsafe)], "feature box")
            res = check(body, fprop, timeout, config=bab)
        elif isinstance(prop, LocalRobustness):
            res = check(net, prop, timeout, config=bab)
        else:
            res = _Timeout() if leaves is not None and r in leaves and whole_timeout <= 0 else \
                check(net, _with_shape(prop, net, shape), timeout if leaves is None else min(timeout, whole_timeout), config=bab)
        if res.status == "timeout" and leaves is not None and r in leaves and not feature:
            # the verifier's own splitting did not finish: give it the repair's partition of the region instead.
            # It re-derives every bound on each leaf from the loaded weights; the leaves must cover the region.
            rlo, rhi = boxes_of(prop, regions.n_out)
            # the repair widened each region by box_tolerance: clip the leaves back to the property's box
            llo = torch.max(leaves[r][0].double().flatten(1), rlo)
            lhi = torch.min(leaves[r][1].double().flatten(1), rhi)
            keep = (llo <= lhi).all(1)
            llo, lhi = llo[keep], lhi[keep]
            if check_cover(rlo, rhi, llo, lhi)[0]:      # the exact cover check, shared with every method
                unsafe = prop.boxes(regions.n_out)[0].unsafe
                open_ = _leaves_open(net, llo, lhi, unsafe, shape)
                # sound float64 CROWN of the loaded network on all leaves at once; the verifier's branch
                # and bound decides the few it leaves open
                tiled = SafetyProperty([Box(a, b, unsafe) for a, b in zip(llo[open_], lhi[open_])], "leaves")
                res = check(net, tiled, timeout, config=bab) if bool(open_.any()) else _Verified()
                via_leaves.append(r)
        statuses.append(res.status)
    over = overlaps(loaded.region_lo.double(), loaded.region_hi.double())
    over_status = []
    for q, p in over.tolist():
        lo = torch.max(loaded.region_lo[p], loaded.region_lo[q]).double()
        hi = torch.min(loaded.region_hi[p], loaded.region_hi[q]).double()
        net = loaded.restricted(int(loaded.region_patch[q]))        # the indicator routes p ∩ q to region q
        prop = _region_property(regions.props[p], lo, hi, regions.n_out)
        if feature:
            a, b = feature_boxes(loaded.extractor, lo.float().reshape(1, *shape), hi.float().reshape(1, *shape))
            prop = SafetyProperty([Box(a.flatten().double(), b.flatten().double(), prop.regions[0].unsafe)], "overlap features")
            net = net.body if isinstance(net, torch.nn.Sequential) else net
        else:
            net.nnmend_input_shape = shape
        over_status.append(check(net, prop, timeout, config=bab).status)
    record = {"regions": len(statuses), "verified": sum(s == "verified" for s in statuses),
              "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
              "failed_regions": [i for i, s in enumerate(statuses) if s != "verified"][:50],
              "via_leaves": via_leaves, "overlaps": len(over), "overlaps_verified": sum(s == "verified" for s in over_status),
              "seconds": round(time.perf_counter() - t0, 3)}
    record["all_verified"] = record["verified"] == record["regions"] and record["overlaps_verified"] == record["overlaps"]
    return loaded, record


def _with_shape(prop: SafetyProperty, net, shape) -> SafetyProperty:
    net.nnmend_input_shape = tuple(shape)
    return prop


__all__ = ["certify_items", "overlaps", "recheck_saved"]


def certify_loaded(loaded: torch.nn.Module, problem, raw, timeout: float | None) -> dict | None:
    """The harness's certifier for PatchPro (:mod:`nnmend.repair.registry`): re-prove every region of ``problem``
    on the *loaded* network (each region through the patch its indicator routes there, overlaps included;
    feature boxes recomputed by sound bounds from the loaded extractor). ``None`` when ``loaded`` is not a
    :class:`PatchProNetwork` (nothing was patched): the ordinary verifier then reads it whole."""
    from .spec import build_regions

    if not isinstance(loaded, PatchProNetwork):
        return None
    regions = build_regions(loaded, problem)
    part = raw.details.get("partition") if raw is not None else None
    leaves = None
    if part:
        shape = regions.in_shape
        leaves = {int(r): (part["lo"][part["region"] == r].reshape(-1, *shape),
                           part["hi"][part["region"] == r].reshape(-1, *shape)) for r in part["region"].unique()}
    _, rec = recheck_saved(loaded, regions, timeout=60.0 if timeout is None else timeout, leaves=leaves)
    bad = rec["statuses"].get("falsified", 0)
    status = "verified" if rec["all_verified"] else "falsified" if bad else "unknown"
    return {**rec, "status": status, "method": "PatchPro region re-check on the loaded network"}
