import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_shnn_benchmark_quick(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shnn.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "shnn_quick.json").read_text())
    recs = res["records"]
    assert res["environment"]["torch"].startswith("2.13") and res["seconds"] > 0
    structural = [x for x in recs if x["kind"] in ("zero", "gaussian")]
    assert len(structural) == 2 and all(x["localized_layer"] == x["layer"] for x in structural)
    assert all(x["healed_accuracy"] > x["damaged_accuracy"] + 0.3 for x in structural)
    adv = [x for x in recs if x["kind"] == "FGSM"]
    assert len(adv) == 1 and 0 <= adv[0]["replay_accuracy_100"] <= 1
    md = (tmp_path / "shnn_quick.md").read_text()
    assert "Table XIII" in md and "| mnist | zero | 97.3 | 9.9 | 94.8 |" in md
