"""Metrics, defined once, exactly as the papers define them."""
from __future__ import annotations

from .train import accuracy

__all__ = ["accuracy", "recovery"]


def recovery(clean: float, damaged: float, healed: float) -> float:
    """Share of the lost accuracy that healing won back, in % (SHNN's "recovery"):
    ``100 · (healed − damaged) / (clean − damaged)``; NaN when nothing was lost."""
    lost = clean - damaged
    if abs(lost) < 1e-12:
        return float("nan")
    return 100.0 * (healed - damaged) / lost
