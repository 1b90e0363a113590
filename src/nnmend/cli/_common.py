"""Argument groups, loaders and the output-path check shared by the commands (no method logic here).

Output policy, the same for every command: an output that is also an input (the same file, through
any path, link or a sibling the command writes beside its output) is refused; an output that exists
already is refused unless ``--force`` is given; a folder is never replaced by a file. All checks run
before any work starts and print one line naming both paths (exit 2).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Iterator, Mapping

from torch import nn

from ..data import Dataset, load_dataset
from ..errors import DataError, ModelError, NnmendError, PropertyError, describe
from ..io import load_network

NETWORK_SUFFIXES = (".pt", ".pth", ".safetensors", ".onnx", ".nnet")
FORCE_HELP = "replace output files that already exist (an input is never replaced)"


def add_option_once(group, *flags: str, **kwargs) -> None:
    """Add an option unless another repair method already registered the same flag (``--property``,
    ``--eps`` are shared by the provable methods); the first registration's help text is kept."""
    existing = getattr(group, "_option_string_actions", {})
    if any(f in existing for f in flags):
        return
    group.add_argument(*flags, **kwargs)


def add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def add_data_args(p: argparse.ArgumentParser, default_n: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="mnist", help="mnist | fashion-mnist | digits | a path (IDX dir, .npz, .mat)")
    g.add_argument("--n", type=int, default=default_n, help="use only the first N samples")


# --- reading inputs: every failure is one line naming the file ---------------------------------------------
@contextlib.contextmanager
def reading(path: object, error: type[NnmendError] = ModelError) -> Iterator[None]:
    """Turn an unexpected exception of a loader reading ``path`` into ``error`` naming the file.

    Loaders should raise :class:`NnmendError` themselves; this is the command line's guard for the
    ones that do not yet (an empty ``.pt`` raising IndexError, a corrupt ``.npz`` BadZipFile).
    """
    try:
        yield
    except NnmendError:
        raise
    except MemoryError:
        raise error(f"{path}: too large to load on this machine (out of memory)") from None
    except Exception as exc:              # noqa: BLE001 - any other failure while reading means a bad file
        raise error(f"{path}: cannot read ({describe(exc)})") from None


def load_data(args: argparse.Namespace, split: str) -> Dataset:
    with reading(args.data, DataError):
        return load_dataset(args.data, split, limit=args.n if split == "test" else None)


def load_model(path: str | os.PathLike, **kwargs) -> nn.Module:
    with reading(path, ModelError):
        return load_network(path, **kwargs)


def load_property(path: str | os.PathLike):
    """A property file (VNN-LIB) as :func:`nnmend.properties.read_property` returns it."""
    from ..properties import read_property

    with reading(path, PropertyError):
        return read_property(path)


# --- writing outputs: never over an input, never silently over an existing file ---------------------------
def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_suffix(path: str | os.PathLike, role: str, allowed: tuple[str, ...]) -> None:
    """Refuse an output whose suffix is not one of ``allowed`` (the format is chosen by the suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise NnmendError(f"{path} ({role}): unknown output format {suffix or '(no suffix)'!r}; "
                          f"use one of {', '.join(allowed)}")


def check_outputs(inputs: Mapping[str, object], outputs: Mapping[str | os.PathLike, str], force: bool) -> None:
    """Refuse outputs that would replace an input, a folder or (without ``force``) an existing file.

    ``inputs`` maps a role (``"MODEL"``, ``"--data"``) to a path, or to None / a bundled name that is
    no file; ``outputs`` maps every path the command will write (siblings included) to its role.
    """
    files = {role: Path(p) for role, p in inputs.items()
             if isinstance(p, (str, os.PathLike)) and str(p) and Path(p).exists()}
    outs = {Path(out): role for out, role in outputs.items()}
    for out, out_role in outs.items():             # first: would any output replace an input?
        for in_role, inp in files.items():
            if _same_file(out, inp):
                raise NnmendError(f"refusing to overwrite the input {inp} ({in_role}) with {out} ({out_role}); "
                                  "choose another output path")
    seen: dict[Path, str] = {}
    for out, out_role in outs.items():
        key = out.resolve()
        if key in seen:
            raise NnmendError(f"{out} ({out_role}) is also written as {seen[key]}; choose another output name")
        seen[key] = out_role
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise NnmendError(f"{out} ({out_role}): {parent} is a file, not a folder")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise NnmendError(f"{out} ({out_role}): no permission to write into {parent}")
        if out.is_dir():
            raise NnmendError(f"{out} ({out_role}) is a folder; give a file path")
        if out.exists() and not force:
            raise NnmendError(f"{out} ({out_role}) already exists; pass --force to replace it")


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
