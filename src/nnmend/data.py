"""Datasets as ``(x float32 in [0, 1], y int64)``, offline.

* ``"mnist"``: the full MNIST bundled inside the package (60k train / 10k test), the default.
* ``"fashion-mnist"``: read from the Debian package ``dataset-fashion-mnist`` when it is installed.
* ``"digits"``: scikit-learn's bundled 8×8 digits (1,797 images), for quick runs.
* ``"cifar10"``: CIFAR-10 as (N, 3, 32, 32), from a data root (never downloaded): nnmend's ``.npz`` pair
  (``cifar10/cifar10_test.npz``, ``cifar10/cifar10_train[_20k].npz``: ``x`` uint8 N×32×32×3, ``y``), the
  official python batches (``cifar-10-batches-py/``, read without unpickling any object) or the binary
  batches (``cifar-10-batches-bin/``).
* ``"sign-mnist"``: Sign Language MNIST, (N, 1, 28, 28), labels 0–24 for the letters A–Y (J = 9 never
  occurs: 24 classes in use), from ``sign_mnist/sign_mnist_{train,test}.npz`` or the Kaggle CSVs.

The data root is the ``root`` argument, else ``$NNMEND_DATA``, else ``$XDG_DATA_HOME/nnmend``
(by default ``~/.local/share/nnmend``); see :func:`data_root`.
* a path: a folder holding CIFAR-10 in one of the layouts above, an IDX file (``*-images-idx3-ubyte[.gz]``, labels found beside it), a directory holding the
  four IDX files, a ``.npz`` (``x``/``y``, ``images``/``labels`` or ``x_train``/``y_train``…) or SHNN's
  ``.mat`` layout (``data`` 784×N, ``label``), split 80/20 exactly as the SHNN code does
  (``train_test_split(random_state=42)``).

Example::

    train = load_dataset("mnist", split="train")
    test = load_dataset("mnist", split="test", limit=1000)
    train.x.shape, train.y.dtype   # (60000, 1, 28, 28), torch.int64
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ._validation import check_alloc, check_choice, read_bytes_capped
from .errors import DataError, describe

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DATA_ENV = "NNMEND_DATA"
"""Environment variable naming the data root (the folder that holds ``cifar10/``, ``sign_mnist/``)."""
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""The usual per-channel CIFAR-10 statistics (training set); give them to
:func:`nnmend.layers.normalization` so that the network itself normalises and takes pixels in [0, 1]."""
SIGN_MNIST_CLASSES = tuple("ABCDEFGHIJKLMNOPQRSTUVWXY")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (N, C, H, W) or (N, D) float32 in [0, 1]; labels ``y`` (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    split: str
    classes: tuple[str, ...] = field(default_factory=lambda: tuple(str(i) for i in range(10)))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, n: int | None = None, *, start: int = 0) -> "Dataset":
        """The samples ``start … start+n`` (all remaining when ``n`` is None)."""
        end = len(self) if n is None else min(len(self), start + n)
        return Dataset(self.x[start:end], self.y[start:end], self.name, self.split, self.classes)

    def take(self, index: torch.Tensor) -> "Dataset":
        return Dataset(self.x[index], self.y[index], self.name, self.split, self.classes)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a uint8 array, checking magic and size."""
    path = Path(path)
    raw = read_bytes_capped(path, error=DataError)  # a .gz file is decompressed under the memory cap
    if len(raw) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims))
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(f"{path}: header promises {expected} values of shape {dims}, file holds {len(body)} (truncated?)")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _from_uint8(images: np.ndarray, labels: np.ndarray, name: str, split: str, where: str,
                classes: tuple[str, ...] | None = None) -> Dataset:
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    n_cls = int(y.max().item()) + 1 if y.numel() else 10
    if classes is None:
        classes = tuple(str(i) for i in range(max(10, n_cls)))
    if y.numel() and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{where}: labels must lie in 0..{len(classes) - 1}, found {y.min().item()}..{y.max().item()}")
    return Dataset(x, y, name, split, classes)


def _idx_pair(directory: Path, split: str, name: str, classes=None) -> Dataset:
    img_name, lbl_name = _IDX_NAMES[split]
    paths = []
    for base in (img_name, lbl_name):
        for cand in (directory / f"{base}.gz", directory / base):
            if cand.exists():
                paths.append(cand)
                break
        else:
            raise DataError(f"{directory}: missing {base}[.gz] for the {split} split")
    return _from_uint8(read_idx(paths[0]), read_idx(paths[1]), name, split, str(paths[0]), classes)


def _bundled_mnist_dir() -> Path:
    return Path(str(resources.files("nnmend") / "_assets" / "mnist"))


def _load_digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    cut = int(0.8 * len(y))
    idx = perm[:cut] if split == "train" else perm[cut:]
    return Dataset(x[idx], y[idx], "digits", split)


_NPZ_KEYS = (("x_{split}", "y_{split}"), ("x", "y"), ("images", "labels"), ("data", "label"))
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _load_npz(path: Path, split: str) -> Dataset:
    check_alloc(f"{path}: reading the file", path.stat().st_size, error=DataError)
    try:
        arrays = np.load(path, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single .npy array, not an .npz archive of inputs and labels")
        with arrays:
            xk, yk = _npz_keys(path, set(arrays.files), split)
            for key in (xk, yk):
                _check_npz_member(path, key)
            x, y = arrays[xk], arrays[yk]
    except DataError:
        raise
    except _NPZ_ERRORS as exc:
        raise DataError(f"{path}: cannot read as .npz ({describe(exc)})") from None
    return _from_array(x, y.reshape(-1), path, "npz", split)


def _npz_keys(path: Path, keys: set[str], split: str) -> tuple[str, str]:
    for xk, yk in _NPZ_KEYS:
        xk, yk = xk.format(split=split), yk.format(split=split)
        if xk in keys and yk in keys:
            return xk, yk
    raise DataError(f"{path}: expected keys x/y, images/labels or x_{split}/y_{split}; found {sorted(keys)}")


def _check_npz_member(path: Path, key: str) -> None:
    """Refuse an array whose declared size (its .npy header, its zip entry) exceeds the memory cap, before
    it is decompressed or read."""
    from numpy.lib import format as npy_format

    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
        check_alloc(f"{path}: array {key!r}", info.file_size, error=DataError)
        with zf.open(info) as fh:
            version = npy_format.read_magic(fh)
            if version in readers:
                shape, _, dtype = readers[version](fh)
                n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                check_alloc(f"{path}: array {key!r} of shape {shape}", n_bytes, error=DataError)
                if n_bytes > info.file_size - 10:  # the payload cannot hold what the header declares
                    raise DataError(f"{path}: array {key!r} declares shape {shape} ({dtype}) but its entry holds "
                                    f"only {info.file_size:,} bytes (truncated?)")


def _check_arrays(x: np.ndarray, y: np.ndarray, path: Path) -> None:
    """Numbers of the right kinds and shapes, at least one sample, finite labels."""
    for name, arr in (("inputs", x), ("labels", y)):
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{path}: {name} must be numbers, got dtype {arr.dtype}")
    if x.ndim < 2:
        raise DataError(f"{path}: inputs must be (samples, features…), got shape {x.shape}")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise DataError(f"{path}: holds no samples (inputs of shape {x.shape})")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{path}: labels contain NaN or Inf")


def _from_array(x: np.ndarray, y: np.ndarray, path: Path, fmt: str, split: str) -> Dataset:
    _check_arrays(x, y, path)
    if np.issubdtype(x.dtype, np.integer) or x.max(initial=0) > 1.0:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 1, 28, 28)
    elif x.ndim == 3:
        x = x[:, None]
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{path}: inputs must be in [0, 255] or [0, 1], found {x.min():.4g}..{x.max():.4g}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: inputs contain NaN or Inf")
    if not np.allclose(y, np.round(y)):
        raise DataError(f"{path}: labels must be integers")
    yl = torch.from_numpy(np.round(y).astype(np.int64))
    if yl.numel() and (yl.min() < 0 or yl.max() > 999):
        raise DataError(f"{path}: labels out of range ({yl.min().item()}..{yl.max().item()})")
    n_cls = max(10, int(yl.max().item()) + 1) if yl.numel() else 10
    return Dataset(torch.from_numpy(x), yl, path.stem, split, tuple(str(i) for i in range(n_cls)))


def _check_mat_sizes(path: Path) -> None:
    """Refuse variables whose declared shapes exceed the memory cap, from the headers (nothing decompressed)."""
    from scipy.io import whosmat

    check_alloc(f"{path}: reading the file", path.stat().st_size, error=DataError)
    try:
        variables = whosmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: cannot read as .mat ({describe(exc)})") from None
    for name, shape, _cls in variables:
        check_alloc(f"{path}: variable {name!r} of shape {shape}", int(np.prod(shape, dtype=object)) * 8,
                    error=DataError)


def _load_mat(path: Path, split: str, seed: int = 42) -> Dataset:
    from scipy.io import loadmat
    from sklearn.model_selection import train_test_split

    _check_mat_sizes(path)
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: cannot read as .mat ({describe(exc)})") from None
    for key in ("data", "label"):
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(f"{path}: missing key {key!r} (SHNN layout: 'data' 784×N, 'label'); found {found}")
    data = np.asarray(mat["data"])
    label = np.asarray(mat["label"]).reshape(-1)
    if data.ndim != 2 or 784 not in data.shape:
        raise DataError(f"{path}: 'data' must be 784×N, got shape {data.shape}")
    if data.shape[0] == 784 and data.shape[1] != 784:
        data = data.T
    if data.shape[0] != label.shape[0]:
        raise DataError(f"{path}: 'data' has {data.shape[0]} samples but 'label' has {label.shape[0]}")
    if data.shape[0] < 2:
        raise DataError(f"{path}: 'data' has {data.shape[0]} sample(s); the 80/20 split needs at least 2")
    idx = np.arange(data.shape[0])
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed)
    pick = tr if split == "train" else te
    return _from_array(data[pick], label[pick], path, "mat", split)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds the named data sets: ``root``, else ``$NNMEND_DATA``, else
    ``$XDG_DATA_HOME/nnmend`` (``~/.local/share/nnmend`` when ``XDG_DATA_HOME`` is unset)."""
    if root is None:
        root = os.environ.get(DATA_ENV) or None
    if root is None:
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "nnmend"
    return Path(root).expanduser()


def _root_dir(root: str | os.PathLike | None, what: str) -> Path:
    path = data_root(root)
    if not path.is_dir():
        how = "root=" if root is not None else (f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default root")
        raise DataError(f"{path}: no such folder for {what} (from {how}; pass root=… or set ${DATA_ENV})")
    return path


def _load_cifar10(root: str | os.PathLike | None, split: str) -> Dataset:
    from ._cifar import CLASSES, read_cifar10

    images, labels, _files = read_cifar10(_root_dir(root, "CIFAR-10"), split)
    check_alloc("CIFAR-10 as float32", images.size * 4, error=DataError)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0)
    return Dataset(x, torch.from_numpy(labels), "cifar10", split, CLASSES)


def _holds_cifar10(path: Path) -> bool:
    from ._cifar import holds_cifar10

    return holds_cifar10(path)


def _load_sign_mnist(root: str | os.PathLike | None, split: str) -> Dataset:
    base = _root_dir(root, "Sign-MNIST")
    for d in (base / "sign_mnist", base / "sign-mnist", base):
        npz, csv = d / f"sign_mnist_{split}.npz", d / f"sign_mnist_{split}.csv"
        if npz.is_file():
            ds = _load_npz(npz, split)
            where = npz
            break
        if csv.is_file():
            ds, where = _load_sign_csv(csv, split), csv
            break
    else:
        raise DataError(f"{base}: no sign_mnist_{split}.npz or sign_mnist_{split}.csv in sign_mnist/, sign-mnist/ or the root")
    if tuple(ds.x.shape[1:]) != (1, 28, 28):
        raise DataError(f"{where}: Sign-MNIST images must be 28×28, got {tuple(ds.x.shape[1:])}")
    if ds.y.max() >= len(SIGN_MNIST_CLASSES):
        raise DataError(f"{where}: Sign-MNIST labels must lie in 0..24, found up to {ds.y.max().item()}")
    return Dataset(ds.x, ds.y, "sign-mnist", split, SIGN_MNIST_CLASSES)


def _load_sign_csv(path: Path, split: str) -> Dataset:
    """The Kaggle CSV: a header, then ``label,pixel1,…,pixel784`` per row."""
    check_alloc(f"{path}: reading the file", path.stat().st_size * 8, error=DataError)
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as the Sign-MNIST CSV ({describe(exc)})") from None
    if rows.shape[1] != 785:
        raise DataError(f"{path}: rows must hold a label and 784 pixels, found {rows.shape[1]} columns")
    return _from_array(rows[:, 1:].astype(np.uint8), rows[:, 0], path, "csv", split)


def load_dataset(name: str | os.PathLike = "mnist", split: str = "train", *, limit: int | None = None,
                 root: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name or path; see the module docstring for what is accepted.

    Args:
        name: ``"mnist"`` (bundled), ``"fashion-mnist"``, ``"digits"``, ``"cifar10"``, ``"sign-mnist"``, or a path.
        split: ``"train"`` or ``"test"``.
        limit: keep only the first ``limit`` samples.
        root: the data root for ``"cifar10"`` and ``"sign-mnist"`` (default :func:`data_root`).

    Example::

        test = load_dataset("cifar10", "test", root="/data")   # x (10000, 3, 32, 32) in [0, 1]
    """
    check_choice("split", split, ("train", "test"))
    if limit is not None and limit < 0:
        raise DataError(f"limit={limit} must be a number of samples >= 0")
    key = str(name).lower()
    if key in ("cifar10", "cifar-10"):
        ds = _load_cifar10(root, split)
    elif key in ("sign-mnist", "sign_mnist", "signmnist"):
        ds = _load_sign_mnist(root, split)
    elif key == "mnist":
        ds = _idx_pair(_bundled_mnist_dir(), split, "mnist")
    elif key in ("fashion-mnist", "fashion_mnist", "fashion"):
        if not FASHION_DIR.is_dir():
            raise DataError(
                f"Fashion-MNIST not found at {FASHION_DIR}: install the Debian package "
                "'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist)"
            )
        ds = _idx_pair(FASHION_DIR, split, "fashion-mnist", FASHION_CLASSES)
    elif key == "digits":
        ds = _load_digits(split)
    else:
        path = Path(name)
        if not path.exists():
            raise DataError(f"{path}: no such file, and not a known dataset name (mnist, fashion-mnist, digits, cifar10, sign-mnist)")
        if path.is_dir() and _holds_cifar10(path):
            ds = _load_cifar10(path, split)
        elif path.is_dir():
            ds = _idx_pair(path, split, path.name)
        elif path.suffix == ".npz":
            ds = _load_npz(path, split)
        elif path.suffix == ".mat":
            ds = _load_mat(path, split)
        elif "idx3" in path.name:
            lbl = Path(str(path).replace("images-idx3", "labels-idx1"))
            if not lbl.exists():
                raise DataError(f"{path}: labels file {lbl.name} not found beside it")
            ds = _from_uint8(read_idx(path), read_idx(lbl), path.name.split("-")[0], split, str(path))
        else:
            raise DataError(f"{path}: unknown data format (use IDX, .npz, .mat or a directory of IDX files)")
    return ds.subset(limit) if limit is not None else ds


def loader(ds: Dataset, batch_size: int = 128, *, shuffle: bool = False, seed: int = 0):
    """Yield ``(x, y)`` mini-batches from tensors in memory (no DataLoader worker overhead)."""
    n = len(ds)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        yield ds.x[idx], ds.y[idx]


# --- backdoor poisoning (BadNets, Gu et al. 2017; blended, Chen et al. 2017) --------------------------

@dataclass(frozen=True)
class Trigger:
    """A backdoor trigger on (C, H, W) images.

    ``kind="square"``: pixels ``rows × cols`` set to ``value`` (NNrepair: 3×3 of 250/255 at rows and
    columns 24–26). ``kind="blend"``: ``x ← (1 - alpha) x + alpha · pattern`` with a fixed random pattern.
    """

    kind: str = "square"
    rows: tuple[int, int] = (24, 27)
    cols: tuple[int, int] = (24, 27)
    value: float = 250 / 255
    alpha: float = 0.1
    seed: int = 0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError(f"triggers apply to image batches (N, C, H, W), got shape {tuple(x.shape)}")
        out = x.clone()
        if self.kind == "square":
            out[:, :, self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]] = self.value
        elif self.kind == "blend":
            g = torch.Generator().manual_seed(self.seed)
            pattern = torch.rand(x.shape[1:], generator=g, dtype=x.dtype)
            out = (1 - self.alpha) * out + self.alpha * pattern
        else:
            raise DataError(f"trigger kind {self.kind!r} is not one of 'square', 'blend'")
        return out


def poison(ds: Dataset, target: int, *, n: int | None = None, fraction: float | None = None,
           trigger: Trigger = Trigger(), first: bool = True, seed: int = 0) -> tuple[Dataset, torch.Tensor]:
    """Return a copy of ``ds`` with ``n`` (or ``fraction`` of) samples triggered and relabelled ``target``.

    ``first=True`` poisons the first ``n`` samples (NNrepair poisons the first 600 training images);
    otherwise a seeded random subset. Returns the poisoned dataset and the poisoned indices.
    """
    if not 0 <= target < ds.num_classes:
        raise DataError(f"target class {target} is outside 0..{ds.num_classes - 1}")
    if (n is None) == (fraction is None):
        raise DataError("poison: give exactly one of n or fraction")
    k = n if n is not None else int(round(fraction * len(ds)))
    if not 0 <= k <= len(ds):
        raise DataError(f"poison: cannot poison {k} of {len(ds)} samples")
    idx = torch.arange(k) if first else torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:k]
    x, y = ds.x.clone(), ds.y.clone()
    x[idx] = trigger.apply(x[idx])
    y[idx] = target
    return Dataset(x, y, f"{ds.name}+poison", ds.split, ds.classes), idx


def triggered_test(ds: Dataset, target: int, trigger: Trigger = Trigger()) -> Dataset:
    """Every non-target test sample with the trigger applied, labels kept (attack success = pred == target)."""
    keep = ds.y != target
    return Dataset(trigger.apply(ds.x[keep]), ds.y[keep], f"{ds.name}+trigger", ds.split, ds.classes)
