"""`nnmend nca train` and the `cli_repair` entry the shared `nnmend repair --method nca` calls."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnmend.cli import main
from nnmend.errors import ModelError, RepairError
from nnmend.io import load_network, save_network
from nnmend.nets import get_layer, mlp
from nnmend.cli.repair_nca import cli_repair, load_rule


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nca_cli")
    torch.manual_seed(0)
    net = mlp([12, 10, 3], flatten=False)
    save_network(net, d / "net.pt")
    code = main(["nca", "train", str(d / "net.pt"), "--layer", "fc1", "--out", str(d / "rule.pt"), "--iterations", "3",
                 "--hidden-channels", "3", "--width", "8", "--function-weight", "0"])
    assert code == 0
    return d, net


@pytest.mark.slow   # 81 CPU s measured, nearly all in the module fixture's `nca train` (its calibration)
def test_train_writes_a_rule(files, capsys):
    d, _ = files
    rule = load_rule(d / "rule.pt")
    assert rule.meta["layer"] == "fc1" and tuple(rule.meta["weight_shape"]) == (10, 12)
    assert rule.meta["blind_threshold"] > 0 and len(rule.meta["shrink"]["alpha"]) == 7   # calibrated by training
    with pytest.raises(ModelError, match="not an NCA rule"):
        load_rule(d / "net.pt")


def test_cli_repair_blind_and_informed(files, capsys):
    d, net = files
    tampered = mlp([12, 10, 3], flatten=False)
    tampered.load_state_dict(net.state_dict())
    with torch.no_grad():
        get_layer(tampered, "fc1").weight[0, 0] = float("nan")
    save_network(tampered, d / "tampered.pt")
    args = SimpleNamespace(model=str(d / "tampered.pt"), rule=str(d / "rule.pt"), mask=None, out=str(d / "fixed.pt"),
                           layer=None, steps=4, seed=0)
    assert cli_repair(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "blind" and summary["nonfinite_cells"] == 1
    assert torch.isfinite(get_layer(load_network(d / "fixed.pt"), "fc1").weight).all()
    mask = np.ones((10, 12), dtype=bool)
    mask[0, 0] = False
    np.save(d / "mask.npy", mask)
    args.mask, args.out = str(d / "mask.npy"), str(d / "fixed2.pt")
    assert cli_repair(args) == 0
    informed = json.loads(capsys.readouterr().out)
    assert informed["mode"] == "informed" and informed["regenerated_fraction"] == pytest.approx(1 / 120, abs=1e-6)
    assert 0.0 <= informed["shrink_alpha"] <= 1.0


def test_cli_repair_bad_input(files):
    d, _ = files
    np.save(d / "wrong.npy", np.ones((3, 4), dtype=bool))
    args = SimpleNamespace(model=str(d / "net.pt"), rule=str(d / "rule.pt"), mask=str(d / "wrong.npy"),
                           out=str(d / "x.pt"), layer=None, steps=2, seed=0)
    with pytest.raises(RepairError, match=r"mask has shape \(3, 4\)"):
        cli_repair(args)
    args.mask, args.layer = None, "fc2"
    with pytest.raises(RepairError, match="trained for a layer of shape"):
        cli_repair(args)
    np.save(d / "floats.npy", np.full((10, 12), 0.5))
    args.mask, args.layer = str(d / "floats.npy"), None
    with pytest.raises(RepairError, match="0/1"):
        cli_repair(args)
    args.rule = None
    with pytest.raises(RepairError, match="--rule"):
        cli_repair(args)


def test_train_command_errors_are_one_line(files, capsys):
    d, _ = files
    code = main(["nca", "train", str(d / "net.pt"), "--layer", "fc9", "--out", str(d / "r.pt")])
    assert code == 2 and "fc9" in capsys.readouterr().err


@pytest.mark.slow   # 60 CPU s measured: two `nca train` runs
def test_train_with_function_loss_and_dilations(tmp_path, capsys):
    torch.manual_seed(0)
    save_network(mlp([64, 6, 3]), tmp_path / "net.pt")
    base = ["nca", "train", str(tmp_path / "net.pt"), "--layer", "fc1", "--out", str(tmp_path / "r.pt"),
            "--iterations", "2", "--hidden-channels", "2", "--width", "6", "--function-weight", "0.5"]
    assert main(base) == 2 and "needs data" in capsys.readouterr().err
    assert main(base + ["--data", "digits", "--dilations", "1", "2"]) == 0
    rule = load_rule(tmp_path / "r.pt")
    assert rule.dilations == (1, 2) and rule.meta["train_config"]["function_weight"] == 0.5
    assert rule.meta["layout"] == "receptive_field"  # 64 inputs = an 8 × 8 image


def test_shared_repair_command_runs_nca(files, capsys):
    d, net = files
    tampered = mlp([12, 10, 3], flatten=False)
    tampered.load_state_dict(net.state_dict())
    with torch.no_grad():
        get_layer(tampered, "fc1").weight[:3] = float("inf")
    save_network(tampered, d / "tampered3.pt")
    out = d / "fixed3.pt"
    code = main(["repair", str(d / "tampered3.pt"), "--method", "nca", "--rule", str(d / "rule.pt"), "--steps", "4",
                 "--out", str(out)])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["method"] == "nca" and report["nonfinite_cells"] == 36 and report["layer"] == "fc1"
    assert torch.isfinite(get_layer(load_network(out), "fc1").weight).all()
    assert "nca (blind) on layer fc1" in capsys.readouterr().out
    code = main(["repair", str(d / "tampered3.pt"), "--method", "nca", "--out", str(d / "never.pt")])
    assert code == 2 and not (d / "never.pt").exists()
    assert "--rule" in capsys.readouterr().err
