"""Campaigns: grid checks before any job, one row per job in the store, resume, failures recorded, executors
agreeing, the CLI's lines and exit codes, the shipped grids."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from nnmend.campaign import GridError, Store, expand, job_key, load_grid, parse_grid, run_campaign, shipped_grid
from nnmend.campaign.job import execute, execute_noop
from nnmend.cli import main

# one cheap real cell: SHNN heals a Gaussian-damaged output layer of the small MLP (about 0.3 s once warm)
FAULT_GRID = {"name": "fault", "networks": ["small_mlp_mnist"],
              "defects": {"gauss_fc2": {"kind": "fault", "layer": "fc2", "fault": "gaussian"}},
              "methods": {"shnn": {"n_samples": 1000, "epochs": 2}}, "seeds": [0, 1], "options": {"test_n": 300}}
TIMING = ("seconds", "wall_seconds")


def _write(tmp_path: Path, data: dict, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _plain(records: list[dict]) -> dict:
    """Records by key without their timings (what must agree between executors)."""
    out = {}
    for r in records:
        metrics = {k: v for k, v in (r.get("metrics") or {}).items() if k not in TIMING}
        out[r["key"]] = {**{k: v for k, v in r.items() if k not in TIMING + ("metrics", "verdict")}, "metrics": metrics}
    return out


@pytest.mark.parametrize("patch, key", [
    ({"netwroks": []}, "netwroks: unknown key"),
    ({"networks": ["no_such_net"]}, "networks[0] (no_such_net)"),
    ({"networks": ["missing.onnx"]}, "networks[0] (missing.onnx): no such file"),
    ({"methods": {"shnn": {}, "magic": {}}}, "methods.magic: unknown method"),
    ({"methods": {"shnn": {"epochz": 3}}}, "methods.shnn.epochz: unknown option of shnn"),
    ({"defects": {"d": {"kind": "hex"}}}, "defects.d.kind: unknown defect kind"),
    ({"defects": {"d": {"kind": "fault", "layr": "fc2"}}}, "defects.d.layr: unknown field"),
    ({"defects": {"d": {"kind": "fault"}}}, "defects.d.layer: missing"),
    ({"defects": {"d": {"kind": "fault", "layer": "fc2", "fault": "melt"}}}, "defects.d.fault: unknown fault"),
    ({"defects": {"d": {"kind": "property", "property": 2}}}, "defects.d: does not apply to network small_mlp_mnist"),
    ({"methods": {"guard": {}}}, "methods.guard: cannot repair defect gauss_fc2"),
    ({"options": {"test_nn": 5}}, "options.test_nn: unknown option"),
    ({"options": {"attack": "yes"}}, "options.attack: expected bool"),
    ({"seeds": ["a"]}, "seeds: expected"),
    ({"include": [{"networks": ["acasxu_1_1"]}]}, "include[0].networks: acasxu_1_1 is not in networks"),
])
def test_bad_grid_names_its_key(tmp_path, patch, key):
    path = _write(tmp_path, {**FAULT_GRID, **patch})
    with pytest.raises(GridError) as err:
        load_grid(path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_bad_grid_cli_one_line_exit_2_before_any_job(tmp_path, capsys):
    path = _write(tmp_path, {**FAULT_GRID, "methods": {"shnn": {}, "magic": {}}})
    store = tmp_path / "s.sqlite"
    assert main(["campaign", str(path), "--store", str(store), "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "methods.magic: unknown method" in err
    assert not store.exists()
    (tmp_path / "bad.yaml").write_text("networks: [a\n")
    assert main(["campaign", str(tmp_path / "bad.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_cli_missing_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    from nnmend.campaign import executors

    monkeypatch.setattr(executors, "ray_available", lambda: False)
    store = tmp_path / "s.sqlite"
    assert main(["campaign", str(_write(tmp_path, FAULT_GRID)), "--executor", "ray", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nnmend[campaign]" in err and not store.exists()


def test_cli_refuses_store_over_grid(tmp_path, capsys):
    path = _write(tmp_path, FAULT_GRID)
    assert main(["campaign", str(path), "--store", str(path)]) == 2
    assert "refusing to overwrite the input" in capsys.readouterr().err


def test_job_keys_are_hashes_of_arguments():
    jobs = expand(parse_grid(FAULT_GRID))
    assert len(jobs) == 2 and {j["seed"] for j in jobs} == {0, 1}
    assert len({job_key(j) for j in jobs}) == 2
    assert job_key(jobs[0]) == job_key(dict(reversed(list(jobs[0].items()))))


def test_store_resume_and_failure_recorded(tmp_path):
    grid = parse_grid({**FAULT_GRID, "defects": {**FAULT_GRID["defects"],
                                                 "bad_layer": {"kind": "fault", "layer": "fc9"}}})
    store = tmp_path / "c.sqlite"
    first = run_campaign(grid, store, progress_bar=False)
    assert (first.jobs, first.ran, first.skipped, first.failed) == (4, 4, 0, 2)
    with Store(store) as s:
        recs = {(r["defect"]["name"], r["seed"]): r for r in s.records()}
    assert len(recs) == 4
    bad = recs[("bad_layer", 0)]
    assert bad["status"] == "failed" and "fc9" in bad["error"]
    good = recs[("gauss_fc2", 0)]
    assert good["status"] == "ok" and good["error"] is None and good["success"] in (True, False)
    assert good["metrics"]["accuracy"] > good["metrics"]["accuracy_before"]     # the harness measured it
    rows = sqlite3.connect(store).execute("SELECT status, success, drawdown, seconds FROM jobs").fetchall()
    assert len(rows) == 4 and sum(r[0] == "failed" for r in rows) == 2
    again = run_campaign(grid, store, progress_bar=False)           # finished jobs (failed too) never rerun
    assert (again.ran, again.skipped) == (0, 4)
    retry = run_campaign(grid, store, retry_failed=True, progress_bar=False)
    assert (retry.ran, retry.failed) == (2, 2)
    with Store(store) as s:
        assert len(s.records()) == 4


@pytest.mark.slow          # two spawned workers import torch and load MNIST: 30-60 s on a busy 2-core machine
def test_inline_and_pool_give_the_same_records(tmp_path):
    grid = parse_grid(FAULT_GRID)
    run_campaign(grid, tmp_path / "a.sqlite", executor="inline", progress_bar=False)
    run_campaign(grid, tmp_path / "b.sqlite", executor="pool", workers=2, progress_bar=False)
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        ra, rb = a.records(), b.records()
    assert len(ra) == 2 and all(r["status"] == "ok" for r in ra + rb)
    assert _plain(ra) == _plain(rb)


def test_noop_jobs_and_execute_never_raises():
    rec = execute_noop({"seed": 3, "evaluation": {}})
    assert rec["status"] == "ok" and rec["success"] is True

    def boom(**job):
        raise RuntimeError("kaput")

    rec = execute({"seed": 1}, boom)
    assert rec["status"] == "failed" and "kaput" in rec["error"]


def test_cli_end_to_end_report(tmp_path, capsys):
    path = _write(tmp_path, {**FAULT_GRID, "seeds": [0]})
    store, report = tmp_path / "s.sqlite", tmp_path / "rep"
    assert main(["campaign", str(path), "--store", str(store), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "1 jobs (0 finished before, 1 run now, 0 failed)" in out and "| shnn |" in out
    assert {"report.json", "report.md", "pareto.png"} <= {p.name for p in report.iterdir()}
    md = (report / "report.md").read_text()
    assert "| small_mlp_mnist | gauss_fc2 | shnn | 1 | 0 |" in md
    assert main(["campaign", str(path), "--store", str(store), "--report", str(report)]) == 0
    assert "1 finished before, 0 run now" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["acasxu", "mnist_robustness", "shnn_damage"])
def test_shipped_grids_parse(name):
    grid = load_grid(shipped_grid(name))
    assert expand(grid)


def test_acasxu_grid_is_the_violated_properties():
    jobs = expand(load_grid(shipped_grid("acasxu")))
    grid = load_grid(shipped_grid("acasxu"))
    assert len(grid.networks) == 45 and set(grid.methods) == {"guard", "patchpro", "prorepair"}
    cells = {(j["network"], j["defect"]["property"]) for j in jobs}
    assert len(cells) == 36 and ("acasxu_1_9", 7) in cells and ("acasxu_2_9", 8) in cells


@pytest.mark.slow          # a fresh interpreter importing torch and the harness: 15-35 s on a busy 2-core machine
def test_overhead_benchmark_quick(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "campaign_overhead.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, env={**__import__("os").environ, "NNMEND_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "campaign_overhead_quick.json").read_text())
    (row,) = res["records"]
    assert row["executor"] == "inline" and row["stored"] == row["jobs"] == 50 and row["failed"] == 0
    assert res["grid_1000"]["resume_ran"] == 0 and res["grid_1000"]["resume_skipped"] == res["grid_1000"]["jobs"] == 60
    assert "| inline | 1 | 50 | 50 | 0 |" in (tmp_path / "campaign_overhead_quick.md").read_text()


def test_acasxu_benchmark_quick(tmp_path):
    """A property campaign end to end: the guard on N2,9 φ8 through the shipped grid's settings."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "campaign_acasxu.py"), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, env={**__import__("os").environ, "NNMEND_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "campaign_acasxu_quick.json").read_text())
    (rec,) = res["records"]
    assert rec["network"] == "acasxu_2_9" and rec["method"] == "guard" and rec["status"] == "ok"
    assert rec["success"] is True and rec["certificate"] == "verified" and rec["drawdown"] == 0.0
    assert "| acasxu_2_9 | phi8 | guard | 1 | 0 | 1/1 | 1/1 |" in (tmp_path / "campaign_acasxu_quick.md").read_text()


def _die(job: dict) -> dict:
    """A job whose worker process dies (module level, so a spawned pool worker can import it)."""
    import os

    os._exit(3)


@pytest.mark.slow          # one spawned worker: 10-30 s on a busy 2-core machine
def test_pool_worker_death_is_a_failed_record(tmp_path):
    summary = run_campaign([{"seed": 0, "evaluation": {}}], tmp_path / "s.sqlite", executor="pool", workers=1, fn=_die,
                           progress_bar=False)
    assert (summary.ran, summary.failed) == (1, 1)
    with Store(tmp_path / "s.sqlite") as s:
        (rec,) = s.records()
    assert rec["status"] == "failed" and "worker process failed" in rec["error"]
