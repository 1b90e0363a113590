"""``nnmend verify``: VNN-COMP result lines, instance lists, and clear errors for bad files."""
from __future__ import annotations

import csv
import re

import pytest
import torch

from nnmend.cli import main

acasxu = pytest.importorskip("nnmend.acasxu")


def _paths(i: int, j: int, k: int) -> list[str]:
    return [str(acasxu.acasxu_path(i, j)), str(acasxu.acasxu_property_path(k))]


def test_verify_prints_vnncomp_lines(capsys) -> None:
    assert main(["verify", *_paths(2, 1, 2)]) == 0             # no --timeout: waits on completion
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "sat"
    values = dict(re.findall(r"\((X_\d|Y_\d) (\S+?)\)", "\n".join(out[1:])))
    assert len(values) == 10
    x = torch.tensor([float(values[f"X_{i}"]) for i in range(5)], dtype=torch.float64)
    y = acasxu.acasxu(2, 1).double()(x.reshape(1, 5))[0]
    assert torch.allclose(y, torch.tensor([float(values[f"Y_{i}"]) for i in range(5)], dtype=torch.float64), atol=1e-9)
    assert y[0] >= y[1:].max()
    assert main(["verify", *_paths(1, 1, 1)]) == 0
    assert capsys.readouterr().out.strip() == "unsat"


def test_verify_instance_list(tmp_path, capsys) -> None:
    listing = tmp_path / "instances.csv"
    listing.write_text("\n".join(",".join(_paths(*p)) + ",900" for p in [(1, 1, 1), (2, 1, 2)]) + "\n")   # far above need
    out = tmp_path / "results.csv"
    assert main(["verify", "--instances", str(listing), "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["result"] for r in rows] == ["unsat", "sat"]
    assert all(float(r["seconds"]) >= 0 for r in rows)


def test_bad_files_give_one_line_errors(tmp_path, capsys) -> None:
    onnx_path, prop = _paths(1, 1, 1)
    truncated = tmp_path / "net.onnx"
    truncated.write_bytes(acasxu.acasxu_path(1, 1).read_bytes()[:500])
    assert main(["verify", str(truncated), prop]) == 2
    assert "net.onnx" in capsys.readouterr().err
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 0.5)\n")
    assert main(["verify", onnx_path, str(bad)]) == 2
    assert "bad.vnnlib" in capsys.readouterr().err
    three = tmp_path / "three.vnnlib"
    three.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(3))
                     + "(declare-const Y_0 Real)\n(assert (>= Y_0 0))\n")
    assert main(["verify", onnx_path, str(three)]) == 2
    assert "3 inputs" in capsys.readouterr().err


def test_memory_budget_flag_sets_the_batch_and_keeps_the_answer(capsys) -> None:
    from torch import nn

    from nnmend.bounds.bab import BabConfig
    from nnmend.properties import Box, SafetyProperty, check

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)).eval()
    grid = torch.rand(20000, 2)
    with torch.no_grad():
        top = float(net(grid).max())
    prop = SafetyProperty([Box(torch.zeros(2), torch.ones(2), [(-torch.ones(1, 1), torch.tensor([-(top + 0.05)]))])])
    res = check(net, prop, None, config=BabConfig(memory_gb=1e-6))
    assert res.status == "verified" and res.stats["per_region"][0]["batch_cap"] == 1   # one box per batch
    assert main(["verify", *_paths(1, 1, 1), "--memory-gb", "0.001"]) == 0
    assert capsys.readouterr().out.strip() == "unsat"
    assert main(["verify", *_paths(1, 1, 1), "--memory-gb", "0"]) == 2
    assert "--memory-gb" in capsys.readouterr().err
