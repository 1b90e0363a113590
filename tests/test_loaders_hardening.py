"""Every crafted file of ``tests/corpus/crafted.py`` through the loaders and ``nnmend convert``: refused
with one line naming the file (exit 2), or accepted when it is a valid control; never another exception.
Also the size checks, the ``.gz`` limits and the format dispatch on their own."""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent / "corpus"))
from crafted import PICKLE_MARKER, TEST_CAP_BYTES, build_corpus  # noqa: E402

from nnmend._validation import MAX_ALLOC_ENV, max_alloc_bytes, read_bytes_capped  # noqa: E402
from nnmend.cli import main  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.errors import DataError, ModelError, NnmendError  # noqa: E402
from nnmend.io.checkpoint import load_checkpoint, load_network, save_network  # noqa: E402
from nnmend.train import fit  # noqa: E402

_CORPUS = {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not _CORPUS:
        for case in build_corpus(tmp_path_factory.mktemp("corpus")):
            _CORPUS[case.name] = case
    return _CORPUS


@pytest.fixture(autouse=True)
def small_cap(monkeypatch):
    monkeypatch.setenv(MAX_ALLOC_ENV, str(TEST_CAP_BYTES))


def _load(case):
    if case.loader == "network":
        return load_network(case.path)
    if case.loader == "state_dict":
        return load_checkpoint(case.path, arch="shnn_mlp")
    return load_dataset(case.path)


def _case_names() -> list[str]:
    # the names are fixed by the builder; listing them here keeps collection free of file writes
    import crafted
    import inspect

    src = inspect.getsource(crafted.build_corpus)
    names = []
    for line in src.splitlines():
        line = line.strip()
        if line.startswith('add("'):
            names.append(line.split('"')[1])
        elif line.startswith('add(f"onnx_opset_'):
            names += [f"onnx_opset_{v}" for v in (1, 99, 1000)]
    return names


CASES = _case_names()


def test_case_list_matches_the_corpus(corpus):
    assert sorted(CASES) == sorted(corpus)


@pytest.mark.parametrize("name", CASES)
def test_loader_refuses_or_accepts_each_crafted_file(corpus, name):
    case = corpus[name]
    if case.expect == "accepted":
        assert _load(case) is not None
        return
    with pytest.raises(NnmendError) as info:
        _load(case)
    msg = str(info.value)
    assert "\n" not in msg.strip(), msg
    assert case.path.name in msg, msg
    assert not (case.path.parent / PICKLE_MARKER).exists()


CONVERTIBLE = [n for n in CASES if n.split("_")[0] in ("nnet", "onnx", "pt") and "gz" not in n]


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_convert_exits_2_with_one_line(corpus, name, tmp_path, capsys):
    case = corpus[name]
    args = ["convert", str(case.path), str(tmp_path / "out.pt")]
    if case.loader == "state_dict":
        args += ["--arch", "shnn_mlp"]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    if case.expect == "accepted":
        assert rc == 0 and (tmp_path / "out.pt").exists(), err
    else:
        assert rc == 2 and len(err.splitlines()) == 1 and case.path.name in err, err
        assert not (tmp_path / "out.pt").exists()


def test_onnx_gz_goes_to_the_onnx_loader(corpus):
    net = load_network(corpus["onnx_gz_valid"].path)
    assert net.nnmend_meta["format"] == "onnx"
    assert load_network(corpus["nnet_gz_valid"].path).nnmend_meta["format"] == "nnet"


def test_compressed_targets_are_refused(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2))
    for name in ("x.onnx.gz", "x.nnet.gz", "x.pt.gz"):
        with pytest.raises(ModelError, match="uncompressed"):
            save_network(net, tmp_path / name)
        assert not (tmp_path / name).exists()
    (tmp_path / "x.pt.gz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(ModelError, match="decompress the file first"):
        load_network(tmp_path / "x.pt.gz")


def test_gzip_limits(tmp_path, monkeypatch):
    small = tmp_path / "small.bin.gz"
    small.write_bytes(gzip.compress(b"a" * 1000))
    assert read_bytes_capped(small) == b"a" * 1000
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (8 << 20)))  # 8 MB from ~8 KB: over the 100x ratio
    with pytest.raises(ModelError, match="compression bomb"):
        read_bytes_capped(bomb)
    monkeypatch.setenv(MAX_ALLOC_ENV, "1000")
    with pytest.raises(DataError, match="more than the 1 KB allowed"):
        read_bytes_capped(_plain(tmp_path, 2000), error=DataError)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(ModelError, match="not a valid gzip"):
        read_bytes_capped(bad)


def _plain(folder: Path, n: int) -> Path:
    p = folder / "plain.bin"
    p.write_bytes(b"x" * n)
    return p


def test_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(MAX_ALLOC_ENV, "2e9")
    assert max_alloc_bytes() == 2_000_000_000
    monkeypatch.setenv(MAX_ALLOC_ENV, "lots")
    with pytest.raises(NnmendError, match=MAX_ALLOC_ENV):
        max_alloc_bytes()
    monkeypatch.delenv(MAX_ALLOC_ENV)
    assert 0 < max_alloc_bytes() < 1 << 50


def test_a_spec_within_the_cap_but_not_the_files_weights_is_refused_before_building(tmp_path, monkeypatch):
    """The spec is compared with the file's tensors on the meta device: no 40 GB build even with a huge cap."""
    import resource

    from crafted import _checkpoint, _linear_spec, _small_state

    monkeypatch.setenv(MAX_ALLOC_ENV, str(1 << 50))
    path = _checkpoint(tmp_path / "big.pt", _linear_spec(100000, 100000), _small_state())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelError, match=r"\(100000, 100000\) in the architecture"):
        load_network(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20  # KB: under 1 GB more


def test_checkpoint_larger_than_the_cap_is_refused(tmp_path, monkeypatch):
    from nnmend.io.checkpoint import save_checkpoint

    path = save_checkpoint(nn.Sequential(nn.Linear(300, 300)), tmp_path / "net.pt")
    monkeypatch.setenv(MAX_ALLOC_ENV, "100000")  # the weights are 361 KB
    with pytest.raises(ModelError, match="net.pt"):
        load_network(path)
    monkeypatch.setenv(MAX_ALLOC_ENV, str(1 << 30))
    assert load_network(path)[0].weight.shape == (300, 300)


def test_fit_refuses_zero_samples_and_labels_beyond_the_outputs():
    net = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(DataError, match="no samples"):
        fit(net, (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)), epochs=1)
    with pytest.raises(DataError, match="label 7 but the model has 3 classes"):
        fit(net, (torch.zeros(5, 4), torch.full((5,), 7)), epochs=1)
    with pytest.raises(ModelError, match=r"inputs of shape \(6,\)"):
        fit(net, (torch.zeros(5, 6), torch.zeros(5, dtype=torch.long)), epochs=1)
    with pytest.raises(NnmendError, match="batch_size=0"):
        fit(net, (torch.zeros(5, 4), torch.zeros(5, dtype=torch.long)), epochs=1, batch_size=0)
    hist = fit(net, (torch.rand(8, 4), torch.randint(0, 3, (8,))), epochs=2, progress_bar=False)
    assert len(hist.loss) == 2 and all(np.isfinite(hist.loss))


def test_load_dataset_refuses_a_negative_limit(corpus):
    with pytest.raises(DataError, match="limit=-1"):
        load_dataset(corpus["npz_valid"].path, limit=-1)
    assert len(load_dataset(corpus["npz_valid"].path, limit=2)) == 2


@pytest.mark.slow
def test_hardening_benchmark_quick(tmp_path):
    """The benchmark's --quick run: four hostile files in subprocesses, all refused cleanly."""
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "hardening_loaders.py"), "--quick",
                        "--results-dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "hardening_loaders_quick.json").read_text())
    assert res["summary"]["clean error"] == 4 and res["unexpected"] == []
    assert all(rec["peak_rss_mb"] < 1024 for rec in res["records"])
    assert "| pt_huge_spec |" in (tmp_path / "hardening_loaders_quick.md").read_text()
