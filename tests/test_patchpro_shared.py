"""Shared pieces of provable repair (used by PatchPro and ProRepair): metrics, PGD repair sets, MNIST models."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnmend.data import load_dataset
from nnmend.errors import DataError, RepairError
from nnmend.nets import pretrained
from nnmend.properties import LocalRobustness
from nnmend.repair import provable_metrics as pm
from nnmend.repair.repair_sets import build_repair_set, collect_adversarial_iterates


class _Const(nn.Module):
    """Predicts class ``k`` for inputs whose first value is below 0.5, else class ``j``."""

    def __init__(self, k: int = 0, j: int = 1):
        super().__init__()
        self.k, self.j = k, j
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        first = x.flatten(1)[:, :1]
        out = torch.zeros(len(x), 3) + self.w
        out[:, self.k] += (first < 0.5).float().squeeze(1) * 2
        out[:, self.j] += (first >= 0.5).float().squeeze(1) * 2
        return out


def test_rates_and_drawdowns_by_hand():
    net = _Const(0, 1)
    x = torch.tensor([[0.1, 0], [0.9, 0], [0.2, 0], [0.7, 0]])
    y = torch.tensor([0, 1, 1, 1])
    assert pm.repair_success_rate(net, x, y) == pytest.approx(75.0)
    assert pm.repair_generalization_rate(net, x, y) == pytest.approx(75.0)
    other = _Const(2, 1)                                    # wrong on inputs < 0.5
    assert pm.drawdown(net, other, x, y) == pytest.approx(75.0 - 50.0)
    assert pm.fidelity_drawdown(net, other, x) == pytest.approx(50.0)
    assert pm.fidelity_drawdown(net, net, x, decision="argmin") == 0.0
    with pytest.raises(DataError):
        pm.repair_success_rate(net, x, y[:3])


def test_dsr_counts_an_attack_that_succeeds():
    net = _Const(0, 1)
    x = torch.tensor([[0.45, 0.0], [0.1, 0.0]])
    y = torch.tensor([0, 0])

    def push(model, xs, ys, eps):                           # moves the first value up by eps
        return (xs + torch.tensor([eps, 0.0])).clamp(0, 1)

    assert pm.defense_success_rate(net, x, y, 0.1, attack=push) == pytest.approx(50.0)
    assert pm.defense_generalization_rate(net, net, x, y, 0.1, attack=push) == pytest.approx(50.0)


def test_pretrained_patchpro_models_are_small_and_accurate():
    test = load_dataset("mnist", "test", limit=1000)
    for name, arch_params in (("fnn_small", 784 * 50), ("fnn_big", 784 * 200), ("cnn_small", 3136 * 100)):
        net = pretrained(name)
        assert sum(p.numel() for p in net.parameters()) > arch_params
        assert net.nnmend_meta["arch"] == name
        acc = (net(test.x).argmax(1) == test.y).float().mean().item()
        assert acc > 0.93, (name, acc)


def test_repair_set_follows_the_protocol():
    net = pretrained("fnn_small")
    pool = load_dataset("mnist", "train", limit=400)
    rs = build_repair_set(net, pool, n=6, radius=0.1, start=0, steps=60, chunk=100)
    assert len(rs) == 6 and rs.test_x.shape == (60, 1, 28, 28) and rs.test_y.shape == (60,)
    with torch.no_grad():
        assert (net(rs.origins).argmax(1) == rs.labels).all()                   # origins are correct
        assert (net(rs.repair_x).argmax(1) != rs.labels).all()                  # samples are adversarial
        assert (net(rs.test_x).argmax(1) != rs.test_y).all()
        assert (net(rs.repair_x).argmax(1) == rs.wrong).all()
    # every sample lies in its origin's clipped ball
    lo, hi = rs.boxes()
    assert ((rs.repair_x >= lo - 1e-6) & (rs.repair_x <= hi + 1e-6)).all()
    held = rs.test_x.reshape(6, 10, 1, 28, 28)
    assert ((held >= lo[:, None] - 1e-6) & (held <= hi[:, None] + 1e-6)).all()
    # held-out samples are distinct from each other and from the repair sample
    flat = torch.cat([held, rs.repair_x[:, None]], 1).flatten(2)
    for i in range(6):
        assert len(torch.unique(flat[i], dim=0)) == 11
    props = rs.properties()
    assert isinstance(props[0], LocalRobustness) and props[0].eps == 0.1
    # seeded: the same call gives the same set; nested subsets
    again = build_repair_set(net, pool, n=6, radius=0.1, start=0, steps=60, chunk=100)
    assert torch.equal(again.repair_x, rs.repair_x)
    assert torch.equal(rs.subset(3).test_x, rs.test_x[:30])


def test_repair_set_reports_an_exhausted_pool():
    net = pretrained("fnn_small")
    pool = load_dataset("mnist", "train", limit=30)
    with pytest.raises(RepairError, match="need n=50"):
        build_repair_set(net, pool, n=50, radius=0.05, start=0, steps=20)


def test_collect_iterates_keeps_only_misclassified():
    net = pretrained("fnn_small")
    pool = load_dataset("mnist", "train", limit=20)
    found, count = collect_adversarial_iterates(net, pool.x, pool.y, 0.1, keep=3, steps=30)
    for i in range(len(pool.y)):
        if count[i]:
            assert (net(found[i, :count[i]]).argmax(1) != pool.y[i]).all()
