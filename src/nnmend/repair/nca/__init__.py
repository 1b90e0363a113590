"""Neural-cellular-automaton repair of tampered dense layers (Paladini, Tuba, Mariot; paper 001).

A rule trained on a layer's clean weights runs on the tampered weight grid and regenerates it; see
:mod:`.layout` (grids), :mod:`.rule` (the CA), :mod:`.train` (pool/tile training), :mod:`.repair`
(blind / informed / reconstruction) and :mod:`.baselines` (what it must beat).
"""
from .layout import LAYOUTS, Layout, make_layout, positional_channels
from .repair import (NCAProblem, NCARepairConfig, calibrate, calibrate_blind, calibrate_shrink, repair, repair_trajectory,
                     repair_weight)
from .rule import NCARule, half_precision, storage_bytes
from .train import NCATrainConfig, train_rule, train_rule_for_weight

__all__ = ["LAYOUTS", "Layout", "make_layout", "positional_channels", "NCAProblem", "NCARepairConfig", "calibrate",
           "calibrate_blind", "calibrate_shrink", "repair", "repair_trajectory", "repair_weight", "NCARule",
           "half_precision", "storage_bytes", "NCATrainConfig", "train_rule", "train_rule_for_weight"]
