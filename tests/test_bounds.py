"""Soundness and tightness of nnmend.bounds, checked by sampling (the most important tests of the package).

For random networks covering every supported layer (MLP with BatchNorm/Dropout/Identity, CNN with
ElementwiseAffine/Conv2d/BatchNorm2d, SumOfNetworks base + nested patches), random boxes and random
specification matrices C, in float32 and float64: 20,000 points per box (half of them box vertices,
where a ReLU network's extremes tend to sit), plus the points that 60 steps of projected gradient descent
reach from the best samples for every row and sign, never leave [lb, ub] of any method.
"""
from __future__ import annotations

import pytest
import torch

from nnmend.bounds import METHODS, alpha_crown_bounds, bound, crown_bounds, interval_bounds

from _bound_nets import NETS, extreme_points, random_boxes, sample_box

N_POINTS = 20_000
B = 3


def _tol(dtype: torch.dtype, scale: torch.Tensor) -> torch.Tensor:
    # rounding only: ~1e-5 relative in float32, ~1e-10 in float64
    return (1e-5 if dtype == torch.float32 else 1e-10) * (1 + scale.abs())


@pytest.mark.slow   # 13-35 CPU s per case (sampling at every layer), measured under load
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(NETS))
def test_no_sampled_output_leaves_the_bounds(name: str, dtype: torch.dtype) -> None:
    for seed in range(2):
        net, shape = NETS[name](seed)
        net = net.to(dtype)
        lo, hi = random_boxes(shape, B, seed, dtype)
        n_out = net(lo).shape[1]
        C = torch.randn(B, 4, n_out, dtype=dtype, generator=torch.Generator().manual_seed(seed))
        x = sample_box(lo, hi, N_POINTS, seed)
        with torch.no_grad():
            y = net(x.reshape(-1, *shape)).reshape(N_POINTS, B, n_out)
        cy = torch.einsum("bmo,nbo->nbm", C, y)
        ext = extreme_points(net, lo, hi, C, x)                       # gradient-refined extremes
        cy = torch.cat([cy, ext], 0)
        runs = [(m, {}) for m in METHODS] + [("crown", {"intermediate": "ibp"}), ("crown", {"intermediate": "forward"})]
        for method, opts in runs:
            lb, ub = bound(net, lo, hi, C, method=method, **opts)
            lb, ub = lb.detach(), ub.detach()
            assert lb.shape == ub.shape == (B, 4)
            tol = _tol(dtype, torch.max(lb.abs(), ub.abs()))
            assert (cy >= lb - tol).all(), f"{name} {method} {opts}: a sample is below the lower bound"
            assert (cy <= ub + tol).all(), f"{name} {method} {opts}: a sample is above the upper bound"
            # and the bounds are not vacuous: the sampled range lies inside, and the width is finite
            assert torch.isfinite(lb).all() and torch.isfinite(ub).all()


@pytest.mark.parametrize("name", sorted(NETS))
def test_crown_no_looser_than_ibp_and_alpha_no_looser_than_crown(name: str) -> None:
    for seed in range(3):
        net, shape = NETS[name](seed)
        net = net.double()
        lo, hi = random_boxes(shape, B, seed + 10, torch.float64)
        il, iu = interval_bounds(net, lo, hi)
        cl, cu = crown_bounds(net, lo, hi)
        al, au = alpha_crown_bounds(net, lo, hi, iters=10)
        tol = 1e-9 * (1 + il.abs() + iu.abs())
        assert (cl >= il - tol).all() and (cu <= iu + tol).all(), f"{name}: CROWN looser than IBP"
        assert (al >= cl - tol).all() and (au <= cu + tol).all(), f"{name}: alpha-CROWN looser than CROWN"
        assert (cu - cl).mean() < (iu - il).mean()


def test_identity_spec_and_batched_spec_agree() -> None:
    net, shape = NETS["mlp"](0)
    lo, hi = random_boxes(shape, B, 0, torch.float32)
    C = torch.randn(3, 5)
    l1, u1 = crown_bounds(net, lo, hi, C)
    l2, u2 = crown_bounds(net, lo, hi, C.expand(B, 3, 5))
    assert torch.allclose(l1, l2) and torch.allclose(u1, u2)
    l3, u3 = crown_bounds(net, lo, hi)
    assert l3.shape == (B, 5)


def test_sum_of_networks_is_bounded_symbolically() -> None:
    """Adding the linear forms before concretising is tighter than adding the branches' intervals,
    and exact when branches cancel (f + (-f) = 0 for an affine f)."""
    from torch import nn

    from nnmend.layers import ElementwiseAffine, SumOfNetworks

    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(4, 7), nn.Linear(7, 3))
    neg = nn.Sequential(f, ElementwiseAffine(-torch.ones(3), torch.zeros(3)))
    zero = SumOfNetworks(f, neg).eval()
    lo, hi = -torch.ones(2, 4), torch.ones(2, 4)
    l, u = crown_bounds(zero.double(), lo.double(), hi.double())
    assert (u - l).abs().max() < 1e-12
    il, iu = interval_bounds(zero.double(), lo.double(), hi.double())
    assert (iu - il).min() > 0.1

    net, shape = NETS["patched"](1)
    sum_node = net[0].double()
    lo, hi = random_boxes(shape, B, 3, torch.float64)
    l, u = crown_bounds(sum_node, lo, hi)
    parts = [crown_bounds(b, lo, hi) for b in sum_node.branches]
    assert (l >= sum(p[0] for p in parts) - 1e-9).all() and (u <= sum(p[1] for p in parts) + 1e-9).all()


def test_bounds_are_differentiable_in_the_parameters() -> None:
    """autograd gradient of the bounds w.r.t. a weight matches central finite differences (float64)."""
    net, shape = NETS["patched"](2)
    net = net.double()
    lo, hi = random_boxes(shape, 2, 5, torch.float64)
    C = torch.randn(2, 3, dtype=torch.float64)
    w = net[0].branches[1][2].weight          # a patch layer, as a repair method would train it
    for fn in (lambda: crown_bounds(net, lo, hi, C), lambda: interval_bounds(net, lo, hi, C)):
        lb, ub = fn()
        (g,) = torch.autograd.grad(lb.sum() - 0.5 * ub.sum(), w)
        h = 1e-6
        for idx in [(0, 0), (3, 5), (7, 9)]:
            with torch.no_grad():
                w[idx] += h
                lp, up = fn()
                w[idx] -= 2 * h
                lm, um = fn()
                w[idx] += h
            fd = ((lp.sum() - 0.5 * up.sum()) - (lm.sum() - 0.5 * um.sum())) / (2 * h)
            assert abs(fd - g[idx]) < 1e-5 * (1 + abs(fd)), (idx, fd, g[idx])
    lb, _ = alpha_crown_bounds(net, lo, hi, C, iters=5)
    (g,) = torch.autograd.grad(lb.sum(), w)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_input_gives_clear_errors() -> None:
    from torch import nn

    from nnmend.errors import DataError, ModelError, NnmendError

    net = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.GELU())).eval()
    with pytest.raises(ModelError, match=r"1\.0.*GELU"):
        crown_bounds(net, torch.zeros(1, 3), torch.ones(1, 3))
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with pytest.raises(ModelError, match="training mode"):
        crown_bounds(bn, torch.zeros(1, 3), torch.ones(1, 3))
    ok = nn.Sequential(nn.Linear(3, 4)).eval()
    with pytest.raises(DataError, match="empty box"):
        crown_bounds(ok, torch.ones(1, 3), torch.zeros(1, 3))
    with pytest.raises(DataError, match="same shape"):
        crown_bounds(ok, torch.zeros(1, 3), torch.ones(2, 3))
    with pytest.raises(NnmendError, match="method"):
        bound(ok, torch.zeros(1, 3), torch.ones(1, 3), method="exact")


def test_bounds_are_exact_where_the_relaxation_is_exact() -> None:
    """Catches bounds that are too tight, which sampling may miss when bounds are loose:
    affine networks are bounded exactly, and the upper bound of a ReLU layer's output is exact."""
    from torch import nn

    from nnmend.layers import ElementwiseAffine

    torch.manual_seed(3)
    affine = nn.Sequential(ElementwiseAffine(torch.randn(1, 1, 1), torch.randn(1, 1, 1)), nn.Conv2d(1, 3, 3, stride=2),
                           nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(27, 4)).eval().double()
    with torch.no_grad():
        affine[2].running_var.uniform_(0.5, 2.0)
    lo, hi = random_boxes((1, 7, 7), 2, 0, torch.float64)
    f0 = affine(torch.zeros(1, 1, 7, 7, dtype=torch.float64))[0]
    J = torch.autograd.functional.jacobian(lambda x: affine(x[None])[0], torch.zeros(1, 7, 7, dtype=torch.float64)).reshape(4, -1)
    mid, rad = ((hi + lo) / 2).flatten(1), ((hi - lo) / 2).flatten(1)
    exact_lo, exact_hi = mid @ J.T + f0 - rad @ J.abs().T, mid @ J.T + f0 + rad @ J.abs().T
    for method in ("crown", "alpha-crown"):          # IBP is exact only layer by layer
        lb, ub = bound(affine, lo, hi, method=method)
        assert torch.allclose(lb, exact_lo, atol=1e-9) and torch.allclose(ub, exact_hi, atol=1e-9), method

    layer = nn.Sequential(nn.Linear(5, 30), nn.ReLU()).eval().double()
    lo, hi = random_boxes((5,), 4, 1, torch.float64)
    W, b = layer[0].weight, layer[0].bias
    mid, rad = (hi + lo) / 2, (hi - lo) / 2
    exact_hi = torch.relu(mid @ W.T + b + rad @ W.abs().T)
    for method in METHODS:
        _, ub = bound(layer, lo, hi, method=method)
        assert torch.allclose(ub, exact_hi, atol=1e-9), method


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_batch_of_mixed_boxes_gets_each_box_its_own_bounds(name: str) -> None:
    """Boxes of very different widths in one batch (unstable counts from none to all, grouped by count
    inside ``intermediate_bounds``) get exactly the bounds each gets alone."""
    net, shape = NETS[name](0)
    net = net.double()
    lo, hi = random_boxes(shape, 1, 0, torch.float64)
    centre = (lo + hi) / 2
    radii = torch.tensor([0.0, 1e-4, 1e-2, 0.1, 0.3, 1.0, 3.0], dtype=torch.float64)
    blo = centre - radii.reshape(-1, *[1] * len(shape)) * (hi - lo)
    bhi = centre + radii.reshape(-1, *[1] * len(shape)) * (hi - lo)
    C = torch.randn(3, net(blo[:1]).shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lb, ub = crown_bounds(net, blo, bhi, C)
    for i in range(len(radii)):
        lb1, ub1 = crown_bounds(net, blo[i:i + 1], bhi[i:i + 1], C)
        torch.testing.assert_close(lb[i:i + 1], lb1, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(ub[i:i + 1], ub1, rtol=1e-9, atol=1e-9)


def test_alpha_crowns_adam_step_is_torchs_adam() -> None:
    from nnmend.bounds.optimized import _adam_step

    torch.manual_seed(0)
    p1 = torch.randn(7, requires_grad=True)
    p2, m, v = p1.detach().clone(), torch.zeros(7), torch.zeros(7)
    opt = torch.optim.Adam([p1], lr=0.1)
    for t in range(1, 8):
        g = torch.randn(7)
        opt.zero_grad()
        p1.grad = g.clone()
        opt.step()
        _adam_step(p2, g, m, v, t, 0.1)
    torch.testing.assert_close(p1.detach(), p2, rtol=0, atol=1e-7)
