import json

import pytest

from nnmend.demo import run_demo


@pytest.mark.slow   # 139 CPU s measured
def test_demo_quick_writes_full_report(tmp_path):
    run_demo(tmp_path, seed=0, quick=True, log=lambda *_: None)
    rep = json.loads((tmp_path / "report.json").read_text())
    rows = rep["scenarios"]
    assert [r["scenario"].split()[0] for r in rows] == ["zero", "gaussian", "FGSM", "PGD"]
    for r in rows:
        for k in ("scenario", "damaged_layer", "localized_layer", "clean_accuracy", "damaged_accuracy",
                  "healed_accuracy", "recovery", "seconds"):
            assert k in r
    for r in rows[:2]:
        assert r["localized_layer"] == r["damaged_layer"]
        assert r["damaged_accuracy"] < 0.5 and r["healed_accuracy"] > r["clean_accuracy"] - 0.03
    assert rows[2]["replay_accuracy_100"] is not None and rows[3]["healed_clean_accuracy"] > 0.5
    for f in rep["figures"]:
        assert (tmp_path / f).stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "| scenario |" in md and "accuracy.png" in md
    assert rep["environment"]["torch"].startswith("2.13")
    from nnmend.io.atomic import STAGE_PREFIX, TMP_PREFIX

    assert (tmp_path / "healed_pgd.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((STAGE_PREFIX, TMP_PREFIX))]   # staged, moved, cleaned
