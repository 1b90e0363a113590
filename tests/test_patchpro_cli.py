"""``nnmend repair --method patchpro`` and the quick PatchPro benchmarks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnmend.acasxu import acasxu, acasxu_property_path
from nnmend.cli import main
from nnmend.data import load_dataset
from nnmend.io import load_network, save_network
from nnmend.nets import pretrained

ROOT = Path(__file__).resolve().parents[1]


def test_cli_repairs_acasxu_property2_and_writes_every_file(tmp_path, capsys):
    model = tmp_path / "n21.onnx"
    save_network(acasxu(2, 1), model)
    out = tmp_path / "fixed.pt"
    rc = main(["repair", str(model), "--method", "patchpro", "--external", "none", "--property", str(acasxu_property_path(2)),
               "--patchpro-initial-boxes", "300", "--out", str(out)])
    assert rc == 0
    for suffix in (".pt", ".onnx", ".json", ".certificate.json"):
        assert out.with_suffix(suffix).exists(), suffix
    cert = json.loads(out.with_suffix(".certificate.json").read_text())
    assert cert["verified"] is True and cert["recheck_on_saved_network"]["all_verified"]
    net = load_network(out)
    with torch.no_grad():
        y = net(torch.tensor([[0.62, 0.1, -0.2, 0.47, -0.48]]))
    assert y[0, 1:].max() > y[0, 0]                      # φ2 holds at a point of the region
    assert "1/1 verified" in capsys.readouterr().out


def test_cli_local_robustness_from_a_samples_file(tmp_path, capsys):
    net = pretrained("fnn_small")
    test = load_dataset("mnist", "test", limit=3)
    samples = tmp_path / "s.pt"
    torch.save({"x": test.x, "y": net(test.x).argmax(1)}, samples)
    out = tmp_path / "r.pt"
    assert main(["repair", "fnn_small", "--method", "patchpro", "--external", "none", "--robustness", str(samples), "--eps", "0.1",
                 "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["certificate"]["verified"] and report["certificate"]["regions"] == 3
    assert out.with_suffix(".onnx").exists()


def test_cli_already_satisfied_writes_nothing(tmp_path, capsys):
    net = pretrained("fnn_small")
    x = load_dataset("mnist", "test", limit=2).x
    samples = tmp_path / "s.pt"
    torch.save({"x": x, "y": net(x).argmax(1)}, samples)
    out = tmp_path / "r.pt"
    assert main(["repair", "fnn_small", "--method", "patchpro", "--external", "none", "--robustness", str(samples), "--eps", "0.0001",
                 "--out", str(out)]) == 0
    assert "already satisfies" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [samples]


def test_cli_unprovable_and_bad_inputs_are_clear_errors_and_write_nothing(tmp_path, capsys):
    x = load_dataset("mnist", "test", limit=1).x
    out = tmp_path / "r.pt"
    conflicting = tmp_path / "c.pt"
    torch.save({"x": torch.cat([x, x]), "y": torch.tensor([3, 5])}, conflicting)
    bad_keys = tmp_path / "k.pt"
    torch.save({"images": x}, bad_keys)
    outside = tmp_path / "o.pt"
    torch.save({"x": x * 3, "y": torch.tensor([1])}, outside)
    wrong_shape = tmp_path / "w.pt"
    torch.save({"x": torch.rand(1, 5), "y": torch.tensor([1])}, wrong_shape)
    # unprovable (one ball, two labels): the harness's verdict first, exit 1, nothing written
    assert main(["repair", "fnn_small", "--method", "patchpro", "--external", "none", "--robustness", str(conflicting), "--eps", "0.05",
                 "--patchpro-epochs", "2", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAILED (target not met): patchpro") and "nothing written" in printed and "open box" in printed
    assert not any(p.name.startswith("r.") for p in tmp_path.iterdir())
    cases = [
        (["--robustness", str(bad_keys), "--eps", "0.05"], 'keys "x"'),
        (["--robustness", str(outside), "--eps", "0.05"], "outside the input domain"),
        (["--robustness", str(wrong_shape), "--eps", "0.05"], "does not accept inputs of shape"),
        (["--robustness", str(conflicting)], "needs --eps"),
        (["--robustness", str(conflicting), "--property", str(acasxu_property_path(2)), "--eps", "0.1"], "exactly one"),
    ]
    for extra, message in cases:
        rc = main(["repair", "fnn_small", "--method", "patchpro", "--external", "none", *extra, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, (extra, err)
        assert not any(p.name.startswith("r.") for p in tmp_path.iterdir())


def _run(script: str, tmp_path: Path) -> dict:
    # this checkout's package, not whichever nnmend the interpreter has installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((tmp_path / script.replace(".py", "_quick.json")).read_text())


def test_acasxu_benchmark_quick(tmp_path):
    res = _run("patchpro_acasxu.py", tmp_path)
    assert len(res["records"]) == 2
    for r in res["records"]:
        assert r["verified"] and r["RSR"] == 100.0 and r["FDD"] == 0.0
    assert "paper RSR / RGR / FDD" in (tmp_path / "patchpro_acasxu_quick.md").read_text()


@pytest.mark.slow   # 35 CPU s measured
def test_mnist_benchmark_quick(tmp_path):
    res = _run("patchpro_mnist.py", tmp_path)
    assert len(res["records"]) == 2
    for r in res["records"]:
        assert r["verified"] and r["RSR"] == 100.0 and r["DSR"] == 100.0
        assert {"DGSR_paper", "DGSR_deployable", "finetune", "trades"} <= set(r)
    md = (tmp_path / "patchpro_mnist_quick.md").read_text()
    assert "DGSR deployable" in md and "Baselines" in md
