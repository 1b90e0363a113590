"""The Ray executor on a local Ray started on loopback: the same grid gives the same records as inline."""
from __future__ import annotations

import pytest

from nnmend.campaign import Store, parse_grid, run_campaign
from nnmend.campaign.executors import ray_available

from test_campaign import FAULT_GRID, _plain

pytestmark = pytest.mark.skipif(not ray_available(), reason="ray is not installed (optional extra: pip install ray)")


@pytest.mark.slow          # a local Ray (raylet, GCS, one worker importing torch): 20-40 s on a busy 2-core machine
def test_ray_local_matches_inline(tmp_path):
    grid = parse_grid({**FAULT_GRID, "seeds": [0]})
    run_campaign(grid, tmp_path / "inline.sqlite", progress_bar=False)
    summary = run_campaign(grid, tmp_path / "ray.sqlite", executor="ray", workers=1, progress_bar=False)
    assert (summary.ran, summary.failed) == (1, 0)
    with Store(tmp_path / "inline.sqlite") as a, Store(tmp_path / "ray.sqlite") as b:
        assert _plain(a.records()) == _plain(b.records())
    again = run_campaign(grid, tmp_path / "ray.sqlite", executor="ray", workers=1, progress_bar=False)
    assert (again.ran, again.skipped) == (0, 1)          # resumed: nothing to run, Ray is not even needed
