"""The branch and bound's counterexample search (``nnmend.bounds.falsify``): binarised networks (Sign, whose
true gradient is zero) and softmax outputs are attacked, every answer is confirmed by the network."""
from __future__ import annotations

import copy

import torch
from torch import nn

from nnmend.bounds.falsify import falsify, objective_net
from nnmend.layers_math import Sign
from nnmend.properties import Box, SafetyProperty, check


def _binarised(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 40), Sign(), nn.Linear(40, 40), Sign(), nn.Linear(40, 3), nn.Softmax(dim=1)).eval()


def _robustness(net: nn.Module, x: torch.Tensor, eps: float) -> tuple[int, SafetyProperty]:
    with torch.no_grad():
        label = int(net(x[None]).argmax())
    eye = torch.eye(3, dtype=torch.float64)
    unsafe = [((eye[j] - eye[label])[None].neg(), torch.zeros(1, dtype=torch.float64)) for j in range(3) if j != label]
    return label, SafetyProperty([Box((x - eps).double(), (x + eps).double(), unsafe)])


def test_softmax_is_left_out_only_for_pairwise_comparisons() -> None:
    net = _binarised(0)
    pair = torch.tensor([[1.0, -1.0, 0.0], [0.0, 2.0, -2.0]])
    assert objective_net(net, pair, torch.zeros(2)) is not net            # sign of y_i - y_j is the logits'
    assert objective_net(net, pair, torch.tensor([0.0, 0.1])) is net       # a threshold is not kept by softmax
    assert objective_net(net, torch.tensor([[1.0, 0.0, 0.0]]), torch.zeros(1)) is net


def test_a_binarised_network_is_falsified_through_the_straight_through_gradient() -> None:
    """A wide box (24 inputs): the attack runs before any bound; every answer is a confirmed counterexample
    (the straight-through gradient itself: test_onnx_math)."""
    found = 0
    for seed in range(3):
        net = _binarised(seed)
        x = torch.rand(24, generator=torch.Generator().manual_seed(seed))
        label, prop = _robustness(net, x, 0.6)
        res = check(net, prop, timeout=20)
        assert res.status in ("falsified", "timeout", "unknown")
        if res.status == "falsified":
            cx, cy = res.counterexample
            box = prop.regions[0]
            assert ((cx >= box.lo) & (cx <= box.hi)).all()
            with torch.no_grad():
                y = copy.deepcopy(net).double()(cx[None])[0]
            others = torch.cat([y[:label], y[label + 1:]])
            assert torch.equal(y, cy) and bool((others >= y[label]).any())
            found += 1
    assert found >= 2


def test_falsify_starts_from_its_seeds_and_confirms_in_float64() -> None:
    """A violation only at one vertex of the box: a seed there finds it at once; none is invented elsewhere."""
    net = nn.Sequential(nn.Linear(30, 1)).eval()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-29.5)                       # y > 0 only near the all-ones vertex
    lo, hi = torch.zeros(1, 30), torch.ones(1, 30)
    C, d, groups = -torch.ones(1, 1), torch.zeros(1), torch.zeros(1, dtype=torch.long)   # unsafe: y >= 0
    spec, spec64 = (C, d, groups, 1), (C.double(), d.double(), groups, 1)
    net64 = copy.deepcopy(net).double()
    cex = falsify(net, net64, lo, hi, spec, spec64, deadline=float("inf"), budget_s=5, seeds=(hi, torch.zeros(1, dtype=torch.long)),
                  rounds=1)
    assert cex is not None and float(cex[1][0]) >= 0
    C2 = -C                                             # unsafe: y <= -31, unreachable
    none = falsify(net, net64, lo, hi, (C2, d - 31, groups, 1), (C2.double(), d.double() - 31, groups, 1),
                   deadline=float("inf"), budget_s=5, rounds=3)
    assert none is None
