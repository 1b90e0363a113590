"""The registry of repair methods: one name → one problem type, one config dataclass, one function.

Every method has the call shape ``repair(network, problem, config) -> RepairResult`` (captum's rule:
switching methods is switching a name). The harness (:func:`nnmend.repair.run`) looks methods up here,
validates the problem and config against what the method registered, and then decides success itself.

Example::

    from nnmend.repair import methods, register, run
    methods()                                   # ('guard', 'nca', 'nnrepair', 'patchpro', ...)
    register("mine", MyProblem, MyConfig, my_repair, target="points")
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..errors import RepairError
from .base import RepairResult

#: What the harness measures for a method (see :mod:`nnmend.repair.harness`):
#: ``property``: a region property proved on the saved network; ``robustness``: local-robustness balls
#: proved and attacked; ``points``: inputs that must get their labels (RSR); ``accuracy``: clean accuracy
#: won back; ``adversarial``: robust accuracy under the strongest attack.
TARGETS = ("property", "robustness", "points", "accuracy", "adversarial")

RepairFn = Callable[[nn.Module, Any, Any], RepairResult]
Certifier = Callable[[nn.Module, Any, RepairResult, "float | None"], dict]


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
    """

    name: str
    problem: tuple[type, ...]
    config: type
    repair: RepairFn
    target: str | Callable[[Any], str]
    summary: str = ""
    certifier: Certifier | None = None

    def target_of(self, problem: Any) -> str:
        kind = self.target(problem) if callable(self.target) else self.target
        if kind not in TARGETS:
            raise RepairError(f"method {self.name!r}: target {kind!r} is not one of {', '.join(TARGETS)}")
        return kind

    def options(self) -> dict[str, dataclasses.Field]:
        """The config dataclass's fields by name (what the CLI and the workbench offer)."""
        return {f.name: f for f in dataclasses.fields(self.config)}


_REGISTRY: dict[str, Method] = {}
_LOADED = False


def register(name: str, problem: type | tuple[type, ...], config: type, repair: RepairFn, *,
             target: str | Callable[[Any], str], summary: str = "", certifier: Certifier | None = None,
             replace: bool = False) -> Method:
    """Register a repair method under ``name`` (``replace=True`` to override an existing one)."""
    if not name or not name.replace("_", "").isalnum():
        raise RepairError(f"method name {name!r}: use letters, digits and underscores")
    if not dataclasses.is_dataclass(config):
        raise RepairError(f"method {name!r}: config must be a dataclass, got {config!r}")
    if name in _REGISTRY and not replace:
        raise RepairError(f"method {name!r} is already registered")
    problems = problem if isinstance(problem, tuple) else (problem,)
    m = Method(name, problems, config, repair, target, summary, certifier)
    if not callable(target):
        m.target_of(None)
    _REGISTRY[name] = m
    return m


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import adapters  # noqa: F401  (registers the shipped methods)


def methods() -> tuple[str, ...]:
    """Names of every registered method, sorted."""
    _load_builtin()
    return tuple(sorted(_REGISTRY))


def get(name: str) -> Method:
    """The registered method ``name``; an unknown name is an error listing the known ones."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise RepairError(f"unknown repair method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
