"""Every command, fed bad files in-process through ``nnmend.cli.main``: exit 2, exactly one line on
stderr naming the file, no traceback, nothing written. Outputs never replace inputs (siblings included)
and never replace an existing file without ``--force``; ``--debug`` shows what one line hides."""
import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from nnmend.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import hardening_cli as grid  # noqa: E402  (the crafted files and the command grid, shared with the benchmark)

PROP = grid.PROP


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with good inputs and every crafted bad file (missing, empty, garbage, folder, truncated, .xyz)."""
    return grid.craft(tmp_path_factory.mktemp("bad"))


CASES = [pytest.param(argv, bad, id=f"{name}[{bad}]") for name, argv, bad in grid.bad_input_cases()]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def _assert_one_clean_line(code: int, err: str, *, naming: str | None = None) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nnmend ") and ": error: " in lines[0], err
    if naming is not None:
        assert naming in lines[0], f"the line does not name {naming}: {err}"


@pytest.mark.parametrize("argv, bad", CASES)
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(files, tmp_path, capsys, argv, bad):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = _run(grid.fill(argv, files, bad, out_dir / "result"), capsys)
    _assert_one_clean_line(code, err, naming=bad)
    assert list(out_dir.iterdir()) == [], "a refused run wrote into the output folder"


@pytest.mark.parametrize("content", [b"", grid.GARBAGE, b"a.onnx,b.vnnlib\n", b"missing.onnx,missing.vnnlib,10\n"],
                         ids=["empty", "garbage", "two-fields", "missing-files"])
def test_verify_instance_lists_never_give_a_traceback(tmp_path, capsys, content):
    """What a bad list means is cli/verify.py's call (its owner); here: at most one line, never a traceback."""
    csv = tmp_path / "instances.csv"
    csv.write_bytes(content)
    _, err = _run(["verify", "--instances", str(csv), "--output", str(tmp_path / "r.csv")], capsys)
    assert len(err.strip().splitlines()) <= 1 and "Traceback" not in err, err
    assert csv.read_bytes() == content


def test_demo_and_app_refuse_bad_arguments_in_one_line(files, tmp_path, capsys):
    _assert_one_clean_line(*_run(["demo", "--out", str(files / "text.xyz")], capsys), naming="text.xyz")
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    _assert_one_clean_line(*_run(["demo", "--out", str(other)], capsys), naming="--force")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    _assert_one_clean_line(*_run(["app", "--port", "0"], capsys), naming="--port")


def test_demo_replaces_its_own_previous_run_with_a_notice(tmp_path, capsys, monkeypatch):
    import nnmend.demo

    calls = []
    monkeypatch.setattr(nnmend.demo, "run_demo", lambda out, seed, **kw: calls.append(out))
    run = tmp_path / "runs"
    run.mkdir()
    (run / "report.json").write_text("{}")
    assert main(["demo", "--out", str(run)]) == 0 and calls == [str(run)]
    assert "replacing the previous demo run" in capsys.readouterr().out


# --- outputs never replace inputs -------------------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_command_writes_over_its_input(files, tmp_path, capsys):
    """The tester's cases (damage M --out M, train --data D --out D, a repair whose ONNX or report sibling is
    an input, a link to the input, ...): refused in one line naming the input, every file unchanged."""
    grid.prepare_same_path(tmp_path, files)
    before = {p.name: _digest(p) for p in tmp_path.iterdir() if p.is_file()}
    cases = [c for c in grid.same_path_cases(tmp_path) if c[1][0] != "verify"]    # verify.py: its owner's test
    assert len(cases) >= 12
    for case, argv, victim in cases:
        code, err = _run(argv, capsys)
        _assert_one_clean_line(code, err, naming="refusing to overwrite the input")
        assert str(victim) in err, (case, err)
    assert {p.name: _digest(p) for p in tmp_path.iterdir() if p.is_file()} == before


def test_existing_outputs_need_force_and_inputs_never_yield(files, tmp_path, capsys):
    m = tmp_path / "m.pt"
    shutil.copy(files / "good.pt", m)
    out = tmp_path / "old.pt"
    out.write_bytes(b"previous result")
    code, err = _run(["damage", str(m), "--layer", "fc1", "--out", str(out)], capsys)
    _assert_one_clean_line(code, err, naming="--force")
    assert out.read_bytes() == b"previous result"
    assert main(["damage", str(m), "--layer", "fc1", "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != b"previous result"
    code, err = _run(["damage", str(m), "--layer", "fc1", "--out", str(m), "--force"], capsys)
    _assert_one_clean_line(code, err, naming="refusing to overwrite the input")
    # a repair report of the same name as an existing file (not an input) is refused before any work
    (tmp_path / "fixed.json").write_text("someone's notes")
    code, err = _run(["repair", str(m), "--method", "guard", "--external", "none", "--property", str(PROP),
                      "--out", str(tmp_path / "fixed.pt")], capsys)
    _assert_one_clean_line(code, err, naming="fixed.json")
    assert (tmp_path / "fixed.json").read_text() == "someone's notes" and not (tmp_path / "fixed.pt").exists()


def test_unknown_output_formats_and_folders_are_refused(files, tmp_path, capsys):
    g = str(files / "good.pt")
    (tmp_path / "dir.pt").mkdir()
    for argv, naming in [(["damage", g, "--layer", "fc1", "--out", str(tmp_path / "o.xyz")], "o.xyz"),
                         (["damage", g, "--layer", "fc1", "--out", str(tmp_path / "dir.pt")], "dir.pt"),
                         (["damage", g, "--layer", "fc1", "--out", str(files / "text.xyz" / "o.pt")], "text.xyz"),
                         (["attack", g, "--save", str(tmp_path / "adv.pt")], "adv.pt"),
                         (["diagnose", g, "--reference", g, "--out", str(tmp_path / "d.png")], "d.png")]:
        _assert_one_clean_line(*_run(argv, capsys), naming=naming)
    assert [p.name for p in tmp_path.iterdir()] == ["dir.pt"]


# --- an unexpected failure: one line and exit 1, or the traceback with --debug -------------------------------
def test_internal_errors_are_one_line_with_a_debug_hint(files, tmp_path, capsys, monkeypatch):
    import nnmend.faults

    def broken(*args, **kwargs):
        raise IndexError("list index out of range\nsecond line")

    monkeypatch.setattr(nnmend.faults, "damage", broken)
    argv = ["damage", str(files / "good.pt"), "--layer", "fc1", "--out", str(tmp_path / "o.pt")]
    code, err = _run(argv, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "nnmend damage: internal error: IndexError: list index out of range" in err and "--debug" in err
    for debug_argv in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(IndexError):
            main(debug_argv)
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.slow
def test_hardening_benchmark_quick(tmp_path):
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "hardening_cli.py"), "--quick",
                        "--results-dir", str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "hardening_cli_quick.json").read_text())
    s = res["summary"]
    assert s["runs"] == 4 and s["classes"]["clean"] == 4 and s["wrote_output"] == 0 and s["inputs_changed"] == 0
    assert s["same_path"] == {"cases": 2, "refused": 2, "inputs_lost": 0}
    for mode in ("single", "set"):
        k = s["kills"][mode]
        assert k["trials"] == 2 and k["torn"] == k["mixed"] == k["set_lost"] == k["litter_after_next_write"] == 0
    assert "environment" in res and res["seed"] == 0
    assert "## kill -9 during writes" in (tmp_path / "hardening_cli_quick.md").read_text()


def test_failures_map_to_one_line_and_an_exit_code():
    from nnmend.cli import failure
    from nnmend.errors import DataError

    assert failure(DataError("d.npz: truncated\nmore")) == (2, "error: d.npz: truncated / more")
    code, line = failure(IsADirectoryError(21, "Is a directory", ".nnmend-tmp-x", None, "out.pt"))
    assert code == 2 and line == "error: out.pt: Is a directory"
    assert failure(MemoryError())[0] == 2
    code, line = failure(ZeroDivisionError("division by zero"))
    assert code == 1 and line.startswith("internal error: ZeroDivisionError: division by zero") and "--debug" in line
