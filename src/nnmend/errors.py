"""Errors that nnmend raises for bad input.

Every error names the file, key, layer or shape at fault, so the CLI can print it as one line and exit
non-zero instead of showing a traceback from deep inside torch.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator


class NnmendError(ValueError):
    """Base class: a user-facing problem with the input (file, field, shape, option)."""


class DataError(NnmendError):
    """A data file is missing, truncated or has the wrong keys / shapes / label range."""


class ModelError(NnmendError):
    """A network or checkpoint is unusable: wrong architecture, NaN weights, unknown layer."""


class PropertyError(NnmendError):
    """A property file or specification is malformed or does not fit the network."""


class RepairError(NnmendError):
    """A repair cannot run as asked (bad option, nothing to repair, infeasible constraints)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def describe(exc: BaseException, limit: int = 160) -> str:
    """``"TypeName: first line of the message"`` (just the type name when the message is empty; at most
    ``limit`` characters of message, terminal colour codes removed), for error messages that quote a
    library's exception without its traceback."""
    lines = _ANSI.sub("", str(exc)).strip().splitlines()
    if not lines:
        return type(exc).__name__
    text = lines[0].strip()
    return f"{type(exc).__name__}: {text if len(text) <= limit else text[:limit - 1] + '…'}"


@contextlib.contextmanager
def reading(path: object, error: type[NnmendError] = ModelError) -> Iterator[None]:
    """Turn an unexpected exception of a loader reading ``path`` into ``error`` naming the file.

    Loaders should raise :class:`NnmendError` themselves; this is the guard (used by the command line and
    the instance readers) for the ones that do not yet (an empty ``.pt`` raising IndexError, a corrupt
    ``.npz`` BadZipFile).
    """
    try:
        yield
    except NnmendError:
        raise
    except MemoryError:
        raise error(f"{path}: too large to load on this machine (out of memory)") from None
    except Exception as exc:              # noqa: BLE001 - any other failure while reading means a bad file
        raise error(f"{path}: cannot read ({describe(exc)})") from None
