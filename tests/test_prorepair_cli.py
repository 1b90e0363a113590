"""``nnmend repair --method prorepair``, the benchmark's quick mode, and the ACAS Xu conventions it relies on."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net  # noqa: E402

from nnmend.cli import main as cli_main  # noqa: E402
from nnmend.io import load_network, save_network  # noqa: E402
from nnmend.properties import check, read_property  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VNNLIB = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 {a}))
(assert (<= X_0 0.5))
(assert (>= X_1 {a}))
(assert (<= X_1 0.5))
(assert (<= Y_0 Y_1))
"""


def _files(tmp_path: Path, a: float = 0.0) -> tuple[Path, Path]:
    model, prop = tmp_path / "tiny.pt", tmp_path / "p.vnnlib"
    save_network(tiny_net(), model)
    prop.write_text(VNNLIB.format(a=a))
    return model, prop


def test_cli_region_repair_writes_a_verified_network(tmp_path, capsys):
    model, prop = _files(tmp_path)
    out = tmp_path / "fixed.pt"
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--property", str(prop), "--budget", "60",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "VERIFIED" in printed and str(out) in printed
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["verified"] is True and report["details"]["certificate"]["status"] == "verified"
    assert check(load_network(out), read_property(prop), timeout=None).status == "verified"


def test_cli_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys):
    model, prop = _files(tmp_path)
    out = tmp_path / "o.pt"
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--property", str(prop), "--split-layer", "fc9",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fc9" in err and "fc3" in err and not out.exists()
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--out", str(out)]) == 2
    assert "exactly one of --property" in capsys.readouterr().err
    bad = tmp_path / "bad.vnnlib"
    bad.write_text(VNNLIB.replace("X_1", "X_7"))
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--property", str(bad), "--out", str(out)]) == 2
    assert not out.exists()


def test_cli_already_satisfied_repairs_nothing(tmp_path, capsys):
    model, prop = _files(tmp_path, a=0.45)
    assert check(load_network(model), read_property(prop), timeout=None).status == "verified", \
        "fixture: the property must already hold on the model"
    out = tmp_path / "o.pt"
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--property", str(prop), "--out", str(out)]) == 0
    assert "already holds" in capsys.readouterr().out and not out.exists()


def test_cli_point_repair_closed_form_solver(tmp_path, capsys):
    model, _ = _files(tmp_path)
    net = load_network(model)
    gen = torch.Generator().manual_seed(3)
    clean_x = torch.rand(400, 2, generator=gen)
    x = torch.rand(12, 2, generator=gen)
    with torch.no_grad():
        clean_y, y = net(clean_x).argmax(1), 1 - net(x).argmax(1)          # every repair point flipped
    torch.save({"x": x, "y": y, "clean_x": clean_x, "clean_y": clean_y}, tmp_path / "pts.pt")
    out = tmp_path / "pt.pt"
    # the flipped labels cost most of the clean accuracy: the harness says so first, and writes only when asked
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--points", str(tmp_path / "pts.pt"),
                     "--solver", "closed_form", "--edit-layers", "fc1", "fc2", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAILED (costs") and "rsr 0.00 % → 100.00 %" in printed and not out.exists()
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--points", str(tmp_path / "pts.pt"),
                     "--solver", "closed_form", "--edit-layers", "fc1", "fc2", "--keep-failed", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "solver: closed_form" in printed and "--keep-failed: the repair FAILED its target" in printed
    with torch.no_grad():
        assert (load_network(out)(x).argmax(1) == y).all()
    # the closed form needs Linear edit layers and an affine head: a bad request is one clear line
    assert cli_main(["repair", str(model), "--method", "prorepair", "--external", "none", "--points", str(tmp_path / "pts.pt"),
                     "--solver", "closed_form", "--split-layer", "fc2", "--out", str(tmp_path / "no.pt")]) == 2
    assert "closed_form" in capsys.readouterr().err and not (tmp_path / "no.pt").exists()


def test_acasxu_instances_and_phi2_convention():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from prorepair import instances

    from nnmend.acasxu import acasxu, acasxu_property_path

    inst = instances()
    assert len(inst) == 36 and (3, 3, 2) not in inst and (4, 2, 2) not in inst
    assert (1, 9, 7) in inst and (2, 9, 8) in inst
    # VNN-LIB φ2: unsafe when COC (output 0) is maximal — not the argmin reading of the VeRe code
    region = read_property(acasxu_property_path(2)).regions[0]
    x = torch.as_tensor(region.lo) + torch.rand(20000, 5, generator=torch.Generator().manual_seed(0)) * \
        (torch.as_tensor(region.hi) - torch.as_tensor(region.lo))
    with torch.no_grad():
        y = acasxu(2, 1).double()(x)
    A, b = region.unsafe[0]
    unsafe = ((y @ torch.as_tensor(A).T) <= torch.as_tensor(b)).all(1)
    assert torch.equal(unsafe, y.argmax(1) == 0) and unsafe.any()


@pytest.mark.slow   # 49 CPU s measured
def test_prorepair_benchmark_quick(tmp_path):
    for suite in ("acasxu", "backdoor", "adversarial"):
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prorepair.py"), "--quick", "--suite", suite,
                            "--results", str(tmp_path)], capture_output=True, text=True, timeout=600,
                           env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr[-2000:]
    acas = json.loads((tmp_path / "prorepair_quick.json").read_text())
    rec = acas["records"][0]
    assert "error" not in rec and 0.0 <= rec["fdd"] <= 1.0
    if rec["proved"]:
        assert rec["certificate"]["status"] == "verified"
    bd = json.loads((tmp_path / "prorepair_backdoor_quick.json").read_text())["records"][0]
    assert "error" not in bd and bd["asr_after"] < bd["asr_before"]
    assert "ASR" in (tmp_path / "prorepair_backdoor_quick.md").read_text()
    adv = json.loads((tmp_path / "prorepair_adversarial_quick.json").read_text())["records"][0]
    pr = adv["prorepair"]
    assert "error" not in adv and pr["solver"] == "closed_form" and pr["RSR"] == 100.0 and pr["rsr_saved"] == 100.0
    assert 0.0 <= pr["DSR_pgd"] <= 100.0 and pr["edit_layers"] == ["fc1"]


def test_workbench_page_repairs_misclassified_training_inputs():
    pytest = __import__("pytest")
    pytest.importorskip("streamlit")
    from test_app import page, start, texts, wait_for

    at = start()
    page(at, "repair")                                   # the generic repair page (registry-driven)
    at.selectbox(key="repair_method").set_value("prorepair").run()
    at.number_input(key="repair_prorepair_problem_pool").set_value(500)
    at.number_input(key="repair_prorepair_max_rounds").set_value(3)
    at.button(key="repair_run").click().run()
    wait_for(at, lambda a: "Result: prorepair" in texts(a.subheader) or bool(a.error))
    assert not at.error, texts(at.error)
    rec = at.session_state["nnmend_workbench"].repairs["prorepair"]
    assert rec.result.method == "prorepair" and "misclassified" in rec.note
