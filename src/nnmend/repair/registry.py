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
from typing import Any, Callable

from ..errors import RepairError
from .base import TARGETS, Certifier, Method, RepairFn

__all__ = ["Method", "TARGETS", "register", "methods", "get"]

_REGISTRY: dict[str, Method] = {}
_LOADED = False


def register(name: str, problem: type | tuple[type, ...], config: type, repair: RepairFn, *,
             target: str | Callable[[Any], str], summary: str = "", certifier: Certifier | None = None,
             bab: Any = None, replace: bool = False) -> Method:
    """Register a repair method under ``name`` (``replace=True`` to override an existing one)."""
    if not name or not name.replace("_", "").isalnum():
        raise RepairError(f"method name {name!r}: use letters, digits and underscores")
    if not dataclasses.is_dataclass(config):
        raise RepairError(f"method {name!r}: config must be a dataclass, got {config!r}")
    if name in _REGISTRY and not replace:
        raise RepairError(f"method {name!r} is already registered")
    problems = problem if isinstance(problem, tuple) else (problem,)
    m = Method(name, problems, config, repair, target, summary, certifier, bab)
    if not callable(target):
        m.target_of(None)
    _REGISTRY[name] = m
    return m


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from .adapters import BUILTIN     # the shipped methods, imported on first use

        for m in BUILTIN:
            _REGISTRY.setdefault(m.name, m)


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
