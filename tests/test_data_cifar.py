"""CIFAR-10 and Sign-MNIST loading: the shared .npz layout, the official python and binary batches (read
without unpickling objects), the data root (argument, $NNMEND_DATA), bad input, and the normalisation layer."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nnmend.io import save_network  # first: nnmend.layers needs nnmend.io loaded
from nnmend.bounds import interval_bounds
from nnmend.cli import main
from nnmend.data import CIFAR10_MEAN, CIFAR10_STD, data_root, load_dataset
from nnmend.errors import DataError
from nnmend.layers import normalization

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_cifar = pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason=f"{SHARED}/cifar10 missing")
needs_sign = pytest.mark.skipif(not (SHARED / "sign_mnist").is_dir(), reason=f"{SHARED}/sign_mnist missing")


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def _rows(x: np.ndarray) -> np.ndarray:
    """HWC images as the official N×3072 rows (all red, then green, then blue)."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


# --- a Python 2 pickle, opcode by opcode, as the official batches were written ------------------------

def _s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: what Python 2 wrote for str
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def _py2_batch(x: np.ndarray, y: np.ndarray, *, dtype: bytes = b"u1") -> bytes:
    rows = _rows(x)
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85" + _s(b"b")
             + b"\x87R"
             + b"(" + _int(1) + _int(rows.shape[0]) + _int(rows.shape[1]) + b"\x86"
             + b"cnumpy\ndtype\n" + _s(dtype) + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _s(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
             + b"\x89" + _s(rows.tobytes()) + b"tb")
    labels = b"](" + b"".join(_int(int(v)) for v in y) + b"e"
    return (b"\x80\x02}(" + _s(b"batch_label") + _s(b"testing batch 1 of 1") + _s(b"labels") + labels
            + _s(b"data") + array + _s(b"filenames") + b"]" + b"u.")


def _write_python_batches(d: Path, parts: list[tuple[np.ndarray, np.ndarray]], test) -> None:
    d.mkdir(parents=True)
    for i, (x, y) in enumerate(parts, 1):
        (d / f"data_batch_{i}").write_bytes(_py2_batch(x, y))
    (d / "test_batch").write_bytes(_py2_batch(*test))


def _write_binary_batches(d: Path, parts, test) -> None:
    d.mkdir(parents=True)
    for name, (x, y) in [(f"data_batch_{i}.bin", p) for i, p in enumerate(parts, 1)] + [("test_batch.bin", test)]:
        (d / name).write_bytes(np.concatenate([y.astype(np.uint8)[:, None], _rows(x)], 1).tobytes())


def _expected(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


@pytest.mark.parametrize("layout", ["python", "binary", "npz"])
def test_three_layouts_give_the_same_images(tmp_path, layout):
    parts, test = [_images(7, 1), _images(5, 2)], _images(4, 3)
    if layout == "python":
        _write_python_batches(tmp_path / "cifar-10-batches-py", parts, test)
    elif layout == "binary":
        _write_binary_batches(tmp_path / "cifar-10-batches-bin", parts, test)
    else:
        (tmp_path / "cifar10").mkdir()
        np.savez(tmp_path / "cifar10" / "cifar10_train.npz", x=np.concatenate([p[0] for p in parts]),
                 y=np.concatenate([p[1] for p in parts]))
        np.savez(tmp_path / "cifar10" / "cifar10_test.npz", x=test[0], y=test[1])
    train = load_dataset("cifar10", "train", root=tmp_path)
    ds = load_dataset("cifar10", "test", root=tmp_path)
    assert train.x.shape == (12, 3, 32, 32) and ds.x.shape == (4, 3, 32, 32)
    assert torch.equal(train.x, _expected(np.concatenate([p[0] for p in parts])))
    assert torch.equal(train.y, torch.from_numpy(np.concatenate([p[1] for p in parts])))
    assert torch.equal(ds.x, _expected(test[0])) and ds.classes[0] == "airplane"
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())    # the folder itself, as a path
    assert torch.equal(load_dataset(folder, "test").x, ds.x)


def test_python3_pickles_read_too(tmp_path):
    x, y = _images(3)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for proto, name in ((2, "data_batch_1"), (4, "test_batch")):
        (d / name).write_bytes(pickle.dumps({b"data": _rows(x), b"labels": y.tolist()}, protocol=proto))
    for split in ("train", "test"):
        assert torch.equal(load_dataset("cifar10", split, root=tmp_path).x, _expected(x))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("payload", [
    pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), dtype=object), b"labels": [0]}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), dtype=np.float64), b"labels": [0]}, protocol=2),
    pickle.dumps([1, 2, 3], protocol=2),
    b"\x80\x02}q\x00",
])
def test_malicious_or_wrong_pickles_are_refused(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", "test", root=tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_bad_layouts_name_the_file(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    (d / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(DataError, match=r"test_batch\.bin.*3073"):
        load_dataset("cifar10", "test", root=tmp_path)
    (d / "test_batch.bin").write_bytes(bytes([11]) + b"\x00" * 3072)
    with pytest.raises(DataError, match=r"0\.\.9"):
        load_dataset("cifar10", "test", root=tmp_path)
    npz = tmp_path / "c" / "cifar10"
    npz.mkdir(parents=True)
    np.savez(npz / "cifar10_test.npz", x=np.zeros((2, 28, 28), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"cifar10_test\.npz.*\(N, 32, 32, 3\)"):
        load_dataset("cifar10", "test", root=tmp_path / "c")
    with pytest.raises(DataError, match="no CIFAR-10 train data"):
        load_dataset("cifar10", "train", root=tmp_path / "c")
    with pytest.raises(DataError, match="no such folder"):
        load_dataset("cifar10", "test", root=tmp_path / "nowhere")


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("NNMEND_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env" and data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NNMEND_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "nnmend"


def test_cli_names_a_missing_data_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NNMEND_DATA", str(tmp_path / "missing"))
    save_network(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), tmp_path / "m.pt")
    assert main(["attack", str(tmp_path / "m.pt"), "--data", "cifar10", "--n", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "NNMEND_DATA" in err[0]


@needs_cifar
def test_shared_cifar10_through_env(monkeypatch):
    monkeypatch.setenv("NNMEND_DATA", str(SHARED))
    test = load_dataset("cifar10", "test", limit=100)
    assert test.x.shape == (100, 3, 32, 32) and test.num_classes == 10
    assert test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the official test_batch order
    train = load_dataset("cifar10", "train")
    assert len(train) == 20000 and torch.bincount(train.y).min() > 1900


@needs_sign
def test_shared_sign_mnist():
    test = load_dataset("sign-mnist", "test", root=SHARED)
    assert test.x.shape == (7172, 1, 28, 28) and test.num_classes == 25 and test.classes[24] == "Y"
    assert 9 not in test.y.unique().tolist() and len(test.y.unique()) == 24


def test_sign_mnist_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.integers(0, 25, (4, 1)), rng.integers(0, 256, (4, 784))], 1)
    header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    np.savetxt(tmp_path / "sign_mnist_test.csv", rows, fmt="%d", delimiter=",", header=header, comments="")
    ds = load_dataset("sign-mnist", "test", root=tmp_path)
    assert torch.equal(ds.x.reshape(4, -1), torch.from_numpy(rows[:, 1:].astype(np.float32) / 255))
    with pytest.raises(DataError, match="sign_mnist_train"):
        load_dataset("sign-mnist", "train", root=tmp_path)


def test_normalization_layer_is_bounded_in_pixel_space():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    net = nn.Sequential(normalization(CIFAR10_MEAN, CIFAR10_STD), body).eval()
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(net(x), body((x - mean) / std), atol=1e-5)
    lo, hi = interval_bounds(net, (x - 0.01).clamp(0, 1), (x + 0.01).clamp(0, 1))
    pts = (x + (torch.rand(64, 2, 3, 32, 32) * 0.02 - 0.01)).clamp(0, 1)
    out = net(pts.reshape(-1, 3, 32, 32)).reshape(64, 2, 10)
    assert (out >= lo - 1e-4).all() and (out <= hi + 1e-4).all()
    with pytest.raises(ValueError, match="std"):
        normalization(CIFAR10_MEAN, (0.1, 0.0, 0.2))
