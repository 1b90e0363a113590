"""Errors that nnmend raises for bad input.

Every error names the file, key, layer or shape at fault, so the CLI can print it as one line and exit
non-zero instead of showing a traceback from deep inside torch.
"""
from __future__ import annotations

import re


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
