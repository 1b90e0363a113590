"""Your own network on the command line: ``--model MODULE:ATTR --weights FILE`` on every network command."""
from __future__ import annotations

import textwrap

import pytest
import torch

from nnmend.cli import build_parser, main
from nnmend.io import load_network

NETS = textwrap.dedent("""
    import torch
    from torch import nn

    class SkipNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.out(torch.relu(h + self.fc2(h)))

    def make():
        return SkipNet()

    class Broken(nn.Module):
        def __init__(self):
            raise ValueError("no config given")
    NOT_A_NET = 3
""")
# y0 >= y1 on a small box: a property of the user's network that verify decides
PROPERTY = "".join(f"(declare-const X_{i} Real)\n" for i in range(5)) + "".join(
    f"(declare-const Y_{i} Real)\n" for i in range(3)) + "".join(
    f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 0.01))\n" for i in range(5)) + "(assert (<= Y_0 Y_1))\n"


@pytest.fixture()
def user(tmp_path, monkeypatch):
    """A folder holding the user's module ``usernets_<id>.py``, its weights (.pt and .safetensors)."""
    monkeypatch.chdir(tmp_path)
    name = f"usernets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    torch.manual_seed(0)
    net = module.SkipNet().eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "nested.pt")
    (tmp_path / "prop.vnnlib").write_text(PROPERTY)
    return name, net


def test_every_network_command_takes_model_and_weights():
    parser = build_parser()
    commands = {"damage", "diagnose", "heal", "attack", "convert", "verify", "repair", "nca"}
    helps = {name: sub for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
             for name, sub in a.choices.items() if name in commands}
    assert set(helps) == commands
    for name, sub in helps.items():
        if name == "nca":
            sub = next(a for a in sub._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices["train"]
        flags = {f for a in sub._actions for f in a.option_strings}
        assert {"--model", "--weights"} <= flags, name


def test_damage_and_convert_run_on_the_users_class(user, tmp_path, capsys):
    name, net = user
    assert main(["damage", "--model", f"{name}:SkipNet", "--weights", "w.pt", "--layer", "fc2", "--out", "d.pt"]) == 0
    damaged = load_network(tmp_path / "d.pt")
    assert torch.count_nonzero(damaged.state_dict()["ops.fc2.weight"]) == 0      # fc2 zeroed: the user's layer name
    x = torch.rand(4, 5)
    assert main(["convert", "--model", f"{name}.py:make", "--weights", "nested.pt", "c.onnx",
                 "--input-shape", "5"]) == 0
    back = load_network(tmp_path / "c.onnx")
    assert torch.allclose(back(x), net(x), atol=1e-5)


def test_safetensors_weights(user, tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    name, net = user
    safetensors.save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["convert", "--model", f"{name}:SkipNet", "--weights", "w.safetensors", "c.pt"]) == 0
    x = torch.rand(3, 5)
    assert torch.allclose(load_network(tmp_path / "c.pt")(x), net(x), atol=1e-6)


def test_verify_takes_the_property_after_model(user, capsys):
    name, _ = user
    assert main(["verify", "--model", f"{name}:SkipNet", "--weights", "w.pt", "prop.vnnlib", "--timeout", "60"]) == 0
    assert capsys.readouterr().out.split()[0] in {"sat", "unsat"}


@pytest.mark.parametrize("argv, needle", [
    (["--model", "no_such_module_xyz:Net", "--weights", "w.pt"], "cannot import no_such_module_xyz"),
    (["--model", "{name}:Missing", "--weights", "w.pt"], "has no attribute 'Missing'"),
    (["--model", "{name}:Broken"], "Broken() failed (ValueError: no config given)"),
    (["--model", "{name}:NOT_A_NET"], "neither an nn.Module nor a class"),
    (["--model", "{name}", "--weights", "w.pt"], "expected MODULE:ATTR"),
    (["--model", "{name}:SkipNet", "--weights", "absent.pt"], "absent.pt: no such weights file"),
    (["--model", "{name}:SkipNet", "--weights", "prop.vnnlib"], "prop.vnnlib: not a weights-only state dict"),
    (["--model", "{name}:SkipNet", "--weights", "pickled.pt"], "pickled.pt: not a weights-only state dict"),
    (["--model", "{name}:SkipNet", "--weights", "small.pt"], "does not fit"),
    (["--weights", "w.pt"], "--weights needs --model"),
    ([], "a network is required"),
    (["w.pt", "--model", "{name}:SkipNet"], "either a network file"),
    (["--model", "{name}:SkipNet", "--weights", "w.pt", "--force", "--out-is-weights"], "refusing to overwrite the input w.pt"),
])
def test_bad_user_model_is_one_line_exit_2(user, tmp_path, capsys, argv, needle):
    name, _ = user
    torch.save({"fc1.weight": torch.zeros(2, 2)}, tmp_path / "small.pt")
    torch.save({"fc1.weight": torch.nn.Linear(5, 8)}, tmp_path / "pickled.pt")     # a module, not a tensor
    argv = [a.format(name=name) for a in argv]
    out = "w.pt" if "--out-is-weights" in argv else "d.pt"
    argv = [a for a in argv if a != "--out-is-weights"]
    assert main(["damage", *argv, "--layer", "fc2", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "d.pt").exists()


def test_reference_is_a_state_dict_of_the_same_class(user, tmp_path, capsys):
    """``diagnose --model M --weights damaged.pt --reference healthy.pt``: both plain state dicts of the user's class."""
    import json

    import numpy as np

    name, net = user
    broken = {k: v.clone() for k, v in net.state_dict().items()}
    broken["fc2.weight"] += 3.0 * torch.randn_like(broken["fc2.weight"])
    torch.save(broken, tmp_path / "broken.pt")
    g = torch.Generator().manual_seed(1)
    np.savez(tmp_path / "d.npz", x=torch.rand(64, 5, generator=g).numpy(), y=np.zeros(64, dtype=np.int64))
    assert main(["diagnose", "--model", f"{name}:SkipNet", "--weights", "broken.pt", "--reference", "w.pt",
                 "--data", "d.npz", "--out", "diag.json"]) == 0
    diag = json.loads((tmp_path / "diag.json").read_text())
    assert "fc2" in json.dumps(diag) and "fc1" in json.dumps(diag)
    localised = diag.get("localized") or diag.get("localised") or diag.get("layer")
    assert localised == "fc2", diag
    # the reference is the user's weights file: never written over
    assert main(["heal", "--model", f"{name}:SkipNet", "--weights", "broken.pt", "--reference", "w.pt",
                 "--data", "d.npz", "--out", "w.pt"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
