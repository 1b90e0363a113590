"""The shipped methods, registered in one place, with thin adapters where a method's own entry point has
another shape (SHNN's ``heal_structural`` / ``heal_adversarial`` keep working as they are).

Imported by :func:`nnmend.repair.registry.methods` on first use, so ``import nnmend.repair`` stays light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..bounds.bab import BabConfig
from ..data import Dataset
from ..properties import LocalRobustness, SafetyProperty
from .base import RepairResult
from .nnrepair import NNRepairConfig, RepairProblem
from .guard import GuardConfig, GuardProblem
from .guard import repair as guard_repair
from .nca import NCAProblem, NCARepairConfig
from .nca import repair as nca_repair
from .nnrepair import repair as nnrepair_repair
from .patch_layer import PatchAdvConfig, PatchConfig, heal_adversarial, heal_structural
from .patchpro import PatchProConfig
from .patchpro import repair as patchpro_repair
from .patchpro.certify import certify_loaded as patchpro_certify
from .prorepair import PointProblem, ProRepairConfig, RegionProblem
from .prorepair import repair as prorepair_repair
from .base import Method
from .repair_sets import RepairSet


@dataclass(frozen=True, eq=False)
class StructuralProblem:
    """SHNN structural healing: replace the damaged ``layer`` and train it on ``data``.

    ``reference``: the healthy network (or its trace), needed by ``PatchConfig(target="activation")``."""

    layer: str
    data: Dataset
    reference: nn.Module | dict | None = None


@dataclass(frozen=True, eq=False)
class AdversarialProblem:
    """SHNN adversarial healing: harden ``layer`` with a patch trained on clean + adversarial ``data``."""

    layer: str
    data: Dataset


def shnn_structural(network: nn.Module, problem: StructuralProblem, config: PatchConfig) -> RepairResult:
    """SHNN structural healing (paper 000) in the registry's shape."""
    return heal_structural(network, problem.layer, problem.data, reference=problem.reference, config=config)


def shnn_adversarial(network: nn.Module, problem: AdversarialProblem, config: PatchAdvConfig) -> RepairResult:
    """SHNN adversarial healing (paper 000) in the registry's shape."""
    return heal_adversarial(network, problem.layer, problem.data, config)


def _patchpro_target(problem: Any) -> str:
    return "property" if isinstance(problem, SafetyProperty) else "robustness"


def _prorepair_target(problem: Any) -> str:
    return "property" if isinstance(problem, RegionProblem) else "points"


def _method(name: str, problem, config, fn, *, target, summary: str, certifier=None, bab=None) -> Method:
    return Method(name, problem if isinstance(problem, tuple) else (problem,), config, fn, target, summary, certifier, bab)


#: the shipped methods (:func:`nnmend.repair.registry.methods` registers them on first use)
BUILTIN: tuple[Method, ...] = (
    _method("shnn", StructuralProblem, PatchConfig, shnn_structural, target="accuracy",
            summary="SHNN: a fresh patch layer replaces the damaged one (activation matching or task loss)"),
    _method("shnn_adversarial", AdversarialProblem, PatchAdvConfig, shnn_adversarial, target="adversarial",
            summary="SHNN: a two-layer patch trained on clean + adversarial inputs"),
    _method("nnrepair", RepairProblem, NNRepairConfig, nnrepair_repair, target="points",
            summary="NNrepair: per-class experts, weight deltas by LP / MILP over activation patterns"),
    _method("nca", NCAProblem, NCARepairConfig, nca_repair, target="accuracy",
            summary="NCA: a cellular automaton regrows a tampered weight matrix"),
    _method("patchpro", (RepairSet, LocalRobustness, SafetyProperty, list, tuple), PatchProConfig, patchpro_repair,
            target=_patchpro_target, certifier=patchpro_certify,
            summary="PatchPro/AdvRepair: patch modules behind an exact box indicator, trained on sound bounds"),
    _method("prorepair", (RegionProblem, PointProblem), ProRepairConfig, prorepair_repair, target=_prorepair_target,
            summary="ProRepair: proxy boxes in feature space, localised edit, counterexample-guided refinement"),
    _method("guard", GuardProblem, GuardConfig, guard_repair, target="property", bab=BabConfig(mean_rows=True),
            summary="output guard (not from the papers): a ReLU construction that holds by construction"),
)

__all__ = ["StructuralProblem", "AdversarialProblem", "shnn_structural", "shnn_adversarial", "BUILTIN"]
