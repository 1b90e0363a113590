"""Model zoo and layer access.

``named_layers(model)`` lists a network's weight layers (``nn.Linear`` / ``nn.Conv2d``) in execution
order under their qualified names; every other module (faults, diagnose, repair) refers to layers by
those names. ``pretrained(name)`` loads a small checkpoint shipped with the package.

Example::

    net = shnn_mlp()
    list(named_layers(net))        # ['fc1', 'fc2', 'fc3', 'fc4']
    get_layer(net, "fc2")           # Linear(256, 128)
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import ModelError

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.GELU, nn.ELU)


def mlp(sizes: list[int], *, flatten: bool = True, prefix: str = "fc") -> nn.Sequential:
    """A ReLU MLP with layers named ``fc1 … fcK`` (no activation after the last)."""
    mods: "OrderedDict[str, nn.Module]" = OrderedDict()
    if flatten:
        mods["flatten"] = nn.Flatten()
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        mods[f"{prefix}{i}"] = nn.Linear(a, b)
        if i < len(sizes) - 1:
            mods[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(mods)


def shnn_mlp() -> nn.Sequential:
    """SHNN's MNIST MLP 784-256-128-64-10 (paper 000, Sec. IV; Adam, 10 epochs, batch 128)."""
    return mlp([784, 256, 128, 64, 10])


def small_mlp() -> nn.Sequential:
    """A small 784-100-10 MLP (the NCA talk's scale)."""
    return mlp([784, 100, 10])


def fnn_small() -> nn.Sequential:
    """PatchPro's MNIST FNN_small (paper 002, research B.3): 784-50-50-50-50-50-32-10 ReLU MLP."""
    return mlp([784, 50, 50, 50, 50, 50, 32, 10])


def fnn_big() -> nn.Sequential:
    """PatchPro's MNIST FNN_big (paper 002, research B.3): 784-200-200-200-200-200-32-10 ReLU MLP."""
    return mlp([784, 200, 200, 200, 200, 200, 32, 10])


def cnn_small() -> nn.Sequential:
    """PatchPro's MNIST CNN_small (paper 002, research B.3): Conv(1,16,k4,s2,p1)-ReLU-Flatten-100-10."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 4, stride=2, padding=1)), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 14 * 14, 100)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(100, 10))]))


ZOO: dict[str, Callable[[], nn.Module]] = {"shnn_mlp": shnn_mlp, "small_mlp": small_mlp, "fnn_small": fnn_small,
                                           "fnn_big": fnn_big, "cnn_small": cnn_small}


def register_architecture(name: str, builder: Callable[[], nn.Module]) -> None:
    """Make ``builder`` available to :func:`build` and checkpoints under ``name``."""
    ZOO[name] = builder


def build(name: str) -> nn.Module:
    if name not in ZOO:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(ZOO))}")
    return ZOO[name]()


def named_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Weight layers (Linear, Conv2d) in registration order, keyed by qualified name."""
    return OrderedDict((n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS))


def get_layer(model: nn.Module, name: str) -> nn.Module:
    layers = named_layers(model)
    if name not in layers:
        raise ModelError(f"layer {name!r} not found; the network's layers are: {', '.join(layers) or '(none)'}")
    return layers[name]


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module at dotted path ``name`` (on ``model`` itself; callers copy first)."""
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def trace_points(model: nn.Module) -> "OrderedDict[str, str]":
    """For each weight layer, the module whose output is that layer's activation.

    That is the layer itself followed by the element-wise activation registered right after it (as a
    Keras ``Dense(..., activation=...)`` would report), or the layer itself when none follows.
    """
    leaves = [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]
    points: "OrderedDict[str, str]" = OrderedDict()
    for i, (n, m) in enumerate(leaves):
        if isinstance(m, WEIGHT_LAYERS):
            point = n
            if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], ACTIVATIONS):
                point = leaves[i + 1][0]
            points[n] = point
    return points


def clone(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode; nnmend never edits the caller's network."""
    return copy.deepcopy(model).eval()


def num_classes(model: nn.Module) -> int:
    last = list(named_layers(model).values())[-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def pretrained_path(name: str) -> Path:
    return Path(str(resources.files("nnmend") / "_assets" / "models" / f"{name}.pt"))


def pretrained(name: str) -> nn.Module:
    """Load a checkpoint shipped with the package (e.g. ``"shnn_mlp_mnist"``)."""
    from .io.checkpoint import load_checkpoint

    path = pretrained_path(name)
    if not path.exists():
        avail = sorted(p.stem for p in path.parent.glob("*.pt")) if path.parent.exists() else []
        raise ModelError(f"no bundled model {name!r}; available: {', '.join(avail) or '(none)'}")
    return load_checkpoint(path).model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def input_shape(model: nn.Module, default: tuple[int, ...] = (1, 28, 28)) -> tuple[int, ...]:
    """Best-effort per-sample input shape: ``meta['input_shape']`` if recorded, else ``default``."""
    shape = getattr(model, "nnmend_input_shape", None)
    return tuple(shape) if shape else default


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
