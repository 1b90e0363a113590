"""Metrics of provable repair (PatchPro / AdvRepair, paper 002, Sec. V; research Part B.10), defined once.

All rates are in **percent**, drawdowns in **percentage points**. Every function takes networks and
tensors, runs batched in eval mode, and never edits the network.

* RSR  — repair success rate: share of the repair samples (one adversarial input per property) the
  repaired network classifies correctly.                                  :func:`repair_success_rate`
* RGR  — repair generalisation rate: the same on the held-out adversarial samples (10 per origin).
                                                                           :func:`repair_generalization_rate`
* DD   — drawdown: clean test accuracy of the original minus that of the repaired network.
                                                                           :func:`drawdown`
* DSR  — defence success rate: share of the repaired neighbourhoods' origins on which AutoAttack (radius
  r, on the whole repaired network) finds no misclassified input.         :func:`defense_success_rate`
* DGSR — defence generalisation success rate: robust accuracy under AutoAttack on the clean test inputs
  the *original* network classifies correctly.                            :func:`defense_generalization_rate`
* FDD  — fidelity drawdown (ACAS Xu): share of test points whose decision (argmin advisory for ACAS Xu)
  the repair changed.                                                     :func:`fidelity_drawdown`

Example::

    rsr = repair_success_rate(repaired, rs.repair_x, rs.labels)
    dd = drawdown(original, repaired, test.x, test.y)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .._validation import check_choice
from ..attacks.base import eval_mode
from ..errors import DataError

__all__ = ["repair_success_rate", "repair_generalization_rate", "drawdown", "defense_success_rate",
           "defense_generalization_rate", "fidelity_drawdown", "decisions"]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]


def decisions(network: nn.Module, x: torch.Tensor, *, decision: str = "argmax", batch_size: int = 4096) -> torch.Tensor:
    """The network's decision for each input: ``argmax`` (classifiers) or ``argmin`` (ACAS Xu advisories)."""
    check_choice("decision", decision, ("argmax", "argmin"))
    out = []
    with eval_mode(network), torch.no_grad():
        for i in range(0, len(x), batch_size):
            y = network(x[i:i + batch_size])
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
    from ..attacks import autoattack

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


def fidelity_drawdown(original: nn.Module, repaired: nn.Module, x: torch.Tensor, *, decision: str = "argmax") -> float:
    """FDD (%): share of points ``x`` on which the repaired network's decision differs from the original's
    (``decision="argmin"`` for ACAS Xu advisories)."""
    if len(x) == 0:
        return float("nan")
    return 100.0 * (decisions(original, x, decision=decision) != decisions(repaired, x, decision=decision)).double().mean().item()
