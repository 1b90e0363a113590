"""Weights-only checkpoints that rebuild any supported network without unpickling code.

A checkpoint is a ``torch.save`` of plain data: ``{"format", "version", "spec", "meta", "state_dict"}``
where ``spec`` is a JSON description of the module tree and ``state_dict`` holds tensors. It is read
with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects, and the module tree is
rebuilt from the spec through an explicit registry: torch's common layers, plus nnmend's own modules
(patches, indicators, experts) that register themselves with :func:`serializable`.

A plain ``state_dict`` file also loads when the architecture is named (``arch="shnn_mlp"``).
"""
from __future__ import annotations

import importlib
import json
import os
from collections import OrderedDict
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ModelError
from .atomic import atomic_write

FORMAT = "nnmend/checkpoint"
VERSION = 1

# torch built-ins: name -> (class, attributes that are constructor arguments)
_BUILTIN: dict[str, tuple[type, tuple[str, ...]]] = {
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")),
    "BatchNorm1d": (nn.BatchNorm1d, ("num_features", "eps", "momentum", "affine", "track_running_stats")),
    "BatchNorm2d": (nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine", "track_running_stats")),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Unflatten": (nn.Unflatten, ("dim", "unflattened_size")),
    "ReLU": (nn.ReLU, ()),
    "LeakyReLU": (nn.LeakyReLU, ("negative_slope",)),
    "Tanh": (nn.Tanh, ()),
    "Sigmoid": (nn.Sigmoid, ()),
    "Softmax": (nn.Softmax, ("dim",)),
    "Identity": (nn.Identity, ()),
    "Dropout": (nn.Dropout, ("p",)),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding")),
}
_CONTAINERS = {"Sequential": nn.Sequential, "ModuleList": nn.ModuleList, "ModuleDict": nn.ModuleDict}
_CUSTOM: dict[str, type] = {}
# Modules that define serializable classes; imported before a checkpoint is rebuilt.
SERIALIZABLE_MODULES = ["nnmend.layers", "nnmend.repair.patch_layer", "nnmend.repair.nca.rule",
                        "nnmend.repair.constraint.experts", "nnmend.repair.patchpro.modules"]


def _ensure_registered() -> None:
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def serializable(cls: type) -> type:
    """Class decorator: let checkpoints rebuild ``cls``.

    The class provides ``spec_args(self) -> dict`` (JSON-able constructor data) and
    ``from_spec(cls, args: dict, children: dict[str, nn.Module]) -> cls``.
    """
    for attr in ("spec_args", "from_spec"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} must define {attr} to be serializable")
    _CUSTOM[f"nnmend.{cls.__name__}"] = cls
    return cls


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def module_spec(module: nn.Module) -> dict:
    """JSON-able description of ``module``'s tree (no weights)."""
    kind = type(module).__name__
    if type(module) in {c for c, _ in _BUILTIN.values()} and kind in _BUILTIN:
        cls, attrs = _BUILTIN[kind]
        args = {a: _jsonable(getattr(module, a)) for a in attrs}
        if kind in ("Linear", "Conv2d"):
            args["bias"] = module.bias is not None
        return {"type": kind, "args": args}
    if kind in _CONTAINERS and type(module) is _CONTAINERS[kind]:
        return {"type": kind, "children": [[n, module_spec(c)] for n, c in module.named_children()]}
    key = f"nnmend.{kind}"
    if _CUSTOM.get(key) is type(module):
        return {
            "type": key,
            "args": module.spec_args(),
            "children": [[n, module_spec(c)] for n, c in module.named_children()],
        }
    raise ModelError(
        f"cannot save a module of type {type(module).__module__}.{kind}: checkpoints support "
        f"{', '.join(sorted(_BUILTIN) + sorted(_CONTAINERS))} and nnmend's own modules "
        "(wrap custom layers with nnmend.io.checkpoint.serializable)"
    )


def build_from_spec(spec: dict, where: str = "spec") -> nn.Module:
    try:
        kind = spec["type"]
        if kind in _BUILTIN:
            cls, _ = _BUILTIN[kind]
            args = dict(spec.get("args", {}))
            for k in ("kernel_size", "stride", "padding", "dilation", "unflattened_size"):
                if isinstance(args.get(k), list):
                    args[k] = tuple(args[k])
            return cls(**args)
        children = {n: build_from_spec(c, f"{where}.{n}") for n, c in spec.get("children", [])}
        if kind in _CONTAINERS:
            if kind == "ModuleList":
                return nn.ModuleList(children.values())
            if kind == "ModuleDict":
                return nn.ModuleDict(children)
            return nn.Sequential(OrderedDict(children))
        if kind in _CUSTOM:
            return _CUSTOM[kind].from_spec(spec.get("args", {}), children)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: malformed module spec ({type(exc).__name__}: {exc})") from None
    raise ModelError(f"{where}: unknown module type {spec.get('type')!r}")


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict = field(default_factory=dict)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (architecture spec + weights + JSON metadata) atomically to ``path``."""
    path = Path(path)
    meta = dict(meta or {})
    if getattr(model, "nnmend_meta", None):
        meta = {**model.nnmend_meta, **meta}
    if getattr(model, "nnmend_input_shape", None) and "input_shape" not in meta:
        meta["input_shape"] = list(model.nnmend_input_shape)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": json.dumps(module_spec(model)),
        "meta": json.dumps(meta, default=str),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


def _read(path: Path) -> Any:
    if not path.exists():
        raise ModelError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {str(exc).splitlines()[0]})") from None
    except Exception as exc:  # pickle.UnpicklingError from the weights-only loader
        raise ModelError(f"{path}: refused to load ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                         "only weights-only files are accepted") from None


def _load_state(model: nn.Module, state: dict, path: Path, allow_nonfinite: bool = False) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise ModelError(f"{path}: checkpoint does not match the architecture "
                         f"(missing {missing[:4]}, unexpected {extra[:4]})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{path}: {k!r} has shape {tuple(state[k].shape)} in the file but "
                             f"{tuple(v.shape)} in the architecture (a checkpoint for another network?)")
    model.load_state_dict(state)
    for k, v in state.items() if not allow_nonfinite else ():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelError(f"{path}: parameter {k!r} (shape {tuple(v.shape)}) contains NaN or Inf")


def load_checkpoint(path: str | os.PathLike, arch: str | Callable[[], nn.Module] | None = None, *,
                    allow_nonfinite: bool = False) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, or a plain state dict with ``arch``.

    ``allow_nonfinite=True`` accepts NaN/Inf parameters (a tampered network that a repair method will
    treat as corrupted); by default they are refused with an error naming the parameter."""
    from ..nets import build

    path = Path(path)
    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise ModelError(f"{path}: checkpoint version {obj.get('version')} is not supported (expected {VERSION})")
        try:
            spec, meta = json.loads(obj["spec"]), json.loads(obj.get("meta") or "{}")
        except (KeyError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: corrupt checkpoint header ({exc})") from None
        _ensure_registered()
        model = build_from_spec(spec, where=str(path))
        state = obj.get("state_dict")
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if arch is None:
            raise ModelError(f"{path}: a plain state dict; name its architecture (e.g. arch='shnn_mlp')")
        model = build(arch) if isinstance(arch, str) else arch()
        state, meta = obj, {"arch": arch if isinstance(arch, str) else getattr(arch, "__name__", "custom")}
    else:
        raise ModelError(f"{path}: not an nnmend checkpoint or state dict")
    if not isinstance(state, dict):
        raise ModelError(f"{path}: checkpoint has no state_dict")
    _load_state(model, state, path, allow_nonfinite)
    model.eval()
    model.nnmend_meta = meta
    if isinstance(meta.get("input_shape"), list) and all(isinstance(d, int) for d in meta["input_shape"]):
        model.nnmend_input_shape = tuple(meta["input_shape"])
    return Checkpoint(model, meta)


def load_network(path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load a network from any supported file: nnmend ``.pt`` checkpoints, ``.onnx`` and ``.nnet``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnx import load_onnx

        return load_onnx(path, **kwargs)
    if suffix == ".nnet":
        from .nnet import load_nnet

        return load_nnet(path, **kwargs)
    return load_checkpoint(path, **kwargs).model


def save_network(model: nn.Module, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save to the format named by the suffix: ``.pt`` checkpoint, ``.onnx`` or ``.nnet``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnx import save_onnx

        return save_onnx(model, path, **kwargs)
    if suffix == ".nnet":
        from .nnet import save_nnet

        return save_nnet(model, path, **kwargs)
    return save_checkpoint(model, path, **kwargs)
