import json
import subprocess
import sys

import pytest
import torch

from nnmend.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("demo", "train", "damage", "diagnose", "heal", "attack"):
        assert cmd in out


def test_step_chain(tmp_path, capsys):
    from nnmend.io import save_network
    from nnmend.nets import pretrained

    clean = tmp_path / "clean.pt"
    save_network(pretrained("shnn_mlp_mnist"), clean)
    assert main(["damage", str(clean), "--layer", "fc2", "--kind", "zero", "--out", str(tmp_path / "d.pt")]) == 0
    fault = json.loads(capsys.readouterr().out)
    assert fault["layer"] == "fc2" and fault["n_changed"] > 0
    assert main(["diagnose", str(tmp_path / "d.pt"), "--reference", str(clean), "--out", str(tmp_path / "diag.json")]) == 0
    assert "localised layer: fc2" in capsys.readouterr().out
    assert json.loads((tmp_path / "diag.json").read_text())["localized"] == "fc2" and (tmp_path / "diag.png").exists()
    assert main(["heal", str(tmp_path / "d.pt"), "--reference", str(clean), "--epochs", "3", "--out", str(tmp_path / "h.pt")]) == 0
    out = capsys.readouterr().out
    assert "patched fc2" in out
    healed = float(out.split("->")[1].split("%")[0])
    assert healed > 96.0
    assert main(["attack", str(tmp_path / "h.pt"), "--attack", "fgsm", "--eps", "0.1", "--n", "200",
                 "--save", str(tmp_path / "adv.npz")]) == 0
    assert "adversarial" in capsys.readouterr().out and (tmp_path / "adv.npz").exists()


def test_errors_are_one_line_and_nonzero(tmp_path, capsys):
    assert main(["damage", str(tmp_path / "nope.pt"), "--layer", "fc1", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err
    from nnmend.io import save_network
    from nnmend.nets import shnn_mlp

    save_network(shnn_mlp(), tmp_path / "m.pt")
    assert main(["damage", str(tmp_path / "m.pt"), "--layer", "conv9", "--out", str(tmp_path / "o.pt")]) == 2
    assert "layer 'conv9' not found" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()
    assert main(["diagnose", str(tmp_path / "m.pt"), "--reference", str(tmp_path / "m.pt"),
                 "--data", str(tmp_path / "x.mat")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "nnmend", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "nnmend" in r.stdout


def test_convert_reads_a_compressed_onnx(tmp_path):
    import gzip
    import shutil

    from nnmend.acasxu import acasxu_path
    from nnmend.cli import main
    from nnmend.io import load_network

    src = tmp_path / "a.onnx.gz"
    with open(acasxu_path(1, 1), "rb") as f, gzip.open(src, "wb") as g:
        shutil.copyfileobj(f, g)
    assert main(["convert", str(src), str(tmp_path / "a.pt")]) == 0
    x = torch.rand(4, 1, 1, 5)
    assert torch.equal(load_network(tmp_path / "a.pt")(x), load_network(src)(x))
