"""One campaign job: a plain function of plain arguments returning a plain record.

``run_job(network, defect, method, options, seed, evaluation)`` loads the network, applies the defect
(a property to meet, an attack radius to withstand, a weight fault, a backdoor), builds the method's
problem and runs it through the repair harness (:func:`nnmend.repair.run`), which alone decides success,
the certificate and the metrics on the saved and reloaded network. The record keeps the harness's
verdict and metrics and adds the campaign's columns: ``success``, ``certificate`` (the proof's status, or
``none``), ``drawdown`` (clean accuracy lost, percentage points, where the defect has labelled test data;
for a fault measured from the clean network, not the damaged one; for a property the fidelity drawdown
FDD in %), ``seconds`` (the repair) and ``parameters`` / ``parameters_added`` (size).

:func:`execute` wraps a job for the executors: it never raises; a failure becomes a ``failed`` record
with its message, so one bad cell never stops a campaign.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..errors import NnmendError, describe
from . import catalog
from .grid import job_key

STATUS_OK, STATUS_FAILED = "ok", "failed"


@lru_cache(maxsize=2)
def _mnist(split: str):
    from ..data import load_dataset

    return load_dataset("mnist", split)


def load(network: str) -> nn.Module:
    """A grid's network name → the network (catalog names or a file)."""
    m = catalog._ACASXU.match(network)
    if m:
        from ..acasxu import acasxu

        return acasxu(int(m.group(1)), int(m.group(2)))
    if any(network.lower().endswith(s) for s in catalog.NETWORK_SUFFIXES):
        from ..io import load_network

        return load_network(network)
    from ..nets import pretrained

    return pretrained(network)


@dataclass
class Scenario:
    """A defect applied to a network: ``network`` is what gets repaired, ``baseline`` what drawdown is
    measured against (the clean network for a fault), ``problem(method)`` the method's problem."""

    kind: str
    network: nn.Module
    baseline: nn.Module
    data: dict[str, Any]


def scenario(net: nn.Module, defect: dict, seed: int, evaluation: dict) -> Scenario:
    kind = defect["kind"]
    if kind == "property":
        from ..acasxu import acasxu_property_path
        from ..properties import read_property

        ref = defect["property"]
        prop = read_property(acasxu_property_path(ref) if isinstance(ref, int) else ref)
        return Scenario(kind, net, net, {"prop": prop})
    if kind == "fault":
        from ..faults import damage

        hurt, fault = damage(net, defect["layer"], defect.get("fault", "zero"), fraction=float(defect.get("fraction", 1.0)),
                             pattern=defect.get("pattern"), sigma=float(defect.get("sigma", 0.1)), seed=seed)
        return Scenario(kind, hurt, net, {"layer": defect["layer"], "fault": fault.to_dict()})
    if kind == "attack":
        from ..repair.repair_sets import build_repair_set

        rs = build_repair_set(net, _mnist("train"), n=defect.get("n", 10), radius=float(defect["radius"]),
                              per_origin=defect.get("per_origin", 10), steps=defect.get("steps", 200),
                              start=defect.get("start", 40000), seed=seed)
        return Scenario(kind, net, net, {"set": rs, "x": rs.repair_x, "y": rs.labels})
    if kind == "poisoning":
        from ..data import Trigger, triggered_test

        meta = getattr(net, "nnmend_meta", {}) or {}
        if "trigger" not in meta:
            raise NnmendError("poisoning: the network records no backdoor trigger (nnmend_meta['trigger'])")
        trig, target, train = Trigger(**meta["trigger"]), int(meta.get("target", 0)), _mnist("train")
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        rep = perm[train.y[perm] != target][: defect.get("n", 100)]
        test = _mnist("test")
        return Scenario(kind, net, net, {"x": trig.apply(train.x[rep]), "y": train.y[rep], "target": target,
                                         "triggered": triggered_test(test, target, trig)})
    raise NnmendError(f"unknown defect kind {kind!r}")


def problem_for(method: str, sc: Scenario, options: dict) -> Any:
    """The method's problem object for this scenario (the types the harness registered)."""
    d = sc.data
    if method == "guard":
        from ..repair.guard import GuardProblem

        return GuardProblem(d["prop"])
    if method == "patchpro":
        return d["prop"] if sc.kind == "property" else d["set"]
    if method == "prorepair":
        from ..repair.prorepair import PointProblem, RegionProblem

        if sc.kind == "property":
            return RegionProblem(d["prop"])
        train = _mnist("train")
        return PointProblem(d["x"], d["y"], train.x[:1000], train.y[:1000])
    if method == "shnn":
        from ..diagnose import diagnose
        from ..repair.adapters import StructuralProblem

        layer = options.get("layer", "auto")
        if layer == "auto":
            layer = diagnose(sc.baseline, sc.network, _mnist("test").x[:100]).localized
        return StructuralProblem(layer, _mnist("train"), reference=sc.baseline)
    raise NnmendError(f"no problem for method {method!r}")


def harness_options(sc: Scenario, evaluation: dict, seed: int) -> dict:
    """The harness's measurement options for this job: the grid's, seeded by the job, with MNIST test
    data for accuracy where the defect has labels."""
    opts = {k: v for k, v in evaluation.items() if k in catalog.harness_options()}
    if sc.kind != "property":
        n, test = catalog.option(evaluation, "test_n"), _mnist("test")
        opts["test"] = (test.x[:n], test.y[:n])
    return {**opts, "seed": seed}


def record(sc: Scenario, result, evaluation: dict) -> dict:
    """The campaign's columns from the harness's result (the harness alone decides success)."""
    m = result.metrics
    labelled = m.get("drawdown") is not None
    rec: dict[str, Any] = {
        "success": result.success, "verdict": result.verdict, "target": result.target,
        "certificate": (result.certificate or {}).get("status", "none") if result.certificate is not None else "none",
        "drawdown": m.get("drawdown") if labelled else m.get("fdd"),
        "drawdown_kind": "accuracy (pp)" if labelled else "fidelity (%)",
        "seconds": round(float(result.seconds), 3), "parameters_added": m.get("parameters_added"),
        "parameters": sum(p.numel() for p in result.network.parameters()), "metrics": m}
    if sc.kind == "fault":                     # drawdown from the clean network, not from the damaged one
        from ..metrics import drawdown

        n, test = catalog.option(evaluation, "test_n"), _mnist("test")
        rec["drawdown"] = drawdown(sc.baseline, result.network, test.x[:n], test.y[:n])
        rec["drawdown_kind"] = "accuracy vs clean (pp)"
    return rec


def run_job(network: str, defect: dict, method: str, options: dict, seed: int, evaluation: dict) -> dict:
    """Run one cell of a grid and return its record (raises on failure; :func:`execute` catches)."""
    from ..repair import run

    torch.manual_seed(seed)
    sc = scenario(load(network), defect, seed, evaluation)
    config = catalog.make_config(method, options, seed, sc.kind)
    result = run(method, sc.network, problem_for(method, sc, options), config, **harness_options(sc, evaluation, seed))
    return record(sc, result, evaluation)


def noop_job(**job) -> dict:
    """The empty job (returns at once): what a campaign costs per job beyond the work itself."""
    return {"success": True, "certificate": "none", "drawdown": 0.0, "seconds": 0.0, "parameters_added": 0}


def execute(job: dict, fn=run_job) -> dict:
    """Run ``fn(**job)`` in a job's conditions (seeded, ``threads`` torch threads) and never raise:
    the record carries the job's key, status, error message, wall seconds and the job's arguments."""
    threads = torch.get_num_threads()
    torch.set_num_threads(catalog.option(job.get("evaluation", {}), "threads"))
    t0 = time.perf_counter()
    try:
        rec, status, error = fn(**job), STATUS_OK, None
    except Exception as exc:  # noqa: BLE001 - a failed job is a record, not the end of the campaign
        rec, status = {}, STATUS_FAILED
        error = describe(exc, 500) if isinstance(exc, NnmendError) else f"{describe(exc, 400)} | " + \
            " / ".join(traceback.format_exc(limit=2).strip().splitlines()[-3:])
    finally:
        torch.set_num_threads(threads)
    for k, v in list(rec.items()):
        if isinstance(v, float) and math.isnan(v):
            rec[k] = None
    return {"key": job_key(job), **job, **rec, "status": status, "error": error,
            "wall_seconds": round(time.perf_counter() - t0, 3)}


def failed(job: dict, message: str) -> dict:
    """The record of a job whose worker died (killed, out of memory) before it could return one."""
    return {"key": job_key(job), **job, "status": STATUS_FAILED, "error": message, "wall_seconds": None}


def execute_noop(job: dict) -> dict:
    """:func:`execute` of :func:`noop_job` (module level, so pools and Ray can ship it)."""
    return execute(job, noop_job)
