"""The NCA benchmark's --quick mode runs end to end and writes its JSON / Markdown / plot."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


@pytest.mark.slow   # 118 CPU s measured
def test_nca_benchmark_quick(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "nca.py"
    spec = importlib.util.spec_from_file_location("nca_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "nca_quick.json").read_text())
    # 2 of the full grid's 162 cases on this layer: labelled partial
    assert saved["status"] == "partial" and len(saved["records"]) == 2
    rec = saved["records"][0]
    for m in ("none", "mean", "biharmonic", "soft_impute", "replica_blind", "nca_blind", "nca_informed"):
        assert 0.0 <= rec["accuracy"][m] <= 1.0
    assert 0.0 <= rec["auroc_nca_blind"] <= 1.0
    assert saved["layers"][0]["storage"]["rule_bytes"] > 0 and "stability" in saved["layers"][0]
    assert (tmp_path / "nca_quick.md").read_text().startswith("# NCA weight repair")
    assert (tmp_path / "nca_quick.png").stat().st_size > 0
    assert res["grid"]["fractions"] == [0.3, 0.9]
    md = (tmp_path / "nca_quick.md").read_text()
    assert "| small_mlp_mnist/fc2 | 2 of 162 | [0] | scatter×zero | 0.3, 0.9 |" in md
    assert "Where NCA beats every no-data baseline" in md
    # --resume with the same (cached) rule keeps the records and reruns nothing
    again = bench.main(["--quick", "--out", str(tmp_path), "--resume"])
    assert len(again["records"]) == 2 and again["records"][0]["rule_id"] == rec["rule_id"]
    assert again["layers"][0]["stability"] == saved["layers"][0]["stability"]
    # records of the same rule parameters under an older calibration: baselines kept, only NCA rerun
    old = json.loads((tmp_path / "nca_quick.json").read_text())
    for r in old["records"]:
        r["rule_id"] = r.pop("params_id")
        r["accuracy"]["nca_informed"] = -1.0
        r["accuracy"]["mean"] = 0.123                      # a baseline value that must survive untouched
    old["layers"][0]["rule_id"] = "older-calibration"
    (tmp_path / "nca_quick.json").write_text(json.dumps(old))
    fresh = bench.main(["--quick", "--out", str(tmp_path), "--resume", "--no-stability"])
    assert len(fresh["records"]) == 2
    for r in fresh["records"]:
        assert r["nca_rerun"] and r["accuracy"]["mean"] == 0.123 and r["accuracy"]["nca_informed"] >= 0.0
        assert r["rule_id"] == rec["rule_id"]
    # runs made in parallel merge into one result
    other = tmp_path / "other"
    other.mkdir()
    (other / "nca_quick.json").write_text(json.dumps(saved))
    merged = bench.main(["--quick", "--out", str(tmp_path), "--merge", str(tmp_path / "nca_quick.json"),
                         str(other / "nca_quick.json")])
    assert merged["merged_from"] == 2 and len(merged["records"]) == 2
    assert all(r["accuracy"]["mean"] != 0.123 for r in merged["records"])   # the later file's records win
