"""benchmarks/harness_attacks.py --quick: the harness's per-attack figures are recorded and the joint one is their minimum."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow   # 15 CPU s measured, about 80 s of wall time on a loaded 2-core host
def test_harness_attacks_benchmark_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "harness_attacks.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((tmp_path / "harness_attacks_quick.json").read_text())["records"][0]
    assert "error" not in rec, rec.get("error")
    for part in ("dsr", "dgsr"):
        figures = [rec[part][k] for k in ("pgd", "transfer", "square")]
        assert rec[part]["robust_accuracy"] <= min(figures)          # joint: an input counts only if every attack fails
        assert rec[part]["strongest"].split(" ")[0] in ("pgd", "transfer", "square")
    assert rec["metrics"]["dgsr"] == rec["dgsr"]["robust_accuracy"]
    assert "| fnn_small | 0.1 | 5 |" in (tmp_path / "harness_attacks_quick.md").read_text()
