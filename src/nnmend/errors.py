"""Errors that nnmend raises for bad input.

Every error names the file, key, layer or shape at fault, so the CLI can print it as one line and exit
non-zero instead of showing a traceback from deep inside torch.
"""
from __future__ import annotations


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


def describe(exc: BaseException) -> str:
    """``"TypeName: first line of the message"`` (just the type name when the message is empty), for
    error messages that quote a library's exception without its traceback."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
