"""One tiny problem per registered repair method, for the contract suite (tests/test_repair_contract.py).

Each case is ``(network, problem, config, options)`` for :func:`nnmend.repair.run`, small enough that the
whole suite runs in seconds: a 2-input network (tests/_prorepair_nets.py) and synthetic data.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net, tiny_property  # noqa: E402

from nnmend.attacks import AttackSpec  # noqa: E402
from nnmend.data import Dataset  # noqa: E402
from nnmend.properties import LocalRobustness  # noqa: E402


def _data(net, n: int = 400, seed: int = 1) -> Dataset:
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x).argmax(1)
    return Dataset(x, y, "tiny", "train", classes=("0", "1"))


def _damaged(net, layer: str = "fc2"):
    from nnmend.faults import damage

    return damage(net, layer, "gaussian", seed=1)[0]


def case(method: str):
    """``(network, problem, config, options)`` for ``method``."""
    from nnmend.repair import adapters, guard, nca, patch_layer, patchpro, prorepair
    from nnmend.repair import nnrepair

    net = tiny_net()
    data = _data(net)
    quick = {"certify_timeout": None, "square_queries": 50, "attack_steps": 10, "fidelity_samples": 2000}
    if method == "guard":
        prob = guard.GuardProblem(tiny_property(), domain=(torch.zeros(2), torch.ones(2)))
        return net, prob, guard.GuardConfig(check_first=0, certify_timeout=None), quick
    if method == "prorepair":                  # point-wise (closed form): region-wise is tests/test_prorepair.py's
        x = torch.rand(12, 2, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            y = 1 - net(x).argmax(1)                        # every repair point starts wrong
        prob = prorepair.PointProblem(x, y, data.x, data.y)
        return net, prob, prorepair.ProRepairConfig(max_rounds=10), quick
    if method == "patchpro":
        x = torch.tensor([[0.30, 0.32], [0.62, 0.41], [0.20, 0.70]])
        with torch.no_grad():
            y = net(x).argmax(1)
        balls = [LocalRobustness(xi, 0.02, int(yi)) for xi, yi in zip(x, y)]
        return net, balls, patchpro.PatchProConfig(max_epochs=5), {**quick, "test": data}
    if method == "nnrepair":
        y = data.y.clone()
        y[:60] = 1 - y[:60]                                   # 60 failing inputs
        prob = nnrepair.RepairProblem(data.x, y, scenario="accuracy")
        return net, prob, nnrepair.NNRepairConfig(layer="last"), quick
    if method == "nca":
        from nnmend.repair.nca import NCATrainConfig, train_rule_for_weight

        cfg = NCATrainConfig(iterations=30, batch_size=4, pool_size=8, steps_min=6, steps_max=8, hidden_channels=5,
                             width=24, tile=12, margin=4, lr=3e-3, seed=0, function_weight=0.0, dilations=(1,),
                             fraction_range=(0.05, 0.95))
        rule, _ = train_rule_for_weight(net.fc2.weight.detach(), cfg, layer="fc2")
        mask = torch.ones(16, 16, dtype=torch.bool)
        mask[4:10, 4:10] = False
        hurt = tiny_net()
        with torch.no_grad():
            hurt.fc2.weight[~mask] = 0.0
        return hurt, nca.NCAProblem("fc2", rule, mask), nca.NCARepairConfig(), {**quick, "test": data}
    if method == "shnn":
        prob = adapters.StructuralProblem("fc2", data, reference=net)
        return _damaged(net), prob, patch_layer.PatchConfig(n_samples=400, epochs=2), quick
    if method == "shnn_adversarial":
        cfg = patch_layer.PatchAdvConfig(attack=AttackSpec(eps=0.05, steps=5), n_samples=200, epochs=1)
        return net, adapters.AdversarialProblem("fc2", data), cfg, {**quick, "attack_n": 100}
    raise KeyError(method)
