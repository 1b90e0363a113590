"""``nnmend repair --out X.pt`` also writes X.onnx, the piecewise-linear export; where none exists, one line and no file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net  # noqa: E402
from test_repair_cli_harness import TINY  # noqa: E402

from nnmend.cli import main as cli_main  # noqa: E402
from nnmend.cli.repair import _write_pwl_onnx  # noqa: E402
from nnmend.io import load_network, save_network  # noqa: E402
from nnmend.repair import export_pwl  # noqa: E402

torch.set_num_threads(1)


def _guard_argv(tmp_path: Path, out: Path) -> list[str]:
    save_network(tiny_net(), tmp_path / "tiny.pt")
    (tmp_path / "tiny.vnnlib").write_text(TINY)
    return ["repair", str(tmp_path / "tiny.pt"), "--method", "guard", "--external", "none", "--property",
            str(tmp_path / "tiny.vnnlib"), "--domain-lo=0,0", "--domain-hi=1,1", "--out", str(out)]


def test_repair_writes_a_piecewise_linear_onnx_equal_to_the_network(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "g.pt"
    assert cli_main(_guard_argv(tmp_path, out)) == 0
    onnx_path = out.with_suffix(".onnx")
    assert onnx_path.exists()
    ops = set(export_pwl.onnx_ops(onnx_path))
    assert ops <= export_pwl.PWL_OPS and "Relu" in ops
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["onnx"]["written"] is True and report["onnx"]["exact"] == "everywhere"
    assert "piecewise-linear ONNX" in capsys.readouterr().out
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 0.5   # inside and outside the region
    with torch.no_grad():
        want = load_network(out)(x).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy().astype(np.float32)})[0]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_no_piecewise_linear_form_is_one_line_and_no_file(tmp_path, capsys, monkeypatch):
    def refuse(network, **_):
        raise export_pwl.NotExpressible("layer 3 (Sigmoid): not a piecewise-linear layer")

    monkeypatch.setattr(export_pwl, "to_pwl", refuse)
    out = tmp_path / "g.pt"
    assert cli_main(_guard_argv(tmp_path, out)) == 0
    printed = capsys.readouterr().out
    lines = [ln for ln in printed.splitlines() if "g.onnx" in ln]
    assert lines == ["no g.onnx written: layer 3 (Sigmoid): not a piecewise-linear layer"]
    assert out.exists() and not out.with_suffix(".onnx").exists()
    assert json.loads(out.with_suffix(".json").read_text())["onnx"]["written"] is False


def test_no_onnx_flag_skips_it_and_a_sigmoid_is_named(tmp_path):
    out = tmp_path / "g.pt"
    assert cli_main(_guard_argv(tmp_path, out) + ["--no-onnx"]) == 0
    assert out.exists() and not out.with_suffix(".onnx").exists()
    rec = _write_pwl_onnx(nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 2)), tmp_path / "s.onnx")
    assert rec["written"] is False and "Sigmoid" in rec["why"] and not (tmp_path / "s.onnx").exists()


def test_the_onnx_may_not_replace_the_input_model(tmp_path, capsys):
    save_network(tiny_net(), tmp_path / "g.onnx")
    (tmp_path / "tiny.vnnlib").write_text(TINY)
    argv = ["repair", str(tmp_path / "g.onnx"), "--method", "guard", "--external", "none", "--property",
            str(tmp_path / "tiny.vnnlib"), "--domain-lo=0,0", "--domain-hi=1,1", "--out", str(tmp_path / "g.pt")]
    before = (tmp_path / "g.onnx").read_bytes()
    assert cli_main(argv) == 2
    assert "g.onnx" in capsys.readouterr().err and (tmp_path / "g.onnx").read_bytes() == before
