"""``nnmend verify --instances``: the competition's layout, one row per instance as it goes, errors that do not
stop the run, resume, refused outputs, and the hard stop at the deadline (tested on behaviour, not on time)."""
from __future__ import annotations

import csv
import gzip
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from nnmend.cli import main
from nnmend.cli import verify as V
from nnmend.errors import PropertyError
from nnmend.io import save_network

BOX = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n" \
      "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
UNSAT = BOX + "(assert (>= Y_0 100.0))\n"        # |y| <= 2 on the box: never reached
SAT = BOX + "(assert (>= Y_0 Y_1))\n"            # y0 - y1 = x0 - x1 >= 0 at x = (1, 0)


def _tiny_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.eye(2))
        net[2].bias.zero_()
    return net


@pytest.fixture()
def competition(tmp_path: Path) -> Path:
    """A folder laid out as VNN-COMP ships a benchmark: onnx/, vnnlib/ (one gzipped), instances.csv."""
    (tmp_path / "onnx").mkdir()
    (tmp_path / "vnnlib").mkdir()
    save_network(_tiny_net(), tmp_path / "onnx" / "net.onnx", input_shape=(2,))
    (tmp_path / "vnnlib" / "unsat.vnnlib").write_text(UNSAT)
    (tmp_path / "vnnlib" / "sat.vnnlib.gz").write_bytes(gzip.compress(SAT.encode()))
    (tmp_path / "instances.csv").write_text(
        "onnx/net.onnx,vnnlib/unsat.vnnlib,30\n"
        "onnx/net.onnx,vnnlib/sat.vnnlib,30\n"          # the list names the file before gzip, as 2022+ do
        "onnx/missing.onnx,vnnlib/unsat.vnnlib,30\n"
        "net.onnx,unsat.vnnlib,30\n")                  # bare names, as the bundled ACAS Xu list gives them
    return tmp_path


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_competition_layout_runs_past_a_failing_row_and_exits_1(competition, capsys):
    out = competition / "results.csv"
    assert main(["verify", "--instances", str(competition / "instances.csv"), "--output", str(out)]) == 1
    rows = _rows(out)
    assert [r["result"] for r in rows] == ["unsat", "sat", "error", "unsat"]
    assert "file not found" in rows[2]["message"] and "missing.onnx" in rows[2]["message"]
    assert rows[0]["onnx"] == "onnx/net.onnx" and rows[0]["timeout"] == "30"
    assert "error 1" in capsys.readouterr().out


def test_all_rows_fine_exits_0(competition):
    listing = competition / "ok.csv"
    listing.write_text("onnx/net.onnx,vnnlib/unsat.vnnlib,30\n")
    assert main(["verify", "--instances", str(listing), "--output", str(competition / "r.csv")]) == 0


def test_header_and_extra_columns_as_in_the_shared_development_set(competition):
    listing = competition / "dev.csv"
    listing.write_text("onnx,vnnlib,timeout,expected,benchmark\nonnx/net.onnx,vnnlib/sat.vnnlib,12.5,sat,tiny\n"
                       "onnx/net.onnx,vnnlib/sat.vnnlib,soon,sat,tiny\n")
    first, second = V.read_instances(listing)
    assert first.timeout == 12.5 and first.property_path.name == "sat.vnnlib.gz" and not first.problem
    assert "timeout 'soon' is not a positive number" in second.problem


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("where", ["bundled",
                                   pytest.param("shared acasxu", marks=pytest.mark.skipif(
                                       not (SHARED / "acasxu" / "acasxu_instances.csv").exists(),
                                       reason="the shared ACAS Xu instance list is not present")),
                                   pytest.param("shared vnncomp", marks=pytest.mark.skipif(
                                       not (SHARED / "vnncomp" / "instances.csv").exists(),
                                       reason="the shared VNN-COMP instance list is not present"))])
def test_instance_lists_resolve_every_row(where):
    from nnmend.acasxu import acasxu_path

    listing = {"bundled": acasxu_path(1, 1).parent.parent / "acasxu_instances.csv",
               "shared acasxu": SHARED / "acasxu" / "acasxu_instances.csv",
               "shared vnncomp": SHARED / "vnncomp" / "instances.csv"}[where]
    rows = V.read_instances(listing)
    if where == "shared vnncomp":
        assert len(rows) == 68 and not [r.problem for r in rows if r.problem]
        return
    assert len(rows) == 186 and not [r.problem for r in rows if r.problem]
    assert all(r.model_path.is_file() and r.property_path.is_file() for r in rows)


def test_resume_skips_finished_rows_and_reruns_a_cut_one(competition):
    listing, out = competition / "instances.csv", competition / "results.csv"
    main(["verify", "--instances", str(listing), "--output", str(out)])
    rows = _rows(out)
    rows[0]["result"], rows[0]["seconds"] = "unknown", "123"      # a marker: a skipped row keeps it
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=V.FIELDS)
        w.writeheader()
        w.writerows(rows[:2])
        fh.write("onnx/missing.onnx,vnnlib/unsat.vnn")                # a row cut by a kill
    assert main(["verify", "--instances", str(listing), "--output", str(out), "--resume"]) == 1
    again = _rows(out)
    assert [r["result"] for r in again] == ["unknown", "sat", "error", "unsat"]
    assert again[0]["seconds"] == "123"


def test_output_equal_to_an_input_is_refused_and_nothing_is_written(competition, capsys):
    listing = competition / "instances.csv"
    before = listing.read_bytes()
    assert main(["verify", "--instances", str(listing), "--output", str(listing)]) == 2
    assert "input" in capsys.readouterr().err
    assert listing.read_bytes() == before
    model = competition / "onnx" / "net.onnx"
    model_bytes = model.read_bytes()
    assert main(["verify", "--instances", str(listing), "--output", str(model)]) == 2
    assert model.read_bytes() == model_bytes


def test_existing_output_needs_resume_or_force(competition):
    listing, out = competition / "instances.csv", competition / "results.csv"
    out.write_text("something else\n")
    assert main(["verify", "--instances", str(listing), "--output", str(out)]) == 2
    assert out.read_text() == "something else\n"
    assert main(["verify", "--instances", str(listing), "--output", str(out), "--force"]) == 1
    assert len(_rows(out)) == 4


def test_single_instance_prints_the_result_line(competition, capsys):
    net = str(competition / "onnx" / "net.onnx")
    assert main(["verify", net, str(competition / "vnnlib" / "unsat.vnnlib"), "--timeout", "30"]) == 0
    assert capsys.readouterr().out.strip() == "unsat"
    assert main(["verify", net, str(competition / "vnnlib" / "sat.vnnlib.gz"), "--timeout", "30"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "sat" and "(X_0 " in lines[1]


# ------------------------------------------------------------------ the worker: hard stop, crashes, errors

needs_fork = pytest.mark.skipif(not V._can_fork(), reason="needs the fork start method")


@needs_fork
def test_a_worker_stuck_past_its_deadline_is_killed_and_answers_timeout(monkeypatch, tmp_path):
    marker = tmp_path / "pid"

    def stuck(model, prop, timeout, started, config=None):
        marker.write_text(str(os.getpid()))
        while True:                       # ignores every deadline, like a long torch operation
            time.sleep(0.05)

    monkeypatch.setattr(V, "verify_one", stuck)
    word, text, _ = V.run_isolated("m.onnx", "p.vnnlib", 0.2)
    assert (word, text) == ("timeout", "timeout")
    pid = int(marker.read_text())
    for _ in range(3000):                 # the worker is killed, then reaped in the background: wait for it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"worker {pid} still exists")


@needs_fork
def test_a_crashing_worker_becomes_an_error_row_and_the_list_goes_on(monkeypatch, competition):
    real = V.verify_one

    def crash_on_unsat(model, prop, timeout, started, config=None):
        if "unsat" in str(prop):
            os.kill(os.getpid(), signal.SIGKILL)   # as the kernel kills a process out of memory
        return real(model, prop, timeout, started, config)

    monkeypatch.setattr(V, "verify_one", crash_on_unsat)
    out = competition / "results.csv"
    assert main(["verify", "--instances", str(competition / "instances.csv"), "--output", str(out)]) == 1
    rows = _rows(out)
    assert [r["result"] for r in rows] == ["error", "sat", "error", "error"]
    assert "died (signal SIGKILL)" in rows[0]["message"]


@needs_fork
def test_bad_input_in_the_worker_is_raised_with_its_class(tmp_path):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1.0)\n")
    net = tmp_path / "net.onnx"
    save_network(_tiny_net(), net, input_shape=(2,))
    with pytest.raises(PropertyError, match="bad.vnnlib"):
        V.run_isolated(net, bad, 30)
