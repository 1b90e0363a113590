"""The VNN-LIB 2.0 conformance adapter (benchmarks/vnnlib_satisfactory.py) in its quick mode: every case gets an
outcome, nothing is wrong, and the refusals name their reason."""
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("vnntest")
pytest.importorskip("vnnlib")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "vnnlib_satisfactory.py"


def _load():
    spec = importlib.util.spec_from_file_location("vnnlib_satisfactory_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_quick_run_writes_results_with_no_wrong_answer(tmp_path):
    bench = _load()
    bench.main(["--quick", "--results", str(tmp_path)])
    payload = json.loads((tmp_path / "vnnlib_satisfactory_quick.json").read_text())
    s = payload["summary"]
    assert s["cases"] == len(bench.QUICK_CATEGORIES) == len(payload["records"])
    assert s["wrong"] == 0
    assert s["right"] + s["refused"] + s["undecided"] + s["error"] == s["cases"]
    assert s["parsed"] == s["cases"]
    by_case = {r["case"].split("/")[0]: r for r in payload["records"]}
    for category in ("relu", "add", "hidden", "network_multiple", "multi_io", "arithmetic_lin"):
        assert by_case[category]["outcome"] == "right", by_case[category]
    assert (tmp_path / "vnnlib_satisfactory_quick.md").read_text().startswith("# VNN-LIB 2.0 conformance")


def test_solver_mode_speaks_the_suites_calling_convention(tmp_path, capsys):
    bench = _load()
    jobs = bench.build_cases(tmp_path, "relu")
    job = next(j for j in jobs if j["case"].endswith("relu01"))
    with pytest.raises(SystemExit) as done:
        bench.main(["verify", job["vnnlib"], "--network", f"N={job['onnx']}", "--timeout", "30"])
    assert done.value.code == 0
    assert capsys.readouterr().out.splitlines()[0] == job["expected"]
    with pytest.raises(SystemExit) as done:
        bench.main(["supports", "--onnx-operators"])
    assert done.value.code == 1                  # not implemented: the suite then runs every case
