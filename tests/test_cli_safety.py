"""Every command, fed bad files in-process through ``nnmend.cli.main``: exit 2, exactly one line on
stderr naming the file, no traceback, nothing written. Outputs never replace inputs (siblings included)
and never replace an existing file without ``--force``; ``--debug`` shows what one line hides."""
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nnmend.acasxu import acasxu_path, acasxu_property_path
from nnmend.cli import main
from nnmend.io import save_network
from nnmend.io import save_checkpoint
from nnmend.nets import shnn_mlp
from nnmend.repair.nca.rule import NCARule

PROP = acasxu_property_path(2)
ONNX = acasxu_path(2, 1)
GARBAGE = b"\x00\xff\x13PK\x03\x04" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder with one good network and bad files of every kind, per suffix."""
    d = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    save_network(shnn_mlp(), d / "good.pt")
    save_checkpoint(NCARule(hidden_channels=3, width=8, meta={"layer": "fc1"}), d / "rule.pt")   # untrained: only read
    shutil.copy(ONNX, d / "good.onnx")
    np.savez(d / "good.npz", x=np.zeros((4, 784), np.float32), y=np.zeros(4, np.int64))
    for suffix in SUFFIXES:
        (d / f"empty{suffix}").write_bytes(b"")
        (d / f"garbage{suffix}").write_bytes(GARBAGE)
        (d / f"folder{suffix}").mkdir()
    for name in ("good.pt", "good.onnx", "good.npz"):
        blob = (d / name).read_bytes()
        (d / f"truncated{Path(name).suffix}").write_bytes(blob[: len(blob) // 2])
    (d / "truncated.vnnlib").write_text(PROP.read_text()[: len(PROP.read_text()) // 2])
    (d / "truncated.nnet").write_text("// header\n3,5,5,50,\n5,50,50,50\n")
    (d / "text.xyz").write_text("not a network\n")
    return d


SUFFIXES = (".pt", ".onnx", ".nnet", ".npz", ".vnnlib", ".csv", ".mat")
KINDS = ("missing", "empty", "garbage", "folder", "truncated")
BAD_MODELS = [f"{k}{s}" for s in (".pt", ".onnx", ".nnet") for k in KINDS] + ["text.xyz"]
BAD_DATA = [f"{k}{s}" for s in (".npz", ".csv", ".mat") for k in KINDS if (k, s) != ("truncated", ".csv")
            and (k, s) != ("truncated", ".mat")] + ["text.xyz"]
BAD_PROPS = [f"{k}.vnnlib" for k in KINDS]


def _model_cases():
    """(command, argv with {bad} for the bad file and {good} for the good network, output or None)."""
    g = "{good}"
    return [
        ("damage", ["damage", "{bad}", "--layer", "fc1", "--out", "{out}.pt"]),
        ("diagnose", ["diagnose", "{bad}", "--reference", g, "--n", "4", "--out", "{out}.json"]),
        ("diagnose-ref", ["diagnose", g, "--reference", "{bad}", "--n", "4", "--out", "{out}.json"]),
        ("heal", ["heal", "{bad}", "--reference", g, "--epochs", "1", "--out", "{out}.pt"]),
        ("heal-ref", ["heal", g, "--reference", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
        ("attack", ["attack", "{bad}", "--n", "4", "--save", "{out}.npz"]),
        ("convert", ["convert", "{bad}", "{out}.pt"]),
        ("verify", ["verify", "{bad}", str(PROP), "--timeout", "5"]),
        ("nca-train", ["nca", "train", "{bad}", "--layer", "fc1", "--iterations", "1", "--out", "{out}.pt"]),
        ("repair-guard", ["repair", "{bad}", "--method", "guard", "--property", str(PROP), "--out", "{out}.pt"]),
        ("repair-nca", ["repair", "{bad}", "--method", "nca", "--rule", "{rule}", "--out", "{out}.pt"]),
        ("repair-nca-rule", ["repair", g, "--method", "nca", "--rule", "{bad}", "--out", "{out}.pt"]),
        ("repair-nnrepair", ["repair", "{bad}", "--method", "nnrepair", "--limit", "20", "--out", "{out}.pt"]),
        ("repair-patchpro", ["repair", "{bad}", "--method", "patchpro", "--property", str(PROP), "--out", "{out}.pt"]),
        ("repair-prorepair", ["repair", "{bad}", "--method", "prorepair", "--property", str(PROP), "--out", "{out}.pt"]),
    ]


def _data_cases():
    g = "{good}"
    return [
        ("train", ["train", "--data", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
        ("diagnose", ["diagnose", g, "--reference", g, "--data", "{bad}", "--out", "{out}.json"]),
        ("heal", ["heal", g, "--reference", g, "--data", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
        ("attack", ["attack", g, "--data", "{bad}", "--save", "{out}.npz"]),
        ("nca-train", ["nca", "train", g, "--layer", "fc1", "--data", "{bad}", "--iterations", "1", "--out", "{out}.pt"]),
        ("repair-prorepair-points", ["repair", g, "--method", "prorepair", "--points", "{bad}", "--out", "{out}.pt"]),
        ("repair-patchpro-robustness", ["repair", g, "--method", "patchpro", "--robustness", "{bad}", "--eps", "0.1",
                                        "--out", "{out}.pt"]),
        ("repair-nca-mask", ["repair", g, "--method", "nca", "--rule", "{rule}", "--mask", "{bad}", "--out", "{out}.pt"]),
    ]


def _property_cases():
    g = "{onnx}"
    return [
        ("verify", ["verify", g, "{bad}", "--timeout", "5"]),
        ("repair-guard", ["repair", g, "--method", "guard", "--property", "{bad}", "--out", "{out}.pt"]),
        ("repair-prorepair", ["repair", g, "--method", "prorepair", "--property", "{bad}", "--out", "{out}.pt"]),
        ("repair-patchpro", ["repair", g, "--method", "patchpro", "--property", "{bad}", "--out", "{out}.pt"]),
    ]


CASES = ([pytest.param(argv, bad, id=f"{name}[{bad}]") for name, argv in _model_cases() for bad in BAD_MODELS]
         + [pytest.param(argv, bad, id=f"{name}[{bad}]") for name, argv in _data_cases() for bad in BAD_DATA]
         + [pytest.param(argv, bad, id=f"{name}[{bad}]") for name, argv in _property_cases() for bad in BAD_PROPS])


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
    subst = {"{bad}": str(files / bad), "{good}": str(files / "good.pt"), "{onnx}": str(files / "good.onnx"),
             "{rule}": str(files / "rule.pt")}
    args = [subst.get(a, a).replace("{out}", str(out_dir / "result")) for a in argv]
    code, err = _run(args, capsys)
    _assert_one_clean_line(code, err, naming=bad)
    assert list(out_dir.iterdir()) == [], "a refused run wrote into the output folder"


@pytest.mark.parametrize("content", [b"", GARBAGE, b"a.onnx,b.vnnlib\n", b"missing.onnx,missing.vnnlib,10\n"],
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


def _same_path_cases(d: Path) -> list[tuple[list[str], Path]]:
    m, data, onnx = d / "m.pt", d / "d.npz", d / "x.onnx"
    return [
        (["damage", str(m), "--layer", "fc1", "--out", str(m)], m),
        (["attack", str(m), "--n", "4", "--save", str(m)], m),
        (["diagnose", str(m), "--reference", str(m), "--n", "4", "--out", str(m)], m),
        (["heal", str(m), "--reference", str(m), "--out", str(m)], m),
        (["convert", str(m), str(m)], m),
        (["nca", "train", str(m), "--layer", "fc1", "--out", str(m)], m),
        (["train", "--data", str(data), "--out", str(data)], data),
        (["attack", str(m), "--data", str(data), "--save", str(data)], data),
        (["repair", str(onnx), "--method", "patchpro", "--property", str(PROP), "--out", str(d / "x.pt")], onnx),
        (["repair", str(m), "--method", "nca", "--rule", str(d / "m.pt"), "--out", str(m)], m),
        (["repair", str(onnx), "--method", "guard", "--property", str(d / "x.json"), "--out", str(d / "x.pt")],
         d / "x.json"),
        (["diagnose", str(m), "--reference", str(m), "--n", "4", "--out", str(d / "d.json"),
          "--data", str(d / "d.png")], d / "d.png"),
        (["damage", str(m), "--layer", "fc1", "--out", str(d / "link.pt"), "--force"], m),   # a link to the input
    ]


def test_no_command_writes_over_its_input(files, tmp_path, capsys):
    d = tmp_path
    shutil.copy(files / "good.pt", d / "m.pt")
    shutil.copy(files / "good.npz", d / "d.npz")
    shutil.copy(ONNX, d / "x.onnx")
    shutil.copy(PROP, d / "x.json")            # an input that happens to carry the report's name
    (d / "d.png").write_bytes(b"\x89PNG not really")
    os.symlink(d / "m.pt", d / "link.pt")
    before = {p.name: _digest(p) for p in d.iterdir() if p.is_file()}
    for argv, victim in _same_path_cases(d):
        code, err = _run(argv, capsys)
        _assert_one_clean_line(code, err, naming="refusing to overwrite the input")
        assert str(victim) in err, err
    after = {p.name: _digest(p) for p in d.iterdir() if p.is_file()}
    assert after == before


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
    code, err = _run(["repair", str(m), "--method", "guard", "--property", str(PROP),
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
