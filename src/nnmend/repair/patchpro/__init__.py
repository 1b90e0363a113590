"""PatchPro / AdvRepair (paper 002): provable repair by patch modules, an exact indicator and sound bounds.

``repair(network, problem, config) -> RepairResult``; the repaired network is one
:class:`PatchProNetwork` (frozen base + :class:`StackedPatches` + box indicator + top-2 allocation).
Baselines on the same data: :func:`finetune_baseline`, :func:`trades_baseline`.
"""
from .config import PatchProConfig
from .modules import PatchProNetwork, StackedPatches
from .repair import repair

__all__ = ["repair", "PatchProConfig", "PatchProNetwork", "StackedPatches"]
