"""What every repair method shares: the result record and the contract.

Each method module exposes ``repair(network, problem, config) -> RepairResult``; the shared layer,
not the method, re-checks success on the returned network (foolbox's rule: no method grades itself).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class RepairResult:
    """The repaired network and what was measured about it.

    Attributes:
        network: the repaired network, an ordinary ``nn.Module`` (patches etc. inside it).
        method: the method's name (``"patch_layer"``, ``"patchpro"``, ...).
        seconds: wall time of the repair.
        metrics: figures measured on the returned network (accuracy, RSR, ...).
        details: method-specific record (localised layer, solver status, boxes, ...).
        verified: ``True`` only when sound bounds prove every property on the returned network;
            ``None`` when the method makes no proof claim.
    """

    network: nn.Module
    method: str
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    verified: bool | None = None
