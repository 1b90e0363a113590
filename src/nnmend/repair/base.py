"""What every repair method shares: the result record and the contract.

Each method module exposes ``repair(network, problem, config) -> RepairResult``; the harness
(:func:`nnmend.repair.run`), not the method, re-checks success on the saved and reloaded network and fills
``success``, ``verified``, ``verdict``, ``before`` / ``after``, ``metrics`` and ``certificate`` (foolbox's
rule: no method grades itself). Metric names and units: :data:`nnmend.metrics.METRICS`.
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
        metrics: figures the harness measured on the reloaded network, named and scaled as
            :data:`nnmend.metrics.METRICS` says (RSR etc. in %).
        details: method-specific record (localised layer, solver status, boxes, ...).
        verified: ``True`` only when sound bounds prove every property on the saved and reloaded
            network (set by the harness); ``None`` when the target carries no proof.
        success: the harness's verdict: the target was met and clean behaviour was not harmed beyond
            the run's tolerance (``None`` before the harness has measured).
        verdict: one line, verdict first (``"FAILED: ..."`` / ``"OK: ..."``).
        target: what was measured (:data:`nnmend.repair.registry.TARGETS`).
        before, after: the target's and clean accuracy's figures on the original and repaired network.
        certificate: the proof record on the saved network (status, method, seconds, ...), or None.
        config: the method's config the run used.
    """

    network: nn.Module
    method: str
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    verified: bool | None = None
    success: bool | None = None
    verdict: str = ""
    target: str | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, Any] | None = None
    config: Any = None
