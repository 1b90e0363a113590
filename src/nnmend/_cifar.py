"""Readers for the CIFAR-10 layouts: nnmend's ``.npz`` pair, the official python batches, the binary batches.

The official python batches (``data_batch_1`` … ``data_batch_5``, ``test_batch``) are pickled dicts. They
are read by :class:`_BatchUnpickler`, which resolves no real class at all: the three globals a numpy array
pickle names (``_reconstruct``, ``ndarray``, ``dtype``) and ``_codecs.encode`` map to inert stand-ins that
only record their arguments, and the array is then rebuilt from its raw bytes with ``np.frombuffer`` after
its dtype (unsigned bytes) and size are checked. Any other global (``os.system``, …) is refused.

Every reader returns ``(images uint8 (N, 32, 32, 3) HWC, labels int64 (N,))``.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ._validation import check_alloc, numel, read_bytes_capped
from .errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_PIXELS = 32 * 32 * 3
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class _DtypeStub:
    """Stands in for ``numpy.dtype(code, align, copy)``; records the code."""

    def __init__(self, code=b"", *_args):
        self.code = code.decode("latin1") if isinstance(code, bytes) else str(code)

    def __setstate__(self, state) -> None:  # byte order etc.; single-byte data has none that matters
        self.state = state


class _ArrayStub:
    """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``; ``__setstate__``
    receives ``(version, shape, dtype, is_fortran, raw)``."""

    def __init__(self, *_args):
        self.state = None

    def __setstate__(self, state) -> None:
        self.state = state


def _codecs_encode(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes: text to bytes, nothing else."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError("_codecs.encode with anything but a latin-1 string")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayStub,
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _codecs_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _key(d: dict, name: str):
    for k in (name.encode(), name):
        if k in d:
            return d[k]
    raise DataError(f"missing key {name!r} (found {sorted(map(str, d))[:8]})")


def _array_from_stub(stub, where: str) -> np.ndarray:
    if not isinstance(stub, _ArrayStub) or not isinstance(stub.state, tuple) or len(stub.state) != 5:
        raise DataError(f"{where}: 'data' is not a pickled numpy array")
    _version, shape, dtype, _fortran, raw = stub.state
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not isinstance(dtype, _DtypeStub) or dtype.code not in ("u1", "uint8", "B"):
        raise DataError(f"{where}: 'data' must be unsigned bytes, found dtype {getattr(dtype, 'code', dtype)!r}")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)) or not isinstance(raw, bytes):
        raise DataError(f"{where}: 'data' has a malformed array header")
    if numel(shape) != len(raw):
        raise DataError(f"{where}: 'data' declares shape {shape} but holds {len(raw)} bytes (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official python batch (a pickled dict with ``data`` N×3072 CHW bytes and ``labels``)."""
    raw = read_bytes_capped(path, error=DataError)
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (holds a {type(obj).__name__}, not a dict)")
    try:
        data, labels = _key(obj, "data"), _key(obj, "labels")
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    x = _array_from_stub(data, str(path))
    if x.ndim != 2 or x.shape[1] != _PIXELS:
        raise DataError(f"{path}: 'data' must be N×{_PIXELS}, got shape {x.shape}")
    if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
        raise DataError(f"{path}: 'labels' must be a list of integers")
    return _chw_rows_to_hwc(x), _labels(labels, x.shape[0], path)


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official binary batch: records of 1 label byte + 3072 CHW pixel bytes."""
    raw = read_bytes_capped(path, error=DataError)
    if not raw or len(raw) % (_PIXELS + 1):
        raise DataError(f"{path}: {len(raw)} bytes is not a whole number of {_PIXELS + 1}-byte CIFAR-10 records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _PIXELS + 1)
    return _chw_rows_to_hwc(rec[:, 1:]), _labels(rec[:, 0], rec.shape[0], path)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """nnmend's layout: ``x`` uint8 (N, 32, 32, 3) HWC, ``y`` integer (N,), read without pickle."""
    from .data import _check_npz_member  # one size check for every .npz reader

    check_alloc(f"{path}: reading the file", path.stat().st_size, error=DataError)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if not {"x", "y"} <= set(arrays.files):
                raise DataError(f"{path}: expected arrays 'x' and 'y', found {sorted(arrays.files)}")
            for key in ("x", "y"):
                _check_npz_member(path, key)
            x, y = arrays["x"], arrays["y"]
    except DataError:
        raise
    except Exception as exc:  # numpy/zipfile raise many types for corrupt archives
        raise DataError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: 'x' must be uint8 (N, 32, 32, 3), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'y' must be integers, got {y.dtype}")
    return x, _labels(y.reshape(-1), x.shape[0], path)


def _chw_rows_to_hwc(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(labels, n: int, path: Path) -> np.ndarray:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if y.shape[0] != n:
        raise DataError(f"{path}: {n} images but {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: CIFAR-10 labels must lie in 0..9, found {y.min()}..{y.max()}")
    return y


def _npz_files(d: Path, split: str) -> list[Path]:
    if split == "test":
        names = ["cifar10_test.npz"]
    else:
        names = ["cifar10_train.npz", "cifar10_train_20k.npz"]
    return [d / n for n in names if (d / n).is_file()][:1]


def _python_files(d: Path, split: str) -> list[Path]:
    names = ("test_batch",) if split == "test" else TRAIN_BATCHES
    return [d / n for n in names if (d / n).is_file()] if (d / names[0]).is_file() else []


def _binary_files(d: Path, split: str) -> list[Path]:
    names = ("test_batch.bin",) if split == "test" else tuple(f"{n}.bin" for n in TRAIN_BATCHES)
    return [d / n for n in names if (d / n).is_file()] if (d / names[0]).is_file() else []


_LAYOUTS = ((_npz_files, read_npz), (_python_files, read_python_batch), (_binary_files, read_binary_batch))
SUBDIRS = ("", "cifar10", "cifar-10", "cifar-10-batches-py", "cifar-10-batches-bin",
           "cifar10/cifar-10-batches-py", "cifar10/cifar-10-batches-bin")


def holds_cifar10(d: Path) -> bool:
    """Whether folder ``d`` itself holds CIFAR-10 in one of the layouts (either split)."""
    return any(find(d, split) for find, _ in _LAYOUTS for split in ("train", "test"))


def read_cifar10(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Images and labels of ``split`` from the first layout found under ``root`` (see :data:`SUBDIRS`);
    also the files read."""
    for sub in SUBDIRS:
        d = root / sub if sub else root
        if not d.is_dir():
            continue
        for find, read in _LAYOUTS:
            files = find(d, split)
            if files:
                parts = [read(f) for f in files]
                xs, ys = [p[0] for p in parts], [p[1] for p in parts]
                x = xs[0] if len(xs) == 1 else np.concatenate(xs)
                return x, (ys[0] if len(ys) == 1 else np.concatenate(ys)), files
    raise DataError(
        f"{root}: no CIFAR-10 {split} data found (looked for cifar10_{split}*.npz, the python batches "
        f"{'test_batch' if split == 'test' else 'data_batch_1…5'} and their .bin versions in "
        f"{', '.join(s or '.' for s in SUBDIRS)})")
