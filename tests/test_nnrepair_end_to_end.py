"""NNrepair end to end: the benchmark's quick mode and the ``nnmend repair --method nnrepair`` command."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnmend.cli import main as cli_main
from nnmend.io import load_network

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow   # 30 CPU s measured
def test_nnrepair_benchmark_quick(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nnrepair.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "nnrepair_quick.json").read_text())
    assert len(res["records"]) == 2
    md = (tmp_path / "nnrepair_quick.md").read_text()
    assert "paper Test Δ" in md and "FGSM orig → rep" in md


def test_cli_repair_nnrepair_writes_a_loadable_composite(tmp_path, capsys):
    out = tmp_path / "fixed.pt"
    # the harness measures it: this repair costs clean accuracy beyond the default 2 pp and does not remove the
    # backdoor, so it is refused unless asked for (the verdict comes first either way)
    args = ["repair", "mnist_poisoned", "--method", "nnrepair", "--layer", "last", "--scenario", "poisoned",
            "--limit", "2000", "--out", str(out)]
    rc = cli_main(args)
    first = capsys.readouterr().out
    assert rc in (0, 1) and first.startswith(("OK", "FAILED")) and "nnrepair: rsr" in first
    if rc == 1:
        assert not out.exists() and "--keep-failed writes it anyway" in first
        assert cli_main(args + ["--keep-failed"]) == 1
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["method"] == "nnrepair" and report["evaluation"]
    net = load_network(out)
    x = torch.rand(4, 1, 28, 28)
    assert net(x).shape == (4, 10)
    printed = capsys.readouterr().out
    assert "expert" in printed and str(out) in printed


def test_cli_repair_unknown_model_is_a_clear_error(tmp_path, capsys):
    rc = cli_main(["repair", str(tmp_path / "missing.pt"), "--method", "nnrepair", "--out", str(tmp_path / "o.pt")])
    assert rc != 0
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()
