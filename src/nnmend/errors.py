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
