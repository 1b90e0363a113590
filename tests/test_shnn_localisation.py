"""The SHNN localisation benchmark on a CIFAR ResNet (--quick): damage is localised and a patch is trained."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp"


@pytest.mark.skipif(not (VNNCOMP / "sri_resnet_a_2022").exists(), reason="needs ../shared/data/vnncomp (the ResNet)")
def test_shnn_localisation_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("shnn_localisation", ROOT / "benchmarks" / "shnn_localisation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    recs = json.loads((tmp_path / "shnn_localisation_quick.json").read_text())["records"]
    assert len(recs) == 4 and {r["fault"] for r in recs} == {"zero", "gaussian"}
    assert all(r["damaged"] < r["clean"] for r in recs)            # the damage hurts
    # whole-layer zero / Gaussian faults are found at the damaged layer by the paper's rule
    assert all(r["localized_first"] == r["layer"] for r in recs)
    healed = [r for r in recs if "healed" in r]
    assert len(healed) == 2 and all(r["healed"] >= r["damaged"] for r in healed)
    md = (tmp_path / "shnn_localisation_quick.md").read_text()
    assert "| **all** | **4/4** |" in md and "sri_resnet_a" in md
