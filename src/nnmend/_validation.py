"""Validation at the edge: turn bad tensors, names and options into clear :mod:`nnmend.errors`.

The numeric core trusts its inputs; everything a user hands in passes through these helpers first.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import DataError, ModelError, NnmendError, describe

# --- memory limits: every size a file declares is checked against one cap before anything is allocated --

MAX_ALLOC_ENV = "NNMEND_MAX_ALLOC_BYTES"
"""Environment variable that sets the cap in bytes (e.g. ``NNMEND_MAX_ALLOC_BYTES=2e9``)."""
DEFAULT_MEMORY_FRACTION = 0.25
"""Without the variable, the cap is this fraction of the machine's physical memory."""
MAX_GZIP_RATIO = 100
"""A ``.gz`` input may expand at most this many times its compressed size (real network, data and
property files expand 1-20x; gzip reaches ~1000x only on degenerate data such as a compression bomb)."""
_FALLBACK_MEMORY = 8 << 30  # assumed physical memory where the OS does not report it


def physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return _FALLBACK_MEMORY


def max_alloc_bytes() -> int:
    """The largest single allocation (bytes) a loader may make for what a file declares.

    ``$NNMEND_MAX_ALLOC_BYTES`` when set, else :data:`DEFAULT_MEMORY_FRACTION` of physical memory.
    """
    raw = os.environ.get(MAX_ALLOC_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise NnmendError(f"${MAX_ALLOC_ENV}={raw!r} is not a number of bytes") from None
        if not (math.isfinite(value) and value > 0):
            raise NnmendError(f"${MAX_ALLOC_ENV}={raw!r} must be a positive number of bytes")
        return int(value)
    return int(physical_memory_bytes() * DEFAULT_MEMORY_FRACTION)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def check_alloc(what: str, n_bytes: int | float, *, error: type[NnmendError] = ModelError,
                limit: int | None = None) -> None:
    """Refuse (``error``) before allocating ``n_bytes`` for ``what`` when it exceeds the cap."""
    cap = max_alloc_bytes() if limit is None else limit
    if n_bytes > cap:
        raise error(f"{what} needs {_human(n_bytes)}, more than the {_human(cap)} allowed "
                    f"(set ${MAX_ALLOC_ENV} to raise the limit)")


def numel(shape: Iterable[int]) -> int:
    """Element count of ``shape`` in exact integer arithmetic (no overflow for absurd declared sizes)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def read_bytes_capped(path: str | os.PathLike, *, error: type[NnmendError] = ModelError,
                      limit: int | None = None) -> bytes:
    """The bytes of ``path`` (decompressed when it ends in ``.gz``), refusing more than the cap.

    A plain file is checked by its size before it is read; a ``.gz`` file is decompressed in chunks and
    refused as soon as the output passes the cap or :data:`MAX_GZIP_RATIO` times the compressed size,
    so a small compression bomb never expands in memory.
    """
    path = Path(path)
    cap = max_alloc_bytes() if limit is None else limit
    try:
        if not path.is_file():
            raise error(f"{path}: file not found" if not path.exists() else f"{path}: not a regular file")
        if path.suffix.lower() != ".gz":
            check_alloc(f"{path}: reading the file", path.stat().st_size, error=error, limit=cap)
            return path.read_bytes()
        return _gunzip_capped(path, min(cap, max(1 << 20, MAX_GZIP_RATIO * path.stat().st_size)), error)
    except OSError as exc:
        raise error(f"{path}: cannot read ({describe(exc)})") from None


def _gunzip_capped(path: Path, cap: int, error: type[NnmendError]) -> bytes:
    out = bytearray()
    try:
        with gzip.open(path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    return bytes(out)
                out += chunk
                if len(out) > cap:
                    raise error(f"{path}: decompresses to more than {_human(cap)} (a compression bomb? at most "
                                f"{MAX_GZIP_RATIO}x the compressed size and ${MAX_ALLOC_ENV} are allowed)")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise error(f"{path}: not a valid gzip file (truncated or corrupt: {describe(exc)})") from None


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise NnmendError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def check_fraction(name: str, value: float, *, allow_zero: bool = True) -> float:
    v = float(value)
    lo_ok = v >= 0.0 if allow_zero else v > 0.0
    if not (lo_ok and v <= 1.0):
        raise NnmendError(f"{name}={value} must lie in {'[0' if allow_zero else '(0'}, 1]")
    return v


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise NnmendError(f"{name}={value} must be positive")
    return value


def check_inputs(x: torch.Tensor, *, name: str = "inputs", unit_range: bool = True) -> torch.Tensor:
    """Inputs must be a floating tensor with a batch dimension, finite, and (by default) in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DataError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.dim() < 2:
        raise DataError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{name} contains NaN or Inf values")
    if unit_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{name} must lie in [0, 1] (got min {x.min().item():.4g}, max {x.max().item():.4g})")
    return x


def check_labels(y: torch.Tensor, n: int, num_classes: int | None = None, *, name: str = "labels") -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise DataError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError(f"{name} must be integers")
    y = y.long()
    if y.numel() and y.min() < 0:
        raise DataError(f"{name} contain a negative label ({y.min().item()})")
    if num_classes is not None and y.numel() and y.max() >= num_classes:
        raise DataError(f"{name} contain label {y.max().item()} but the model has {num_classes} classes")
    return y


def check_finite_params(model: nn.Module, *, what: str = "model") -> None:
    """Raise :class:`ModelError` naming the first parameter holding NaN or Inf."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ModelError(f"{what} parameter {name!r} (shape {tuple(p.shape)}) contains NaN or Inf")


def check_input_fits(model: nn.Module, example: torch.Tensor, *, what: str = "model") -> torch.Tensor:
    """Run one example through ``model``; a shape mismatch becomes a ModelError naming both shapes."""
    try:
        with torch.no_grad():
            return model(example[:1])
    except RuntimeError as exc:  # torch shape errors
        raise ModelError(
            f"{what} cannot take inputs of shape {tuple(example.shape[1:])}: {str(exc).splitlines()[0]}"
        ) from None


def check_same_length(**tensors: Sequence) -> int:
    lengths = {k: len(v) for k, v in tensors.items()}
    if len(set(lengths.values())) > 1:
        raise DataError("length mismatch: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    return next(iter(lengths.values()))
