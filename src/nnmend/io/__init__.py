"""Reading and writing networks, properties and reports. Every write is atomic.

Names are imported on first use: ``nnmend.layers`` imports :mod:`nnmend.io.checkpoint` (for
``serializable``) while the ONNX reader imports ``nnmend.layers``, so importing the readers eagerly here
would make the import order of those modules matter.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_NAMES = {
    "atomic_write": "atomic",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "load_network": "checkpoint",
    "save_checkpoint": "checkpoint", "save_network": "checkpoint",
    "load_safetensors": "safetensors_io", "save_safetensors": "safetensors_io",
    "load_nnet": "nnet", "save_nnet": "nnet",
    "load_onnx": "onnx", "save_onnx": "onnx",
    "Region": "vnnlib", "VnnlibSpec": "vnnlib", "read_vnnlib": "vnnlib", "write_vnnlib": "vnnlib",
}
__all__ = list(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)     # a submodule: nnmend.io.onnx, nnmend.io.vnnlib
    raise AttributeError(f"module 'nnmend.io' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
