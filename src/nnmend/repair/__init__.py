"""Repair methods: one module per paper, each registered with ``repair(network, problem, config)``, and one
harness, :func:`run`, that validates, repairs, saves and reloads, certifies, attacks and measures.

Example::

    from nnmend.repair import methods, run
    methods()                                   # ('guard', 'nca', 'nnrepair', 'patchpro', 'prorepair', ...)
    res = run("guard", net, GuardProblem(prop))
    print(res.verdict)
"""
from .base import RepairResult
from .harness import RunOptions, run
from .registry import Method, get, methods, register

__all__ = ["RepairResult", "run", "RunOptions", "methods", "get", "register", "Method"]
