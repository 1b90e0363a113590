"""Optional extras: which ``pip install nnmend[EXTRA]`` brings which module, and one error that says so.

An optional module that is missing is reported as one line naming the extra, from the API
(:func:`require` raises :class:`MissingExtra`, an ``NnmendError`` and an ``ImportError``) and from the
command line (any ``ModuleNotFoundError`` for one of these modules becomes that line, exit 2).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import NnmendError

# top-level module -> the extra that installs it (pyproject.toml's [project.optional-dependencies])
EXTRAS = {"streamlit": "app", "altair": "app", "maraboupy": "verify", "vnnlib": "verify", "ray": "campaign",
          "yaml": "campaign", "pytest": "dev", "hypothesis": "dev", "playwright": "dev"}
# modules nnmend uses but does not declare, because their metadata pulls torchvision
NO_DEPS = {"torchattacks": "torchattacks==3.5.1", "auto_LiRPA": "auto-lirpa==0.3"}


class MissingExtra(NnmendError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def hint(module: str, purpose: str | None = None) -> str | None:
    """The one-line install advice for the missing top-level ``module``, or None if it is not optional."""
    root = module.split(".")[0]
    what = f"{purpose} needs {root}" if purpose else f"{root} is not installed"
    if root in EXTRAS:
        return f"{what}: pip install 'nnmend[{EXTRAS[root]}]'"
    if root in NO_DEPS:
        return f"{what}: pip install --no-deps {NO_DEPS[root]} (left out of nnmend's dependencies: it pulls torchvision)"
    return None


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming the extra that installs it.

    Example::

        st = require("streamlit", "the workbench")   # MissingExtra: the workbench needs streamlit: pip install 'nnmend[app]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise MissingExtra(hint(missing, purpose) or f"{purpose} needs {missing}: pip install {missing}") from None
