"""NNrepair (Usman et al., CAV 2021; paper 004): constraint-based repair with activation patterns.

Per label, an expert: localise faulty neurons by the label's activation pattern (decision trees over
on/off signatures) and suspicious edges by the edge defect score, then solve the repair constraints,
linear in the weight deltas, with HiGHS (hard LP with a minimal-change objective, soft LP, or exact
MaxSAT as a MILP). The experts are combined (naive, confidence, voting, merged, F1 filter) inside one
``nn.Module``.

Example::

    from nnmend.repair.nnrepair import NNRepairConfig, RepairProblem, repair
    res = repair(net, RepairProblem(train.x, train.y), NNRepairConfig(layer="intermediate"))
    repaired = res.network
"""
from . import models  # registers nnrepair_mnist_lq / nnrepair_mnist_hq
from .api import repair
from .config import NNRepairConfig, RepairProblem
from .experts import ExpertEnsemble, f1_filter
from .patterns import Pattern, learn_patterns
from .scenarios import SCENARIOS, Scenario, build_scenario

__all__ = ["repair", "NNRepairConfig", "RepairProblem", "ExpertEnsemble", "f1_filter", "Pattern",
           "learn_patterns", "SCENARIOS", "Scenario", "build_scenario", "models"]
