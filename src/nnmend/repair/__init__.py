"""Repair methods: one module per paper, each with ``repair(network, problem, config)``."""
from .base import RepairResult

__all__ = ["RepairResult"]
