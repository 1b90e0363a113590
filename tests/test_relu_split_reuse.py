"""ReLU splitting whose domains keep their parent's intermediate bounds (``BabConfig.reuse_parent_bounds``, the
choice made for deep networks) stays sound and complete: on random small networks with the unsafe threshold
just below (even seeds: verified) or just above (odd seeds: a counterexample) the sampled minimum of the
margin, its verdict is the true one, as with recomputed bounds."""
from __future__ import annotations

import pytest
from _bound_nets import split_property

from nnmend.bounds.bab import BabConfig
from nnmend.properties import check


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reused_parent_bounds_give_the_true_verdict(seed: int) -> None:
    net, prop, want = split_property(seed)
    runs = {reuse: check(net, prop, config=BabConfig(split="relu", seed=seed, reuse_parent_bounds=reuse))
            for reuse in (True, False)}
    assert {r: v.status for r, v in runs.items()} == {True: want, False: want}
    if not seed % 2:
        stats = runs[True].stats["per_region"][0]
        assert stats["reuse_parent_bounds"] is True and stats["rounds"] > 1     # the root bound alone did not decide
