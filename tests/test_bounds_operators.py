"""Soundness of every operator's relaxation, by sampling (parametrised over the operator table).

For each case of ``_operator_cases.CASES`` (every operator, every attribute variant), in float32 and
float64, random boxes and specifications: 10^5 sampled points per case (half box vertices, a quarter
face points, the rest uniform) plus projected gradient descent towards each bound of each row never leave
the bounds of IBP, CROWN (three intermediate modes) or alpha-CROWN; CROWN is never looser than IBP.
"""
from __future__ import annotations

import pytest
import torch

from nnmend.bounds import bound, crown_bounds, interval_bounds
from nnmend.bounds.operators import ALL_OPS
from nnmend.bounds.graph import compile_network

from _bound_nets import extreme_points, random_boxes
from _operator_cases import CASES, make_case

N_POINTS = 100_000
B = 2
RUNS = [("ibp", {}), ("crown", {}), ("crown", {"intermediate": "ibp"}), ("crown", {"intermediate": "forward"}),
        ("alpha-crown", {"iters": 10})]


def _points(lo: torch.Tensor, hi: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """(n, B, *shape): half vertices, a quarter points on faces (one free coordinate), a quarter uniform."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((n, *lo.shape), generator=g, dtype=lo.dtype)
    u[: n // 2] = u[: n // 2].round()
    faces = u[n // 2: 3 * n // 4].flatten(2)
    free = torch.randint(0, faces.shape[-1], faces.shape[:2], generator=g)
    keep = faces.gather(2, free.unsqueeze(-1))
    faces = faces.round().scatter(2, free.unsqueeze(-1), keep)
    u[n // 2: 3 * n // 4] = faces.reshape(u[n // 2: 3 * n // 4].shape)
    return lo + u * (hi - lo)


def check_case(name: str, dtype: torch.dtype, seed: int = 0, n_points: int = N_POINTS) -> dict:
    """Sample one case; returns ``{"points": …, "violations": …, "worst": …}`` over every method."""
    net, shape = make_case(name, seed)
    net = net.to(dtype)
    lo, hi = random_boxes(shape, B, seed, dtype)
    with torch.no_grad():
        n_out = net(lo).flatten(1).shape[1]
    C = torch.randn(B, 3, n_out, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    x = _points(lo, hi, n_points, seed)
    with torch.no_grad():
        y = torch.cat([net(chunk.reshape(-1, *shape)) for chunk in x.split(20_000)]).reshape(n_points, B, n_out)
    cy = torch.cat([torch.einsum("bmo,nbo->nbm", C, y), extreme_points(net, lo, hi, C, x[:2000], steps=40)], 0)
    violations, worst = 0, 0.0
    tol_rel = 1e-5 if dtype == torch.float32 else 1e-10
    widths = {}
    for method, opts in RUNS:
        lb, ub = bound(net, lo, hi, C, method=method, **opts)
        lb, ub = lb.detach(), ub.detach()
        assert torch.isfinite(lb).all() and torch.isfinite(ub).all(), f"{name} {method}: non-finite bounds"
        tol = tol_rel * (1 + torch.max(lb.abs(), ub.abs()))
        below, above = (lb - tol - cy).clamp(min=0), (cy - ub - tol).clamp(min=0)
        violations += int((below > 0).sum() + (above > 0).sum())
        worst = max(worst, float(below.max()), float(above.max()))
        widths[f"{method}{opts.get('intermediate', '')}"] = float((ub - lb).mean())
    return {"points": int(cy.shape[0]) * B * 3, "violations": violations, "worst": worst, "widths": widths}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_relaxation_is_sound(name: str, dtype: torch.dtype) -> None:
    r = check_case(name, dtype)
    assert r["violations"] == 0, f"{name}: {r['violations']} sampled outputs outside the bounds (worst {r['worst']:.3g})"
    assert r["widths"]["crown"] <= r["widths"]["ibp"] * (1 + 1e-6) + 1e-9, f"{name}: CROWN looser than IBP"


def test_every_operator_in_the_table_has_a_case() -> None:
    covered = set()
    for name in CASES:
        net, shape = make_case(name, 0)
        covered |= {type(n) for n in compile_network(net, input_shape=shape)}
    missing = {op.__name__ for op in ALL_OPS} - {c.__name__ for c in covered}
    assert not missing, f"operators without a soundness case: {sorted(missing)}"


def test_conv_with_reflect_padding_is_not_bounded_as_zero_padding() -> None:
    """The false 'unsat' of the past: the output of a reflect-padded convolution at a point is inside its
    bounds on the point's degenerate box, which zero-padding bounds missed."""
    torch.manual_seed(0)
    for mode in ("reflect", "replicate", "circular"):
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode=mode)).eval().double()
        x = torch.rand(1, 1, 5, 5, dtype=torch.float64) + 1.0
        y = net(x).flatten(1)
        for method in ("ibp", "crown", "alpha-crown"):
            lb, ub = bound(net, x, x, method=method)
            torch.testing.assert_close(lb, y, rtol=0, atol=1e-9)
            torch.testing.assert_close(ub, y, rtol=0, atol=1e-9)


def test_refused_attributes_name_the_node() -> None:
    from torch import nn

    from nnmend.errors import ModelError

    for net, text in [(nn.Sequential(nn.Linear(2, 2), nn.LeakyReLU(2.0)), "negative_slope"),
                      (nn.Sequential(nn.Linear(2, 2), nn.ReLU6()), "ReLU6"),
                      (nn.Sequential(nn.Linear(2, 2), nn.GELU()), "GELU"),
                      (nn.Sequential(nn.Flatten(0)), "start_dim=0")]:
        with pytest.raises(ModelError, match=text):
            crown_bounds(net.eval(), torch.zeros(1, 2), torch.ones(1, 2))


def test_products_of_two_data_tensors_are_refused_when_traced() -> None:
    from torch import nn

    from nnmend.errors import ModelError

    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            h = self.fc(x)
            return h * h

    with pytest.raises(ModelError, match="not linear"):
        interval_bounds(Square().eval(), torch.zeros(1, 3), torch.ones(1, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_sign_lines_hold_on_their_interval(dtype: torch.dtype) -> None:
    """``Sign``'s two lines enclose it on every interval (ends at and around 0, the point 0 itself included),
    and its interval is the signs of the ends (CROWN above takes the tighter of IBP and CROWN, so the lines
    are checked here directly)."""
    from nnmend.bounds.operators.nonlinear import BoundSign
    from nnmend.layers_math import Sign

    g = torch.Generator().manual_seed(0)
    ends = torch.cat([torch.randn(400, 2, generator=g, dtype=dtype), torch.tensor([[0.0, 1.0], [-2.0, 0.0], [0.0, 0.0],
                                                                                   [-1e-6, 3.0], [-3.0, 1e-6]], dtype=dtype)])
    lo, hi = ends.min(1).values, ends.max(1).values
    op = BoundSign(Sign(), "sign")
    a_l, b_l, a_u, b_u = op.lines(lo, hi)
    t = torch.cat([torch.rand(len(lo), 2000, generator=g, dtype=dtype), torch.tensor([[0.0, 1.0]], dtype=dtype).expand(len(lo), 2)], 1)
    x = torch.min(torch.max(lo[:, None] + t * (hi - lo)[:, None], lo[:, None]), hi[:, None])
    x = torch.cat([x, torch.zeros_like(lo)[:, None].where(((lo <= 0) & (hi >= 0))[:, None], lo[:, None])], 1)
    f = torch.sign(x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (a_l[:, None] * x + b_l[:, None] <= f + tol).all()
    assert (a_u[:, None] * x + b_u[:, None] >= f - tol).all()
    ilo, ihi = op.interval((lo, hi))
    assert (ilo[:, None] <= f).all() and (f <= ihi[:, None]).all()
    assert ((a_l > 0) | (a_u > 0)).any()                          # the lines are not all constants
