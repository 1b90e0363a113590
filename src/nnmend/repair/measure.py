"""What the harness measures for each kind of target, before and after a repair, and its verdict.

One protocol per target (:data:`nnmend.repair.registry.TARGETS`); every figure comes from
:mod:`nnmend.metrics` and is named and scaled as :data:`nnmend.metrics.METRICS` says.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import metrics as M
from ..data import Dataset
from ..errors import RepairError
from ..properties import LocalRobustness, SafetyProperty, check
from .registry import Method
from .repair_sets import RepairSet


def _prop(problem: Any) -> SafetyProperty:
    prop = problem if isinstance(problem, SafetyProperty) else getattr(problem, "prop", None)
    if not isinstance(prop, SafetyProperty):
        raise RepairError(f"{type(problem).__name__}: a property target needs a SafetyProperty")
    return prop


def _balls(problem: Any) -> list[LocalRobustness]:
    if isinstance(problem, RepairSet):
        return problem.properties()
    if isinstance(problem, LocalRobustness):
        return [problem]
    balls = list(problem)
    if not balls or not all(isinstance(p, LocalRobustness) for p in balls):
        raise RepairError(f"a robustness target needs LocalRobustness properties, got {type(problem).__name__}")
    return balls


def _points(problem: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for xs, ys in (("x", "y"), ("inputs", "labels"), ("repair_x", "labels")):
        if hasattr(problem, xs) and hasattr(problem, ys):
            return getattr(problem, xs), getattr(problem, ys).long()
    raise RepairError(f"{type(problem).__name__}: a points target needs inputs and labels")


def _clean(problem: Any, test: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Labelled clean data: the run's ``test``, else what the problem carries (None: no labels)."""
    if test is not None:
        if isinstance(test, Dataset):
            return test.x, test.y
        if isinstance(test, (tuple, list)) and len(test) == 2:
            return test[0], torch.as_tensor(test[1]).long()
        raise RepairError(f"test: expected a Dataset or (x, y), got {type(test).__name__}")
    for xs, ys in (("clean_x", "clean_y"), ("clean_inputs", "clean_labels")):
        if getattr(problem, xs, None) is not None:
            return getattr(problem, xs), getattr(problem, ys).long()
    data = getattr(problem, "data", None)
    if isinstance(data, Dataset):
        return data.x, data.y
    return None


def _eps(kind: str, problem: Any, config: Any) -> float:
    if kind == "adversarial":
        return float(config.attack.eps)
    return float(max(p.eps for p in _balls(problem)))


def _robust(network: nn.Module, x, y, eps: float, opts, original: nn.Module | None) -> dict:
    _, rec = M.strongest_attack(network, x, y, eps, original=original, steps=opts.attack_steps,
                                square_queries=opts.square_queries, seed=opts.seed)
    return rec


def _dgsr(network: nn.Module, original: nn.Module, clean, eps: float, opts, source: nn.Module | None) -> dict:
    """DGSR's protocol (paper 002, Table III): the first ``opts.attack_n`` clean inputs the *original* gets right,
    attacked with the strongest attack (transfer from ``source`` when given)."""
    x, y = clean[0][:opts.attack_n], clean[1][:opts.attack_n]
    keep = M.decisions(original, x) == y
    return _robust(network, x[keep], y[keep], eps, opts, source)


def before(kind: str, network: nn.Module, problem: Any, config: Any, opts) -> dict:
    """The original network's figures: the target and (when there are labels) clean accuracy."""
    out: dict[str, Any] = {}
    clean = _clean(problem, opts.test)
    if clean is not None:
        out["accuracy"] = M.clean_accuracy(network, *clean)
    if kind == "property":
        out["status"] = check(network, _prop(problem), timeout=opts.precheck_timeout).status
    elif kind == "robustness":
        balls = _balls(problem)
        if opts.attack:
            x, y = torch.stack([p.x for p in balls]), torch.tensor([p.label for p in balls])
            out["dsr"] = _robust(network, x, y, _eps(kind, problem, config), opts, None)["robust_accuracy"]
        if isinstance(problem, RepairSet):
            out["rsr"] = M.repair_success_rate(network, problem.repair_x, problem.labels)
        if opts.attack and clean is not None:
            out["dgsr"] = _dgsr(network, network, clean, _eps(kind, problem, config), opts, None)["robust_accuracy"]
    elif kind == "points":
        out["rsr"] = M.repair_success_rate(network, *_points(problem))
    elif kind == "adversarial":
        if clean is None:
            raise RepairError("an adversarial target needs labelled data (the problem's data or test=)")
        x, y = clean[0][:opts.attack_n], clean[1][:opts.attack_n]
        out["robust_accuracy"] = _robust(network, x, y, _eps(kind, problem, config), opts, None)["robust_accuracy"]
    return out


def timeout(opts, config: Any) -> float | None:
    """The proof budget: ``opts.certify_timeout``, or with ``"config"`` the method config's ``certify_timeout``
    (PatchPro: ``verify_timeout``, per region), else 60 s."""
    if opts.certify_timeout != "config":
        return opts.certify_timeout
    for name in ("certify_timeout", "verify_timeout"):
        if hasattr(config, name):
            return getattr(config, name)
    return 60.0


def _certify_balls(spec: Method, loaded: nn.Module, problem: Any, raw, timeout: float | None) -> dict:
    if spec.certifier is not None:
        cert = spec.certifier(loaded, problem, raw, timeout)
        if cert is not None:
            return cert
    balls = _balls(problem)
    each = None if timeout is None else timeout / len(balls)
    statuses = [check(loaded, p, timeout=each).status for p in balls]
    n_ok = statuses.count("verified")
    status = "verified" if n_ok == len(balls) else "falsified" if "falsified" in statuses else "unknown"
    return {"status": status, "regions": len(balls), "verified": n_ok, "method": "properties.check per ball",
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}


def after(kind: str, spec: Method, original: nn.Module, loaded: nn.Module, problem: Any, config: Any, opts, raw
          ) -> tuple[dict, dict | None]:
    """The reloaded network's figures and, for property and robustness targets, its certificate."""
    from .certify import certify

    out: dict[str, Any] = {}
    cert = None
    clean = _clean(problem, opts.test)
    if clean is not None:
        out["accuracy"] = M.clean_accuracy(loaded, *clean)
    if kind == "property":
        cert = spec.certifier(loaded, problem, raw, timeout(opts, config)) if spec.certifier is not None else None
        if cert is None:
            cert = certify(loaded, _prop(problem), timeout(opts, config), raw.details.get("partition"),
                           **({"config": spec.bab} if spec.bab is not None else {}))
        out["status"] = cert["status"]
    elif kind == "robustness":
        cert = _certify_balls(spec, loaded, problem, raw, timeout(opts, config))
        out["status"] = cert["status"]
        out["proved"] = 100.0 * cert.get("verified", 0) / max(1, cert.get("regions", 1))
        if opts.attack:
            balls = _balls(problem)
            x, y = torch.stack([p.x for p in balls]), torch.tensor([p.label for p in balls])
            out["attack"] = _robust(loaded, x, y, _eps(kind, problem, config), opts, original)
            out["dsr"] = out["attack"]["robust_accuracy"]
        if isinstance(problem, RepairSet):
            out["rsr"] = M.repair_success_rate(loaded, problem.repair_x, problem.labels)
            out["rgr"] = M.repair_generalization_rate(loaded, problem.test_x, problem.test_y)
        if opts.attack and clean is not None:
            out["dgsr_attack"] = _dgsr(loaded, original, clean, _eps(kind, problem, config), opts, original)
            out["dgsr"] = out["dgsr_attack"]["robust_accuracy"]
    elif kind == "points":
        out["rsr"] = M.repair_success_rate(loaded, *_points(problem))
    elif kind == "adversarial":
        x, y = clean[0][:opts.attack_n], clean[1][:opts.attack_n]
        out["attack"] = _robust(loaded, x, y, _eps(kind, problem, config), opts, original)
        out["robust_accuracy"] = out["attack"]["robust_accuracy"]
    return out, cert


def figures(kind: str, before: dict, after: dict, original: nn.Module, loaded: nn.Module, problem: Any, opts) -> dict:
    """The flat, named metrics of the run (:data:`nnmend.metrics.METRICS`)."""
    out: dict[str, Any] = {}
    if "accuracy" in after:
        out.update(accuracy_before=before["accuracy"], accuracy=after["accuracy"],
                   drawdown=before["accuracy"] - after["accuracy"])
        ref = getattr(problem, "reference", None)
        if kind == "accuracy" and isinstance(ref, nn.Module):
            out["recovery"] = M.recovery(M.clean_accuracy(ref, *_clean(problem, opts.test)), before["accuracy"],
                                         after["accuracy"])
    if kind == "property":
        out.update({k: v for k, v in M.property_fdd(original, loaded, _prop(problem), n=opts.fidelity_samples,
                                                    seed=opts.seed, decision=opts.decision,
                                                    domain=getattr(problem, "domain", None)).items()
                    if k in M.METRICS})
        out["proved"] = 100.0 if after["status"] == "verified" else 0.0
    elif kind != "accuracy":                # a healed network is meant to differ from the damaged one
        clean = _clean(problem, opts.test)
        if clean is not None:
            out["fdd"] = M.fidelity_drawdown(original, loaded, clean[0], decision=opts.decision or "argmax")
    for key in ("rsr", "dsr", "dgsr", "robust_accuracy"):
        if key in before:
            out[f"{key}_before"] = before[key]
    for key in ("rsr", "rgr", "dsr", "dgsr", "robust_accuracy", "proved"):
        if key in after:
            out[key] = after[key]
    unknown = set(out) - set(M.METRICS)
    if unknown:   # every figure is named once, in nnmend.metrics
        raise RepairError(f"harness: figures {sorted(unknown)} are not defined in nnmend.metrics.METRICS")
    return out


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f} %"


def verdict(method: str, kind: str, before: dict, after: dict, figures: dict, opts) -> tuple[bool, str]:
    """``(success, one line)``: the target met, and clean behaviour not harmed beyond ``opts.max_drawdown``
    (``None`` when the target cannot be measured: no labelled data)."""
    if kind in ("property", "robustness"):
        met = after["status"] == "verified"
        what = (f"property {before['status']} → {after['status']} on the saved network" if kind == "property" else
                f"{_fmt(after.get('proved'))} of balls proved; DSR {_fmt(before.get('dsr'))} → {_fmt(after.get('dsr'))}"
                + (f" (strongest attack: {after['attack']['strongest']})" if "attack" in after else ""))
    else:
        key = {"points": "rsr", "accuracy": "accuracy", "adversarial": "robust_accuracy"}[kind]
        b, a = before.get(key), after.get(key)
        if b is None or a is None:
            return None, (f"UNMEASURED: {method}: no labelled data to measure {key} (pass test=(x, y)); "
                          "nothing is claimed")
        else:
            met = a > b or a >= 100.0
            what = f"{key} {_fmt(b)} → {_fmt(a)}"
            if kind == "adversarial":
                what += f" (strongest attack: {after['attack']['strongest']})"
    harm = figures.get("drawdown", figures.get("fdd") if kind == "property" else None)
    harmed = harm is not None and not math.isnan(harm) and harm > opts.max_drawdown
    clean = ""
    if "accuracy" in figures:
        clean = f"; clean accuracy {_fmt(figures['accuracy_before'])} → {_fmt(figures['accuracy'])}"
    elif "fdd" in figures:
        clean = f"; FDD {_fmt(figures['fdd'])}"
    reason = "" if met else " (target not met)"
    if harmed:
        reason += f" (costs {harm:.2f} pp, more than max_drawdown={opts.max_drawdown})"
    external = after.get("external")
    disagree = external == "sat"
    if disagree:
        reason += (" (DISAGREEMENT: Marabou finds a counterexample to a property nnmend's bounds proved; "
                   "see certificate['external'])")
    elif external is not None:
        what += f"; Marabou re-proof on the piecewise-linear export: {external}"
    ok = met and not harmed and not disagree
    return ok, f"{'OK' if ok else 'FAILED'}{reason}: {method}: {what}{clean}"
