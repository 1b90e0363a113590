"""Certificates anyone can check: Marabou re-proves what the harness claims, on the piecewise-linear export.

:func:`external_proof` exports the (saved and reloaded) repaired network with
:mod:`nnmend.repair.export_pwl`, checks the file against the network in onnxruntime, and asks Marabou
(:func:`nnmend.marabou.solve`, in a child process, with a time budget) about every claimed region or ball on
its own; Marabou must first read the file as onnxruntime computes it (a probe at three points of the box).
Nothing of nnmend's bounds is used. The harness (:func:`nnmend.repair.run`, ``external="marabou"``) records the
answer in ``certificate["external"]``; a counterexample there is a DISAGREEMENT that fails the run.

Example::

    rec = external_proof(res.network, GuardProblem(prop), timeout=120)
    rec["status"], [c["result"] for c in rec["claims"]]      # "unsat", ["unsat"]
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ..properties import SafetyProperty

__all__ = ["external_proof"]


def _claim_boxes(network: nn.Module, problem) -> tuple[tuple[int, ...], list[tuple[str, int, object]]]:
    """``(per-sample input shape, [(kind, index, Box)])``: one box per claimed region (``SafetyProperty``, or a
    problem's ``prop``) or ball (``LocalRobustness``, a list of them, a ``RepairSet``)."""
    from ..properties import LocalRobustness

    prop = problem if isinstance(problem, SafetyProperty) else getattr(problem, "prop", None)
    if isinstance(prop, SafetyProperty):
        items, kind, probe = prop, "region", torch.as_tensor(prop.regions[0].lo).reshape(-1)
    else:
        items = problem.properties() if hasattr(problem, "properties") else \
            [problem] if isinstance(problem, LocalRobustness) else list(problem)
        kind, probe = "ball", items[0].x
    shape = tuple(getattr(network, "nnmend_input_shape", None) or
                  (getattr(network, "nnmend_meta", None) or {}).get("input_shape") or probe.shape)
    p = next(iter(network.parameters()), torch.zeros(()))
    with torch.no_grad():
        n_out = network.eval()(torch.zeros(1, *shape, dtype=p.dtype)).shape[1]
    boxes = items.boxes(n_out) if kind == "region" else [ball.boxes(n_out)[0] for ball in items]
    return shape, [(kind, i, box) for i, box in enumerate(boxes)]


def _probe(path: Path, box, shape, n: int = 2) -> list:
    """``[(x, y)]`` flat: the box's centre and ``n`` fixed random points of it, with onnxruntime's outputs of the file."""
    import onnxruntime as ort

    lo, hi = box.lo.double().flatten(), box.hi.double().flatten()
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([((lo + hi) / 2)[None], lo + torch.rand(n, lo.numel(), generator=gen, dtype=torch.float64) * (hi - lo)])
    x = x.float().double()                               # the points onnxruntime (float32) and Marabou both see
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    y = sess.run(None, {name: x.float().reshape(-1, *shape).numpy()})[0].reshape(len(x), -1)
    return [(xi.tolist(), yi.astype(float).tolist()) for xi, yi in zip(x, y)]


def _violates(net64: nn.Module, x: torch.Tensor, box, tol: float = 1e-6) -> bool:
    with torch.no_grad():
        y = net64(x.double()).reshape(-1)
    return any(bool((A @ y <= b + tol).all()) for A, b in box.unsafe)


def _relus(network: nn.Module, shape) -> int:
    """ReLU units one input goes through (Marabou's case splits)."""
    count = [0]
    hooks = [m.register_forward_hook(lambda _m, _i, out: count.__setitem__(0, count[0] + out[0].numel()))
             for m in network.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            network(torch.zeros(1, *shape))
    finally:
        for h in hooks:
            h.remove()
    return count[0]


def external_proof(network: nn.Module, problem, timeout: float | None = 60.0, *, isolate: bool = True,
                   max_relus: int = 20_000) -> dict:
    """Re-prove every claimed property of ``problem`` with Marabou on the piecewise-linear ONNX export of
    ``network`` (:mod:`nnmend.repair.export_pwl`); nothing of nnmend's bounds is used.

    Each region (or ball) gets one Marabou call on the exported file (``timeout`` seconds in all, shared),
    with the region's box and unsafe set written as VNN-LIB. Per claim: ``unsat`` (proved), ``sat`` (a
    DISAGREEMENT with the sound-bounds certificate; ``reproduces`` says whether the counterexample violates
    the property on ``network`` itself in float64), ``unknown`` (timeout, Marabou error) or
    ``not-expressible`` (the construction has no exact continuous piecewise-linear form there; no claim).
    An export with more than ``max_relus`` ReLU units is not handed to Marabou (``unknown``, saying so).

    Returns ``{"solver", "status", "claims": [...], "counts", "export": {exact, note, ops, equivalence}, "seconds"}``;
    ``status``: ``sat`` if any claim is sat, else ``unsat`` if all are, else ``not-expressible`` if all are,
    else ``unknown``.
    """
    from .. import marabou
    from ..io.vnnlib import Region, VnnlibSpec
    from .export_pwl import NotExpressible, equivalence, exact_on, onnx_ops, save_pwl_onnx, to_pwl

    start = time.monotonic()
    shape, boxes = _claim_boxes(network, problem)
    rec: dict = {"solver": "marabou", "claims": []}

    def done(status: str, **extra) -> dict:
        counts: dict = {}
        for c in rec["claims"]:
            counts[c["result"]] = counts.get(c["result"], 0) + 1
        return {**rec, **extra, "status": status, "counts": counts, "seconds": round(time.monotonic() - start, 3)}

    def every(result: str, why: str) -> dict:
        rec["claims"] = [{kind: i, "result": result, "detail": why} for kind, i, _ in boxes]
        return done(result, detail=why)

    if not marabou.available():
        return every("unknown", "maraboupy is not installed: pip install 'nnmend[verify]'")
    try:
        export = to_pwl(network)
    except NotExpressible as exc:
        return every("not-expressible", str(exc))
    relus = _relus(export.network, shape)
    if relus > max_relus:
        return every("unknown", f"the piecewise-linear export has {relus:,} ReLU units, more than Marabou is given "
                                f"(max_relus={max_relus:,}); nothing was tried")
    with tempfile.TemporaryDirectory(prefix="nnmend-pwl-") as tmp:
        path = Path(tmp) / "repaired.pwl.onnx"
        try:
            save_pwl_onnx(export, path, shape)
        except NotExpressible as exc:
            return every("not-expressible", str(exc))
        eq = equivalence(network, export, path, shape, n=64, boxes=[(b.lo, b.hi) for _, _, b in boxes])
        rec["export"] = {"exact": export.exact, "note": export.note, "ops": sorted(onnx_ops(path)), "equivalence": eq}
        if eq["max_abs_diff"] is not None and not eq["max_abs_diff"] <= 1e-4 * max(1.0, eq["scale"]):
            return every("not-expressible", f"the export differs from the network by {eq['max_abs_diff']:.3g} in "
                                            "onnxruntime where it should be exact")
        net64 = copy.deepcopy(network).double().eval()
        for n_left, (kind, i, box) in zip(range(len(boxes), 0, -1), boxes):
            entry: dict = {kind: i}
            if not exact_on(export, box.lo, box.hi):
                why = next((w for a, b, w in export.inexact if bool((a <= box.hi.flatten()).all() and
                                                                    (box.lo.flatten() <= b).all())), export.note)
                rec["claims"].append({**entry, "result": "not-expressible", "detail": why})
                continue
            if not box.unsafe:
                rec["claims"].append({**entry, "result": "unsat", "detail": "no unsafe output set: nothing to prove"})
                continue
            left = None if timeout is None else timeout - (time.monotonic() - start)
            if left is not None and left < 1.0:
                rec["claims"].append({**entry, "result": "unknown", "detail": "external proof budget spent"})
                continue
            spec = VnnlibSpec([Region(box.lo.double().flatten(), box.hi.double().flatten(), list(box.unsafe),
                                      list(box.strict))], box.lo.numel(), box.unsafe[0][0].shape[1], f"{kind} {i}")
            res = marabou.solve(path, spec, None if left is None else left / n_left, isolate=isolate,
                                probe=_probe(path, box, shape))
            entry.update(result=res.status, seconds=round(res.seconds, 3), detail=res.detail)
            if res.status == "sat" and res.counterexample is not None:
                x = torch.tensor(res.counterexample, dtype=torch.float64).reshape(1, *shape)
                entry.update(counterexample=list(res.counterexample), reproduces=_violates(net64, x, box))
            rec["claims"].append(entry)
    results = [c["result"] for c in rec["claims"]]
    status = ("sat" if "sat" in results else "unsat" if results and all(r == "unsat" for r in results) else
              "not-expressible" if results and all(r == "not-expressible" for r in results) else "unknown")
    return done(status)
