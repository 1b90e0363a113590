"""Metrics, defined once, exactly as the papers define them, with one unit each.

Every rate is in **percent**, every drawdown in **percentage points** (:data:`METRICS` lists the names the
repair harness reports and their units). Functions take networks and tensors, run batched in eval mode
and never edit the network. Paper definitions (PatchPro / AdvRepair, paper 002, Sec. V; SHNN, paper 000):

* accuracy — clean accuracy (:func:`clean_accuracy`, %; :func:`accuracy` is the training loop's fraction).
* recovery — share of the lost accuracy won back (SHNN).                         :func:`recovery`
* RSR  — repair success rate: repair samples classified as their labels.         :func:`repair_success_rate`
* RGR  — repair generalisation rate: the same on held-out adversarial samples.   :func:`repair_generalization_rate`
* DD   — drawdown: clean accuracy of the original minus that of the repaired.    :func:`drawdown`
* DSR  — defence success rate: origins whose ball the attack cannot break.       :func:`defense_success_rate`
* DGSR — the same on the clean test inputs the original gets right.              :func:`defense_generalization_rate`
* FDD  — fidelity drawdown: decisions the repair changed. One protocol per property type
  (:func:`property_fdd`): region properties on uniform samples of the input domain, leaving out the
  points where the original violates the property (those must change); labelled problems on the clean
  test inputs.                                                                    :func:`fidelity_drawdown`

Robustness figures use the strongest attack, not the most convenient (:func:`strongest_attack`): an input
counts as robust only if white-box PGD on the whole network, PGD transferred from the original network
and the gradient-free Square attack all fail on it.

Example::

    rsr = repair_success_rate(repaired, rs.repair_x, rs.labels)
    dd = drawdown(original, repaired, test.x, test.y)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._validation import check_choice
from .attacks.base import eval_mode
from .errors import DataError
from .train import accuracy

__all__ = ["METRICS", "accuracy", "clean_accuracy", "recovery", "decisions", "repair_success_rate",
           "repair_generalization_rate", "drawdown", "defense_success_rate", "defense_generalization_rate",
           "fidelity_drawdown", "property_fdd", "strongest_attack", "violations"]

#: name → (unit, meaning): the figures the repair harness reports, named and scaled the same everywhere.
METRICS: dict[str, tuple[str, str]] = {
    "accuracy_before": ("%", "clean accuracy of the original network"),
    "accuracy": ("%", "clean accuracy of the repaired network"),
    "drawdown": ("pp", "DD: accuracy_before − accuracy"),
    "recovery": ("%", "share of the accuracy lost to damage that the repair won back (SHNN)"),
    "rsr_before": ("%", "repair inputs the original classifies as their labels"),
    "rsr": ("%", "RSR: repair inputs the repaired network classifies as their labels"),
    "rgr": ("%", "RGR: held-out adversarial inputs classified as their labels"),
    "dsr_before": ("%", "origins whose ball the strongest attack cannot break on the original"),
    "dsr": ("%", "DSR: the same on the repaired network (strongest of white-box, transfer, Square)"),
    "dgsr_before": ("%", "DGSR of the original: clean test inputs it gets right, correct under the strongest attack"),
    "dgsr": ("%", "DGSR: the same inputs on the repaired network (strongest of white-box, transfer, Square)"),
    "robust_accuracy_before": ("%", "test inputs correct under the strongest attack, original network"),
    "robust_accuracy": ("%", "the same, repaired network"),
    "proved": ("%", "properties (regions, balls) proved on the saved network by sound bounds"),
    "fdd": ("%", "FDD: decisions changed (property_fdd's protocol)"),
    "fdd_inside": ("%", "FDD on the samples inside the property's regions"),
    "fdd_outside": ("%", "FDD on the samples outside the property's regions"),
    "seconds": ("s", "wall time of the method (measurement excluded)"),
    "parameters_added": ("count", "parameters of the repaired network minus the original's"),
}

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


def clean_accuracy(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Clean accuracy (%) on ``(x, y)``; NaN on no data."""
    return _rate(network, x, y)


def recovery(clean: float, damaged: float, healed: float) -> float:
    """Share of the lost accuracy that healing won back, in % (SHNN's "recovery"):
    ``100 · (healed − damaged) / (clean − damaged)``; NaN when nothing was lost."""
    lost = clean - damaged
    if abs(lost) < 1e-12:
        return float("nan")
    return 100.0 * (healed - damaged) / lost


def decisions(network: nn.Module, x: torch.Tensor, *, decision: str = "argmax", batch_size: int = 4096) -> torch.Tensor:
    """The network's decision for each input: ``argmax`` (classifiers) or ``argmin`` (ACAS Xu advisories)."""
    check_choice("decision", decision, ("argmax", "argmin"))
    out = []
    p = next(iter(network.parameters()), None)
    with eval_mode(network), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            y = network(xb.to(p.dtype) if p is not None and xb.is_floating_point() else xb)
            out.append(y.argmax(1) if decision == "argmax" else y.argmin(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _rate(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    y = y.reshape(-1)
    if x.shape[0] != len(y):
        raise DataError(f"metrics: {x.shape[0]} inputs but {len(y)} labels")
    if len(y) == 0:
        return float("nan")
    return 100.0 * (decisions(network, x) == y).double().mean().item()


def repair_success_rate(network: nn.Module, repair_x: torch.Tensor, labels: torch.Tensor) -> float:
    """RSR (%): share of the repair samples ``repair_x`` (n, *s) classified as ``labels`` (n,)."""
    return _rate(network, repair_x, labels)


def repair_generalization_rate(network: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    """RGR (%): share of the held-out adversarial samples ``test_x`` (N, *s) classified as ``test_y`` (N,)
    (``RepairSet.test_x`` / ``test_y``: 10 per origin, flattened)."""
    return _rate(network, test_x, test_y)


def drawdown(original: nn.Module, repaired: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """DD (percentage points): ``acc(original) − acc(repaired)`` on clean data ``(x, y)``."""
    return _rate(original, x, y) - _rate(repaired, x, y)


def _autoattack(network: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    from .attacks import autoattack

    return autoattack(network, x, y, eps)


def defense_success_rate(network: nn.Module, origins: torch.Tensor, labels: torch.Tensor, eps: float, *,
                         attack: Attack = _autoattack) -> float:
    """DSR (%): share of origins (n, *s) whose ``eps``-ball the attack (AutoAttack by default, on the whole
    network, clipped to [0, 1]) cannot push off ``labels``; only origins the network gets right count as
    defended."""
    if len(labels) == 0:
        return float("nan")
    adv = attack(network, origins, labels, eps)
    ok = (decisions(network, origins) == labels) & (decisions(network, adv) == labels)
    return 100.0 * ok.double().mean().item()


def defense_generalization_rate(network: nn.Module, original: nn.Module, x: torch.Tensor, y: torch.Tensor,
                                eps: float, *, attack: Attack = _autoattack) -> float:
    """DGSR (%): robust accuracy of ``network`` under the attack on the clean inputs that ``original``
    classifies correctly (the paper's Table III protocol; the attack sees the whole network)."""
    keep = decisions(original, x) == y
    if not keep.any():
        return float("nan")
    return defense_success_rate(network, x[keep], y[keep], eps, attack=attack)


def strongest_attack(network: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                     original: nn.Module | None = None, steps: int = 50, square_queries: int = 1000,
                     seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Which inputs (n, *s) stay correct under every attack at L∞ radius ``eps`` (clipped to [0, 1]).

    Attacks: white-box PGD (margin loss, random start) on ``network`` as a whole; PGD crafted on ``original``
    and transferred (an indicator or a guard can mask gradients, so the white-box figure alone flatters a
    patched network); Square (gradient-free; ``square_queries=0`` skips it). Returns ``(robust (n,) bool,
    record)`` with each attack's robust accuracy (%), the joint figure (``robust_accuracy``: correct under
    all of them) and ``strongest``, the attack with the lowest figure on its own (``"a = b (tie)"`` when several).
    """
    from .attacks import pgd
    from .attacks.autoattack import square

    y = y.reshape(-1).long()
    if len(y) == 0:
        return torch.zeros(0, dtype=torch.bool), {"robust_accuracy": float("nan"), "strongest": None}
    ok = decisions(network, x) == y
    rec, robust = {"clean": 100.0 * ok.double().mean().item()}, ok.clone()
    candidates = {"pgd": lambda: pgd(network, x, y, eps, steps=steps, loss="margin", seed=seed)}
    if original is not None:
        candidates["transfer"] = lambda: pgd(original, x, y, eps, steps=steps, loss="margin", seed=seed)
    if square_queries > 0:
        candidates["square"] = lambda: square(network, x, y, eps, n_queries=square_queries, seed=seed)
    for name, craft in candidates.items():
        hit = ok & (decisions(network, craft()) == y)
        rec[name] = 100.0 * hit.double().mean().item()
        robust &= hit
    named = {k: v for k, v in rec.items() if k in candidates}
    low = min(named.values())
    rec["strongest"] = " = ".join(k for k, v in named.items() if v == low) + (" (tie)" if list(named.values()).count(low) > 1 else "")
    rec["robust_accuracy"] = 100.0 * robust.double().mean().item()
    rec.update(eps=eps, n=len(y))
    return robust, rec


def fidelity_drawdown(original: nn.Module, repaired: nn.Module, x: torch.Tensor, *, decision: str = "argmax") -> float:
    """FDD (%): share of points ``x`` on which the repaired network's decision differs from the original's
    (``decision="argmin"`` for ACAS Xu advisories)."""
    if len(x) == 0:
        return float("nan")
    return 100.0 * (decisions(original, x, decision=decision) != decisions(repaired, x, decision=decision)).double().mean().item()


def violations(x: torch.Tensor, y: torch.Tensor, boxes: list) -> torch.Tensor:
    """Which flat inputs ``x`` (N, d) lie in a region of ``boxes`` (:meth:`SafetyProperty.boxes`) with an
    output ``y`` (N, n_out) in that region's unsafe set: (N,) bool."""
    flat, bad = x.flatten(1), torch.zeros(len(x), dtype=torch.bool)
    for b in boxes:
        inside = ((flat >= b.lo.to(flat.dtype).reshape(-1)) & (flat <= b.hi.to(flat.dtype).reshape(-1))).all(1)
        for A, d in b.unsafe:
            bad |= inside & ((y.to(A.dtype) @ A.T) <= d.reshape(-1)).all(1)
    return bad


def property_fdd(original: nn.Module, repaired: nn.Module, prop, *, n: int = 5000, seed: int = 2,
                 decision: str | None = None, domain: tuple | None = None) -> dict:
    """FDD of a region property repair (one protocol for every method): ``n`` uniform points of the input
    domain (``domain=(lo, hi)``, else the ``.nnet`` header's, else the hull of the property's regions), leaving out the points where
    the original violates the property; FDD (%) over all of them (``fdd``), inside the regions
    (``fdd_inside``, NaN when none falls there) and outside (``fdd_outside``). ``decision``: None = the
    network's recorded advisory (ACAS Xu: argmin), else argmax."""
    from .properties import input_domain

    if decision is None:
        decision = "argmin" if (getattr(original, "nnmend_meta", None) or {}).get("advisory") == "argmin" else "argmax"
    n_in = torch.as_tensor(prop.regions[0].lo).numel()
    shape = tuple(getattr(original, "nnmend_input_shape", None) or (n_in,))
    with torch.no_grad():
        n_out = original(torch.as_tensor(prop.regions[0].lo, dtype=torch.float32).reshape(1, *shape)).shape[-1]
    boxes = prop.boxes(n_out)
    if domain is not None:
        lo, hi = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in domain)
    else:
        lo, hi = input_domain(original, [(b.lo.float().reshape(-1), b.hi.float().reshape(-1)) for b in boxes])
    x = lo + torch.rand(n, len(lo), generator=torch.Generator().manual_seed(seed)) * (hi - lo)
    with torch.no_grad(), eval_mode(original):
        x = x[~violations(x, original(x.reshape(-1, *shape)), boxes)]
    inside = torch.zeros(len(x), dtype=torch.bool)
    for b in boxes:
        inside |= ((x >= b.lo.float().reshape(-1)) & (x <= b.hi.float().reshape(-1))).all(1)
    x = x.reshape(-1, *shape)
    return {"fdd": fidelity_drawdown(original, repaired, x, decision=decision),
            "fdd_inside": fidelity_drawdown(original, repaired, x[inside], decision=decision),
            "fdd_outside": fidelity_drawdown(original, repaired, x[~inside], decision=decision),
            "fdd_points": len(x), "fdd_inside_points": int(inside.sum()), "decision": decision}
