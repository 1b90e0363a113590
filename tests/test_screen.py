"""The batched first pass over all regions of a property (nnmend.bounds.screen) and its use in check()."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnmend.bounds.bab import violation
from nnmend.bounds.screen import region_violation, stack_specs
from nnmend.properties import Box, SafetyProperty, check


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def _spec(A_list, b_list):
    return (torch.cat(A_list), torch.cat(b_list),
            torch.cat([torch.full((len(b),), g, dtype=torch.long) for g, b in enumerate(b_list)]))


def test_region_violation_matches_the_unpadded_violation() -> None:
    gen = torch.Generator().manual_seed(1)
    specs = [_spec([torch.randn(2, 3, generator=gen)], [torch.randn(2, generator=gen)]),
             _spec([torch.randn(1, 3, generator=gen), torch.randn(3, 3, generator=gen)],
                   [torch.randn(1, generator=gen), torch.randn(3, generator=gen)]),
             _spec([torch.randn(1, 3, generator=gen)] * 3, [torch.randn(1, generator=gen)] * 3)]
    stacked = stack_specs(specs, torch.float64)
    y = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    idx = torch.arange(30) % 3
    got = region_violation(y, stacked, idx)
    for r, (C, d, g) in enumerate(specs):
        want = violation(y[idx == r], C.double(), d.double(), g, int(g.max()) + 1)
        assert torch.allclose(got[idx == r], want)


def _regions(net: nn.Module, n: int, unsafe_offset: float) -> list[Box]:
    """``n`` small boxes on a grid; unsafe set "y_0 >= max over the box + offset" (offset > 0: unreachable)."""
    gen = torch.Generator().manual_seed(2)
    centres = torch.rand(n, 2, generator=gen) * 2 - 1
    boxes = []
    for c in centres:
        lo, hi = c - 0.01, c + 0.01
        grid = lo + (hi - lo) * torch.rand(4000, 2, generator=gen)
        with torch.no_grad():
            top = float(net(grid)[:, 0].max())
        boxes.append(Box(lo.double(), hi.double(), [(-torch.eye(3, dtype=torch.float64)[:1],
                                                     torch.tensor([-(top + unsafe_offset)], dtype=torch.float64))]))
    return boxes


def test_many_safe_regions_are_proved_in_one_pass() -> None:
    net = _net()
    res = check(net, SafetyProperty(_regions(net, 40, 0.05)), timeout=None)
    assert res.status == "verified"
    assert res.stats["screen"]["regions"] == 40 and res.stats["screen"]["proven"] >= 1
    assert res.stats["screen"]["proven"] + len(res.stats["per_region"]) == 40   # the rest: one search each


def test_a_violated_region_among_many_is_found_and_confirmed() -> None:
    net = _net()
    boxes = _regions(net, 40, 0.05)
    bad = _regions(net, 40, -0.05)[17]                      # y_0 reaches 0.05 above this threshold
    boxes[17] = bad
    res = check(net, SafetyProperty(boxes), timeout=None)
    assert res.status == "falsified"
    x, y = res.counterexample
    assert (x >= bad.lo).all() and (x <= bad.hi).all()
    y_true = net.double()(x.reshape(1, 2))[0]
    A, b = bad.unsafe[0]
    assert bool((A @ y_true <= b).all())


@pytest.mark.parametrize("split", ["input", "relu"])
def test_the_tight_alpha_preset_decides_like_the_fast_one(split: str) -> None:
    from nnmend.bounds.bab import BabConfig

    net = _net()
    safe = SafetyProperty(_regions(net, 1, 0.05))
    unsafe = SafetyProperty(_regions(net, 1, -0.05))
    for preset in ("fast", "tight"):
        cfg = BabConfig(alpha_preset=preset, split=split)
        assert check(net, safe, None, config=cfg).status == "verified"
        assert check(net, unsafe, None, config=cfg).status == "falsified"
