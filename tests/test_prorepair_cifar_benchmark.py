"""ProRepair's CIFAR-10 benchmark (issue 21): the quick run writes its records and tables."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
MODEL = ROOT / "benchmarks" / "results" / "models" / "nnrepair_cifar_poisoned.pt"


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir() or not MODEL.exists(), reason="CIFAR-10 data or the cached CIFAR CNN missing")
def test_prorepair_cifar_quick(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prorepair_cifar.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "prorepair_cifar_quick.json").read_text())
    recs = res["records"]
    assert [r.get("error") for r in recs] == [None, None]
    bd, adv = recs
    assert bd["suite"] == "backdoor" and bd["model"] == "badnets" and bd["solver"] == "closed_form"
    # the repair set is repaired, on the network as saved and reloaded; ASR cannot rise above its start by much
    assert bd["rsr_saved"] == 100.0 and bd["RSR"] == 100.0 and bd["wrong_before"] > 0
    assert 0 <= bd["asr_after"] <= 100 and bd["triggered_test_n"] > 0 and bd["test_n"] == 500
    assert abs(bd["DD"] - (bd["clean_acc_before"] - bd["clean_acc_after"])) < 1e-9
    assert adv["suite"] == "adversarial" and adv["net"] == "resnet_2b" and adv["n"] == 5
    assert adv["RSR"] == 100.0 and adv["rsr_saved"] == 100.0 and len(adv["repair_set_sha1"]) == 12
    assert all(0 <= adv[k] <= 100 for k in ("RGR", "DSR_pgd20", "DSR_pgd_transfer", "DSR_pgd20_original"))
    md = (tmp_path / "prorepair_cifar_quick.md").read_text()
    assert "QUICK" in md and "| badnets |" in md and "| resnet_2b | 4/255 | 5 | 100.0 |" in md
    assert "Deviations from the paper" in md and "r = 4/255, n = 5" in md


def test_prorepair_cifar_bad_suite_is_one_line():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prorepair_cifar.py"), "--suite", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--suite" in r.stderr


def _cell(r255, n, box, **kw):
    return {"r255": r255, "n": n, "box": box, "steps": 50, "seed": 0, "dsr_n": 50, "dgsr_n": 100, "test_n": 10000,
            "feature_box": "sound CROWN bounds" if box == "bounds" else "empirical (not a proof)",
            "proved_by_method": box == "bounds", "RSR": 100.0, "RGR": 100.0, "DD": 0.0, "seconds": 10.0, "DSR": 100.0,
            "DGSR_paper": 90.0, "DGSR_deployable": 50.0, "DGSR_original": 50.0, "original_test_accuracy": 69.0,
            "job_seconds": 12.0, **kw}


def _results(path, records):
    path.write_text(json.dumps({"benchmark": "patchpro_cifar", "environment": {"date": "d"}, "seed": 0,
                                "records": records}))
    return path


def test_patchpro_cifar_merge_joins_cells_later_file_wins(tmp_path):
    import patchpro_cifar

    a = _results(tmp_path / "a.json", [_cell(4, 50, "bounds"), _cell(4, 50, "empirical", RSR=36.0)])
    b = _results(tmp_path / "b.json", [_cell(8, 50, "empirical"), _cell(8, 50, "bounds"),
                                       _cell(4, 50, "empirical", RSR=40.0)])
    patchpro_cifar.merge([a, b], tmp_path / "out")
    res = json.loads((tmp_path / "out" / "patchpro_cifar.json").read_text())
    assert [(r["r255"], r["box"]) for r in res["records"]] == [(4, "bounds"), (4, "empirical"), (8, "bounds"),
                                                                (8, "empirical")]
    assert res["records"][1]["RSR"] == 40.0 and res["seconds"] == 48.0
    md = (tmp_path / "out" / "patchpro_cifar.md").read_text()
    assert "4 cells (joined from 2 runs)" in md and "r = 4/255, 8/255 of" in md
    assert md.count("| 8/255 | 50 |") == 2


def test_patchpro_row_matches_the_same_cell_and_its_items(tmp_path):
    import prorepair_cifar

    path = _results(tmp_path / "p.json", [_cell(4, 50, "empirical"), _cell(4, 50, "bounds", repair_set_sha1="abc"),
                                          _cell(8, 50, "bounds")])
    assert prorepair_cifar.patchpro_row(4, 50, 50, 0, "abc", path)["same_items"] == "fingerprint"
    assert prorepair_cifar.patchpro_row(4, 50, 50, 0, "xyz", path)["same_items"] is False
    assert prorepair_cifar.patchpro_row(8, 50, 50, 0, "xyz", path)["same_items"] == "seeded call"
    assert prorepair_cifar.patchpro_row(4, 100, 50, 0, "abc", path) is None
    assert prorepair_cifar.patchpro_row(4, 50, 200, 0, "abc", path) is None
    assert prorepair_cifar.patchpro_row(4, 50, 50, 0, "abc", tmp_path / "none.json") is None
