"""Helpers of the flat public API (``nnmend/__init__.py``): lazy names and callable modules."""
from __future__ import annotations

import sys
import types
from typing import Callable


def callable_module(module_name: str, fn: Callable) -> None:
    """Make the module ``module_name`` callable as ``fn``.

    ``nnmend.diagnose`` is both a module and its main function: once the submodule is imported, Python
    sets the package attribute to the module whatever the package exported, so the module itself calls
    ``fn``. ``nnmend.diagnose(ref, net, x)`` and ``nnmend.diagnose.trace(...)`` then both work, in any
    import order.
    """
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    _CallableModule.__call__.__doc__ = fn.__doc__
    module.__class__ = _CallableModule
