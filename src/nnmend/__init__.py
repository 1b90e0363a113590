"""nnmend: find and mend defects in trained neural networks.

The flow: load a network → damage or attack it → diagnose → repair → verify / evaluate → save.
See DESIGN.md for the map of the package. Every public name is imported on first use, so
``import nnmend`` is fast (torch loads when a name needs it).

Example::

    import nnmend
    net = nnmend.pretrained("shnn_mlp_mnist")
    test = nnmend.load_dataset("mnist", "test")
    hurt, fault = nnmend.damage(net, "fc2", "gaussian", seed=1)
    d = nnmend.diagnose(net, hurt, test.x[:100])                  # d.localized == "fc2"
    x_adv = nnmend.attacks.PGD(net, eps=0.1, steps=20)(test.x[:100], test.y[:100])
    lb, ub = nnmend.BoundedNetwork(net, (1, 28, 28)).compute_bounds(x=test.x[:8], eps=0.01, method="crown")
    nnmend.save_network(net, "net.safetensors")
    result = nnmend.repair.run("prorepair", net, problem)        # any registered method, one call shape
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ._version import __version__
from .errors import DataError, ModelError, NnmendError, PropertyError, RepairError

# public name -> the submodule that defines it
_NAMES = {
    "Dataset": "data", "load_dataset": "data", "poison": "data",
    "GraphNetwork": "graph", "from_module": "graph",
    "load_network": "io", "save_network": "io", "read_vnnlib": "io", "write_vnnlib": "io",
    "named_layers": "nets", "get_layer": "nets", "pretrained": "nets", "shnn_mlp": "nets",
    "fit": "train", "accuracy": "train",
    "damage": "faults", "Fault": "faults",
    "Diagnosis": "diagnose", "trace": "diagnose", "localize": "diagnose",
    "fgsm": "attacks", "pgd": "attacks", "autoattack": "attacks", "FGSM": "attacks", "PGD": "attacks",
    "AutoAttack": "attacks", "square": "attacks", "Square": "attacks", "robust_accuracy": "attacks",
    "BoundedNetwork": "bounds", "bound": "bounds", "interval_bounds": "bounds", "crown_bounds": "bounds",
    "alpha_crown_bounds": "bounds",
    "LocalRobustness": "properties", "SafetyProperty": "properties", "check": "properties",
    "read_property": "properties",
    "RepairResult": "repair",
    "recovery": "metrics",
}
# sub-packages reached as attributes (``nnmend.attacks.PGD``); ``nnmend.diagnose`` is also callable
_MODULES = ("attacks", "bounds", "data", "diagnose", "faults", "graph", "io", "metrics", "nets", "properties",
            "repair", "report", "train")

__all__ = ["__version__", "NnmendError", "DataError", "ModelError", "PropertyError", "RepairError",
           *_NAMES, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value          # later lookups skip this hook
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)     # any other submodule: nnmend.layers, nnmend.plots
    raise AttributeError(f"module 'nnmend' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
