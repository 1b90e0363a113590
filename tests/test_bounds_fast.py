"""Issue 24's fast paths give the same bounds as the plain ones, and the alpha-CROWN dial stays sound."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnmend.bounds import alpha_crown_bounds, crown_bounds
from nnmend.bounds import backward as bw
from nnmend.bounds.api import _prepare
from nnmend.bounds.operators.convolution import BoundConv
from nnmend.bounds.optimized import PRESETS, AlphaConfig, alpha_config

CONVS = [(nn.Conv2d(1, 16, 4, 2, 1), (1, 28, 28)), (nn.Conv2d(3, 8, 3, 2, 1), (3, 32, 32)),
         (nn.Conv2d(8, 16, 1, 2), (8, 16, 16)), (nn.Conv1d(2, 4, 3, 2, 1, dilation=2), (2, 17)),
         (nn.Conv2d(4, 6, 3, 2, 1, groups=2, padding_mode="reflect"), (4, 9, 11)),
         (nn.Conv2d(2, 4, (3, 2), 3, (1, 0), dilation=(2, 1)), (2, 13, 10)),
         (nn.Conv2d(4, 4, 3, padding="same", groups=4), (4, 7, 7)), (nn.Conv2d(1, 2, 2, 3), (1, 8, 8))]


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv_transpose_is_the_adjoint_of_the_convolution(case: int) -> None:
    """The fold path (few weights per output channel) and torch's transposed convolution are both Wᵀ."""
    torch.manual_seed(case)
    conv, shape = CONVS[case]
    op = BoundConv(conv, "c")
    x = torch.randn(3, *shape, requires_grad=True)
    y = op.linear_map(x)
    op.in_shapes, op.out_shape = [shape], tuple(y.shape[1:])
    A = torch.randn(3, 2, *y.shape[1:])
    got, _ = op.backward(A)
    ref, = torch.autograd.grad((y.unsqueeze(1) * A).sum(), x)
    assert torch.allclose(got.sum(1), ref, atol=1e-5)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, 1, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 5 * 5, 20), nn.ReLU(), nn.Linear(20, 3)).eval()


def _mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                         nn.Linear(24, 4)).eval()


def _boxes(shape, n=6, eps=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g) - 0.5
    return x - eps, x + eps


@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_jacobian_rows_give_the_dense_rows_bounds(which: str, monkeypatch) -> None:
    net, shape = (_cnn(), (1, 10, 10)) if which == "cnn" else (_mlp(), (5,))
    lo, hi = _boxes(shape)
    nodes, lo, hi = _prepare(net, lo, hi)
    fast = bw.intermediate_bounds(nodes, lo, hi, "crown")
    used = []
    monkeypatch.setattr(bw, "_jacobian", lambda *a, **k: used.append(1))     # returns None: the dense one-hot rows
    dense = bw.intermediate_bounds(nodes, lo, hi, "crown")
    assert used, "no intermediate bounds were back-substituted"
    for n in fast:
        assert torch.allclose(fast[n][0], dense[n][0], atol=1e-5) and torch.allclose(fast[n][1], dense[n][1], atol=1e-5)


def _sampled(net, lo, hi, k=4000):
    g = torch.Generator().manual_seed(3)
    pts = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand((lo.shape[0], k, *lo.shape[1:]), generator=g)
    with torch.no_grad():
        return net(pts.flatten(0, 1)).reshape(lo.shape[0], k, -1)


@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_presets_are_sound_and_ordered(which: str) -> None:
    net, shape = (_cnn(), (1, 10, 10)) if which == "cnn" else (_mlp(), (5,))
    lo, hi = _boxes(shape)
    C = torch.randn(2, 3 if which == "cnn" else 4, generator=torch.Generator().manual_seed(2))
    y = _sampled(net, lo, hi) @ C.T
    widths = []
    for bounds in (crown_bounds(net, lo, hi, C), alpha_crown_bounds(net, lo, hi, C, preset="fast"),
                   alpha_crown_bounds(net, lo, hi, C, preset="tight", iters=30 if which == "mlp" else 4)):
        lb, ub = (b.detach() for b in bounds)
        assert (y >= lb.unsqueeze(1) - 1e-5).all() and (y <= ub.unsqueeze(1) + 1e-5).all()
        widths.append(float((ub - lb).mean()))
    assert max(widths[1], widths[2]) <= widths[0] * (1 + 1e-6)
    if which == "mlp":   # the intermediate slopes pay on a deep ReLU network with wide boxes
        assert widths[2] < 0.95 * widths[1]


def test_tight_bounds_are_differentiable_in_the_parameters() -> None:
    net = _mlp()
    lo, hi = _boxes((5,), n=2)
    lb, ub = alpha_crown_bounds(net, lo, hi, preset="tight", iters=5)
    (ub - lb).sum().backward()
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()


def test_alpha_config_presets_and_overrides() -> None:
    assert alpha_config("fast") == AlphaConfig() and alpha_config("tight").intermediate
    assert alpha_config("tight", iters=7, lr=None).iters == 7
    assert alpha_config(AlphaConfig(lr=0.3), iters=2) == AlphaConfig(lr=0.3, iters=2)
    assert set(PRESETS) == {"fast", "tight"}
    with pytest.raises(ValueError, match="preset"):
        alpha_config("medium")


def test_early_stop_ends_before_the_step_cap(monkeypatch) -> None:
    from nnmend.bounds import optimized
    calls = []
    real = optimized.crown_lower
    monkeypatch.setattr(optimized, "crown_lower", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = _mlp()
    lo, hi = _boxes((5,), n=2, eps=0.01)      # small boxes: converges at once
    alpha_crown_bounds(net, lo, hi, preset=AlphaConfig(iters=200, lr=0.01, patience=3, tol=1e-3))
    assert len(calls) < 50


def test_bounds_follow_the_networks_dtype() -> None:
    """The device plumbing: boxes, specification and every intermediate tensor follow the network's parameters."""
    net = _cnn().double()
    lo, hi = _boxes((1, 10, 10))
    lb, ub = alpha_crown_bounds(net, lo, hi, torch.eye(3)[:2], preset="tight", iters=2)
    assert lb.dtype == ub.dtype == torch.float64
