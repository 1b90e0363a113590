import gzip

import numpy as np
import pytest
import torch

from nnmend import DataError, load_dataset
from nnmend.data import Trigger, poison, read_idx, triggered_test


def test_bundled_mnist_full_and_typed():
    tr, te = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert tr.x.shape == (60000, 1, 28, 28) and te.x.shape == (10000, 1, 28, 28)
    assert tr.x.dtype == torch.float32 and tr.y.dtype == torch.int64
    assert 0.0 <= float(tr.x.min()) and float(tr.x.max()) <= 1.0
    assert te.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(te.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(tr.x.mean()) * 255 - 33.32) < 0.05


def test_digits_and_limit():
    d = load_dataset("digits", "train", limit=100)
    assert len(d) == 100 and d.x.shape[1:] == (1, 8, 8) and float(d.x.max()) <= 1.0


def test_fashion_mnist_or_clear_error():
    from nnmend.data import FASHION_DIR

    if FASHION_DIR.is_dir():
        ds = load_dataset("fashion-mnist", "test")
        assert ds.x.shape == (10000, 1, 28, 28) and torch.bincount(ds.y).tolist() == [1000] * 10
    else:
        with pytest.raises(DataError, match="dataset-fashion-mnist"):
            load_dataset("fashion-mnist", "test")


def test_mat_layout_and_errors(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(784, 50)).astype(np.uint8)
    label = rng.integers(0, 10, size=(50, 1))
    savemat(tmp_path / "ok.mat", {"data": data, "label": label})
    tr, te = load_dataset(tmp_path / "ok.mat", "train"), load_dataset(tmp_path / "ok.mat", "test")
    assert len(tr) == 40 and len(te) == 10 and tr.x.shape[1:] == (1, 28, 28)
    savemat(tmp_path / "bad.mat", {"images": data})
    with pytest.raises(DataError, match="missing key 'data'"):
        load_dataset(tmp_path / "bad.mat")
    savemat(tmp_path / "neg.mat", {"data": data, "label": -label - 1})
    with pytest.raises(DataError, match="labels out of range"):
        load_dataset(tmp_path / "neg.mat")


def test_npz_and_truncated_idx(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(5, 784).astype(np.float32), y=np.arange(5))
    d = load_dataset(tmp_path / "d.npz")
    assert d.x.shape == (5, 1, 28, 28)
    raw = gzip.open(load_dataset.__globals__["_bundled_mnist_dir"]() / "t10k-labels-idx1-ubyte.gz").read()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:500])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")


def test_poison_badnets():
    ds = load_dataset("mnist", "train", limit=1000)
    p, idx = poison(ds, target=7, n=600)
    assert idx.tolist() == list(range(600)) and (p.y[:600] == 7).all() and torch.equal(p.y[600:], ds.y[600:])
    assert torch.allclose(p.x[:600, 0, 24:27, 24:27], torch.tensor(250 / 255))
    assert torch.equal(ds.x[0], load_dataset("mnist", "train", limit=1).x[0])  # input unchanged
    t = triggered_test(ds, 7)
    assert (t.y != 7).all() and len(t) == int((ds.y != 7).sum())
    b = Trigger(kind="blend", alpha=0.2).apply(ds.x[:3])
    assert b.shape == (3, 1, 28, 28) and float(b.max()) <= 1.0
