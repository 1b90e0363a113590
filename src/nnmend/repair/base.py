"""What every repair method shares: the result record and the contract.

Each method module exposes ``repair(network, problem, config) -> RepairResult``; the harness
(:func:`nnmend.repair.run`), not the method, re-checks success on the saved and reloaded network and fills
``success``, ``verified``, ``verdict``, ``before`` / ``after``, ``metrics`` and ``certificate`` (foolbox's
rule: no method grades itself). Metric names and units: :data:`nnmend.metrics.METRICS`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..errors import RepairError


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


#: What the harness measures for a method (see :mod:`nnmend.repair.harness`):
#: ``property``: a region property proved on the saved network; ``robustness``: local-robustness balls
#: proved and attacked; ``points``: inputs that must get their labels (RSR); ``accuracy``: clean accuracy
#: won back; ``adversarial``: robust accuracy under the strongest attack.
TARGETS = ("property", "robustness", "points", "accuracy", "adversarial")

RepairFn = Callable[[nn.Module, Any, Any], "RepairResult"]
Certifier = Callable[[nn.Module, Any, "RepairResult", "float | None"], dict]


@dataclass(frozen=True)
class Method:
    """One registered repair method.

    Attributes:
        name: the name users type (``nnmend repair --method NAME``).
        problem: the problem type(s) the method accepts (checked with ``isinstance``).
        config: the frozen config dataclass; its fields are the method's options, defaults included.
        repair: ``repair(network, problem, config) -> RepairResult``; must not change ``network``.
        target: a name from :data:`TARGETS`, or a function of the problem returning one.
        summary: one line for listings.
        certifier: optional ``(loaded network, problem, raw result, timeout) -> {"status", ...}`` for networks
            the ordinary verifier cannot read whole (PatchPro's indicator): it must re-derive its proof
            from the loaded network only.
        bab: branch-and-bound settings for the proof of this method's results (None: the defaults); the
            guard's construction is proved exactly with ``BabConfig(mean_rows=True)``.
    """

    name: str
    problem: tuple[type, ...]
    config: type
    repair: RepairFn
    target: str | Callable[[Any], str]
    summary: str = ""
    certifier: Certifier | None = None
    bab: Any = None

    def target_of(self, problem: Any) -> str:
        kind = self.target(problem) if callable(self.target) else self.target
        if kind not in TARGETS:
            raise RepairError(f"method {self.name!r}: target {kind!r} is not one of {', '.join(TARGETS)}")
        return kind

    def options(self) -> dict[str, dataclasses.Field]:
        """The config dataclass's fields by name (what the CLI and the workbench offer)."""
        return {f.name: f for f in dataclasses.fields(self.config)}
