"""Convolutional intermediate bounds by patches equal the dense back-substitution's; bounds computed without
an autograd graph equal the differentiable ones; both are sound on sampled points."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnmend.bounds import backward, crown_bounds, patches
from nnmend.bounds.graph import compile_network
from nnmend.bounds.interval import interval_pass
from nnmend.layers import SumOfNetworks


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    res = SumOfNetworks(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1), nn.ReLU(), nn.Conv2d(4, 4, 3, 1, 1)),
                        nn.Conv2d(4, 4, 1, 1, 0))
    return nn.Sequential(nn.Conv2d(2, 4, 3, 2, 1), nn.ReLU(), res, nn.ReLU(),
                         nn.Conv2d(4, 6, 3, 1, 2, dilation=2, groups=2), nn.LeakyReLU(0.1),
                         nn.Conv2d(6, 4, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)).eval()


def _pre(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = compile_network(net)
    interval_pass(g, lo, hi)
    return list(backward.intermediate_bounds(g, lo, hi).values())


@pytest.mark.parametrize("seed", [0, 1])
def test_patches_equal_dense_intermediate_bounds(seed, monkeypatch):
    net = _net(seed)
    x = torch.rand(3, 2, 13, 13)
    lo, hi = x - 0.2, x + 0.2
    used = []
    real = patches.onehot_bounds
    monkeypatch.setattr(patches, "onehot_bounds", lambda *a: used.append(1) or real(*a))
    with torch.no_grad():
        fast = _pre(net, lo, hi)
        assert used, "the patches path was not taken"
        monkeypatch.setattr(patches, "applicable", lambda g, at: False)
        slow = _pre(net, lo, hi)
    assert any(bool((u - l).gt(0).any()) for l, u in slow)
    for (l1, u1), (l2, u2) in zip(fast, slow):
        torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(u1, u2, atol=1e-5, rtol=1e-5)


def test_no_grad_bounds_equal_differentiable_and_sound():
    net = _net(2)
    x = torch.rand(4, 2, 13, 13)
    lo, hi = x - 0.1, x + 0.1
    lb, ub = crown_bounds(net, lo, hi)
    assert lb.requires_grad                      # the parameters require grad: differentiable
    with torch.no_grad():
        lb0, ub0 = crown_bounds(net, lo, hi)
    assert not lb0.requires_grad
    torch.testing.assert_close(lb.detach(), lb0)
    torch.testing.assert_close(ub.detach(), ub0)
    pts = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand(4, 500, *lo.shape[1:])
    pts[:, :2] = torch.stack([lo, hi], 1)
    with torch.no_grad():
        y = net(pts.flatten(0, 1)).reshape(4, 500, -1)
    assert bool((y >= lb0.unsqueeze(1) - 1e-5).all()) and bool((y <= ub0.unsqueeze(1) + 1e-5).all())


def test_differentiable_false_and_small_budget_give_the_same_bounds():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(8, 6)
    lb, ub = crown_bounds(net, x - 0.3, x + 0.3)
    lb0, ub0 = crown_bounds(net, x - 0.3, x + 0.3, differentiable=False, memory_budget=4096)
    assert lb.requires_grad and not lb0.requires_grad
    torch.testing.assert_close(lb.detach(), lb0)
    torch.testing.assert_close(ub.detach(), ub0)
