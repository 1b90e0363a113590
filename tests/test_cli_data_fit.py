"""The CLI checks a network against ``--data`` before any work, and says how to get a bundled example
that was named without its file: one line, exit 2, naming both sides."""
import numpy as np
import pytest
from torch import nn

from nnmend.cli import main
from nnmend.io import save_network
from nnmend.nets import pretrained_path


def _one_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], (code, err)
    return err[0]


@pytest.fixture()
def rgb_data(tmp_path):
    """A tiny 3×8×8, 10-class data set in the .npz layout ``--data`` reads."""
    g = np.random.default_rng(0)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_test=g.random((6, 3, 8, 8), dtype=np.float32), y_test=np.arange(6) % 10,
             x_train=g.random((6, 3, 8, 8), dtype=np.float32), y_train=np.arange(6) % 10)
    return path


@pytest.mark.parametrize("command", ["attack", "diagnose"])
def test_a_network_that_cannot_take_the_data_is_one_line(tmp_path, capsys, rgb_data, command):
    mnist_net = str(pretrained_path("fnn_small"))
    extra = ["--attack", "fgsm"] if command == "diagnose" else []
    line = _one_line(capsys, [command, mnist_net, "--data", str(rgb_data), *extra])
    assert "fnn_small.pt" in line and "(3, 8, 8)" in line


def test_fewer_outputs_than_classes_is_one_line(tmp_path, capsys, rgb_data):
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 4))
    path = tmp_path / "four.pt"
    save_network(net, path)
    line = _one_line(capsys, ["attack", str(path), "--data", str(rgb_data)])
    assert "four.pt" in line and "classes" in line


@pytest.mark.parametrize("name, copied", [("fnn_small", "fnn_small.pt"), ("acasxu_2_9.onnx", "acasxu_2_9.onnx")])
def test_a_bundled_name_without_its_file_says_how_to_get_it(tmp_path, capsys, monkeypatch, name, copied):
    monkeypatch.chdir(tmp_path)
    line = _one_line(capsys, ["attack", name])
    assert f"nnmend examples --out . {copied}" in line


def test_nnrepair_reads_the_data_it_is_given(tmp_path, capsys, rgb_data):
    """``repair --method nnrepair --data`` is no longer MNIST only: the data named is read and checked."""
    line = _one_line(capsys, ["repair", "--method", "nnrepair", "fnn_small", "--data", str(rgb_data),
                              "--out", str(tmp_path / "r.pt")])
    assert "fnn_small" in line and "(3, 8, 8)" in line
    assert not (tmp_path / "r.pt").exists()
