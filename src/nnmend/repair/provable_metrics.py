"""Moved to :mod:`nnmend.metrics` (one metrics module); this name stays for existing imports."""
from ..metrics import (_autoattack, decisions, defense_generalization_rate, defense_success_rate, drawdown,  # noqa: F401
                       fidelity_drawdown, repair_generalization_rate, repair_success_rate)

__all__ = ["repair_success_rate", "repair_generalization_rate", "drawdown", "defense_success_rate",
           "defense_generalization_rate", "fidelity_drawdown", "decisions"]
