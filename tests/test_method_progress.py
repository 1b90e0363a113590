"""Long repair loops report progress (terminal bar, and the workbench's listener, which also cancels there)."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _repair_cases import case  # noqa: E402

from nnmend import _progress  # noqa: E402
from nnmend.repair import get  # noqa: E402


@pytest.mark.parametrize("method, desc", [("patchpro", "patchpro: train patches"), ("nnrepair", "nnrepair: experts"),
                                          ("shnn", "heal fc2")])
def test_method_loops_report_each_step(method, desc):
    net, prob, cfg, _ = case(method)
    if method == "patchpro":
        cfg = replace(cfg, min_epochs=3)            # the tiny case converges in one epoch
    seen: list[tuple[str, int, int | None]] = []
    with _progress.listen(lambda d, done, total: seen.append((d, done, total))):
        get(method).repair(net, prob, cfg)
    steps = [(done, total) for d, done, total in seen if d == desc]
    assert steps and steps[0][0] == 0 and steps[-1][0] >= 1, seen[:5]


def test_a_listener_that_raises_stops_the_method():
    """The workbench cancels by raising from its listener: the method stops at its next step."""
    class Stop(BaseException):
        pass

    def stop(desc, done, total):
        if done >= 1:
            raise Stop

    net, prob, cfg, _ = case("patchpro")
    cfg = replace(cfg, min_epochs=3)
    with pytest.raises(Stop), _progress.listen(stop):
        get("patchpro").repair(net, prob, cfg)
