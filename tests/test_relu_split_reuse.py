"""ReLU splitting whose domains keep their parent's intermediate bounds (``BabConfig.reuse_parent_bounds``, the
choice made for deep networks) stays sound and complete: on random small networks with the unsafe threshold
just below (even seeds: verified) or just above (odd seeds: a counterexample) the sampled minimum of the
margin, its verdict is the true one, as with recomputed bounds."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nnmend.bounds.bab import BabConfig
from nnmend.properties import Box, SafetyProperty, check


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reused_parent_bounds_give_the_true_verdict(seed: int) -> None:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2)).eval()
    x, eps = torch.rand(3), 0.3
    t = torch.linspace(0, 1, 61)
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        margin = net(x - eps + 2 * eps * grid) @ torch.tensor([1.0, -1.0])
    lo_m, span = float(margin.min()), float(margin.max() - margin.min())
    c = lo_m + (0.02 if seed % 2 else -0.05) * span
    prop = SafetyProperty([Box(x - eps, x + eps, [(torch.tensor([[1.0, -1.0]]), torch.tensor([c]))])], "random")
    runs = {reuse: check(net, prop, config=BabConfig(split="relu", seed=seed, reuse_parent_bounds=reuse))
            for reuse in (True, False)}
    want = "falsified" if seed % 2 else "verified"
    assert {r: v.status for r, v in runs.items()} == {True: want, False: want}
    if not seed % 2:
        stats = runs[True].stats["per_region"][0]
        assert stats["reuse_parent_bounds"] is True and stats["rounds"] > 1     # the root bound alone did not decide
