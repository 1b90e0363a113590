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
import warnings
from collections import OrderedDict
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._validation import check_alloc
from ..errors import ModelError, describe
from .atomic import atomic_write

FORMAT = "nnmend/checkpoint"
VERSION = 1

# torch built-ins: name -> (class, attributes that are constructor arguments)
_BUILTIN: dict[str, tuple[type, tuple[str, ...]]] = {
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv1d": (nn.Conv1d, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")),
    "ConvTranspose2d": (nn.ConvTranspose2d, ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                                             "output_padding", "groups", "dilation", "padding_mode")),
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
    "MaxPool1d": (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "AvgPool1d": (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    "AvgPool2d": (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
}
_CONTAINERS = {"Sequential": nn.Sequential, "ModuleList": nn.ModuleList, "ModuleDict": nn.ModuleDict}
_CUSTOM: dict[str, type] = {}
# Modules that define serializable classes; imported before a checkpoint is rebuilt.
SERIALIZABLE_MODULES = ["nnmend.layers", "nnmend.graph", "nnmend.repair.patch_layer", "nnmend.repair.nca.rule",
                        "nnmend.repair.nnrepair.experts", "nnmend.repair.patchpro.modules"]


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
        if kind in ("Linear", "Conv1d", "Conv2d", "ConvTranspose2d"):
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


_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError)


def build_from_spec(spec: dict, where: str = "spec") -> nn.Module:
    """The module tree ``spec`` describes, with freshly initialised weights.

    Build it under ``torch.device("meta")`` to check a spec's sizes without allocating (see
    :func:`load_checkpoint`). Raises ModelError naming ``where`` for a malformed or unknown spec; a
    RuntimeError from a constructor (e.g. a negative size) is left to the caller."""
    try:
        kind = spec["type"]
        if kind in _BUILTIN:
            cls, _ = _BUILTIN[kind]
            args = dict(spec.get("args", {}))
            for k in ("kernel_size", "stride", "padding", "dilation", "unflattened_size", "output_padding", "output_size"):
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
    except _MALFORMED as exc:
        raise ModelError(f"{where}: malformed module spec ({describe(exc)})") from None
    raise ModelError(f"{where}: unknown module type {spec.get('type')!r}")


def _spec_skeleton(spec: dict, path: Path) -> nn.Module | None:
    """``spec`` built on the meta device (no memory); None when a module cannot be built there."""
    try:
        with torch.device("meta"):
            return build_from_spec(spec, where=str(path))
    except RecursionError:
        raise ModelError(f"{path}: module spec nested too deeply") from None
    except RuntimeError:  # a constructor that computes on its tensors, or a negative size: the real build decides
        return None


def _materialise(spec: dict, path: Path) -> nn.Module:
    try:
        return build_from_spec(spec, where=str(path))
    except RecursionError:
        raise ModelError(f"{path}: module spec nested too deeply") from None
    except RuntimeError as exc:
        raise ModelError(f"{path}: malformed module spec ({describe(exc)})") from None


def _build_checked(spec: dict, state: Any, path: Path) -> nn.Module:
    """Build the spec's network only after its sizes are known to match the file's tensors and the cap."""
    if not isinstance(state, dict):
        raise ModelError(f"{path}: checkpoint has no state_dict")
    skeleton = _spec_skeleton(spec, path)
    if skeleton is not None:
        _check_state(skeleton, state, path)
        need = sum(v.numel() * v.element_size() for v in skeleton.state_dict().values())
        check_alloc(f"{path}: the network the spec declares", need)
    return _materialise(spec, path)


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict = field(default_factory=dict)


def checkpoint_parts(model: nn.Module, meta: dict | None = None) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """``(spec, meta, state_dict)`` that a checkpoint of ``model`` stores (``.pt`` and ``.safetensors`` alike);
    a module the spec cannot describe is traced into a graph first."""
    meta = dict(meta or {})
    if getattr(model, "nnmend_meta", None):
        meta = {**model.nnmend_meta, **meta}
    if getattr(model, "nnmend_input_shape", None) and "input_shape" not in meta:
        meta["input_shape"] = list(model.nnmend_input_shape)
    try:
        spec = module_spec(model)
    except ModelError as exc:
        # a user's own module class: saved as the graph torch.fx traces from it (no code is stored)
        from ..graph import from_module

        cls_name = type(model).__name__
        try:
            model = from_module(model, meta.get("input_shape"))
        except ModelError as trace_exc:
            raise ModelError(f"{exc}; tracing it as a graph failed too: {trace_exc}") from None
        spec = module_spec(model)
        meta.setdefault("input_shape", list(model.nnmend_input_shape))
        meta.setdefault("traced_from", cls_name)
    return spec, meta, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (architecture spec + weights + JSON metadata) atomically to ``path``."""
    path = Path(path)
    spec, meta, state = checkpoint_parts(model, meta)
    payload = {"format": FORMAT, "version": VERSION, "spec": json.dumps(spec),
               "meta": json.dumps(meta, default=str), "state_dict": state}
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


def _check_archive_size(path: Path) -> None:
    """Refuse a checkpoint whose zip entries would decompress past the memory cap (checked before torch reads it)."""
    check_alloc(f"{path}: reading the file", path.stat().st_size)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {describe(exc)})") from None
    check_alloc(f"{path}: the checkpoint's tensors", total)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"{path}: file not found" if not path.exists() else f"{path}: not a regular file")
    _check_archive_size(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError) as exc:
        raise ModelError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {describe(exc)})") from None
    except Exception as exc:  # pickle.UnpicklingError from the weights-only loader
        raise ModelError(f"{path}: refused to load ({describe(exc)}); only weights-only files are accepted") from None


def _check_state(model: nn.Module, state: dict, path: Path) -> None:
    """The file's tensors must be exactly the architecture's: same names, same shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise ModelError(f"{path}: checkpoint does not match the architecture "
                         f"(missing {missing[:4]}, unexpected {extra[:4]})")
    for k, v in own.items():
        if not isinstance(state[k], torch.Tensor):
            raise ModelError(f"{path}: {k!r} is a {type(state[k]).__name__} in the file, not a tensor")
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{path}: {k!r} has shape {tuple(state[k].shape)} in the file but "
                             f"{tuple(v.shape)} in the architecture (a checkpoint for another network?)")


def _load_state(model: nn.Module, state: dict, path: Path, allow_nonfinite: bool = False) -> None:
    _check_state(model, state, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied into the parameter
        raise ModelError(f"{path}: the weights do not fit the architecture ({describe(exc)})") from None
    for k, v in state.items() if not allow_nonfinite else ():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelError(f"{path}: parameter {k!r} (shape {tuple(v.shape)}) contains NaN or Inf")


MAX_SPEC_DEPTH = 300   # JSON brackets: about 100 nested modules, well inside the default recursion limit


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of JSON ``text`` (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _header(obj: dict, path: Path) -> tuple[Any, dict]:
    """The checkpoint's JSON spec and metadata, refusing anything that is not JSON text of the right kind."""
    for key in ("spec", "meta"):
        text = obj.get(key)
        if isinstance(text, str) and _json_depth(text) > MAX_SPEC_DEPTH:
            # checked by counting, not by waiting for a RecursionError: the interpreter's recursion limit is
            # whatever the process set it to (libraries raise it), so the outcome must not depend on it
            raise ModelError(f"{path}: module {key} nested more than {MAX_SPEC_DEPTH} levels deep")
    try:
        spec, meta = json.loads(obj["spec"]), json.loads(obj.get("meta") or "{}")
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: corrupt checkpoint header ({describe(exc)})") from None
    if not isinstance(spec, dict) or not isinstance(meta, dict):
        raise ModelError(f"{path}: corrupt checkpoint header (spec and meta must be JSON objects)")
    return spec, meta


def load_checkpoint(path: str | os.PathLike, arch: str | Callable[[], nn.Module] | None = None, *,
                    allow_nonfinite: bool = False) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`, or a plain state dict with ``arch``.

    ``allow_nonfinite=True`` accepts NaN/Inf parameters (a tampered network that a repair method will
    treat as corrupted); by default they are refused with an error naming the parameter."""
    path = Path(path)
    obj = _read(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise ModelError(f"{path}: checkpoint version {obj.get('version')} is not supported (expected {VERSION})")
        spec, meta = _header(obj, path)
        _ensure_registered()
        state = obj.get("state_dict")
        model = _build_checked(spec, state, path)
    elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        model, meta = plain_model(arch, path)
        state = obj
    else:
        raise ModelError(f"{path}: not an nnmend checkpoint or state dict")
    return finish_checkpoint(model, state, meta, path, allow_nonfinite)


def plain_model(arch: str | Callable[[], nn.Module] | None, path: Path) -> tuple[nn.Module, dict]:
    """The network a plain state dict's ``arch`` names, and the metadata recording it."""
    from ..nets import build

    if arch is None:
        raise ModelError(f"{path}: a plain state dict; name its architecture (e.g. arch='shnn_mlp')")
    model = build(arch) if isinstance(arch, str) else arch()
    return model, {"arch": arch if isinstance(arch, str) else getattr(arch, "__name__", "custom")}


def finish_checkpoint(model: nn.Module, state: dict, meta: dict, path: Path, allow_nonfinite: bool = False
                      ) -> Checkpoint:
    """Load ``state`` into ``model`` (names, shapes, finiteness checked) and attach ``meta``."""
    _load_state(model, state, path, allow_nonfinite)
    model.eval()
    model.nnmend_meta = meta
    if isinstance(meta.get("input_shape"), list) and meta["input_shape"] and all(isinstance(d, int) for d in meta["input_shape"]):
        model.nnmend_input_shape = tuple(meta["input_shape"])
    return Checkpoint(model, meta)


_SUFFIX_FORMATS = ((".onnx", "onnx"), (".onnx.gz", "onnx"), (".nnet", "nnet"), (".nnet.gz", "nnet"),
                   (".safetensors", "safetensors"))


def network_format(path: str | os.PathLike) -> str:
    """``"onnx"``, ``"nnet"``, ``"safetensors"`` or ``"checkpoint"`` from the file name: ``.onnx`` / ``.onnx.gz``,
    ``.nnet`` / ``.nnet.gz`` and ``.safetensors`` by suffix, anything else a ``.pt`` checkpoint. Other gzip
    files are refused (torch checkpoints are zip archives already)."""
    name = Path(path).name.lower()
    for suffix, fmt in _SUFFIX_FORMATS:
        if name.endswith(suffix):
            return fmt
    if name.endswith(".gz"):
        raise ModelError(f"{path}: only .onnx.gz and .nnet.gz networks are read compressed; decompress the file first")
    return "checkpoint"


def load_network(path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """Load a network from any supported file: nnmend ``.pt`` and ``.safetensors`` checkpoints, ``.onnx`` and
    ``.nnet`` (those two also gzip-compressed, ``.onnx.gz`` / ``.nnet.gz``, decompressed under the memory cap)."""
    path = Path(path)
    fmt = network_format(path)
    if fmt == "onnx":
        from .onnx import load_onnx

        return load_onnx(path, **kwargs)
    if fmt == "nnet":
        from .nnet import load_nnet

        return load_nnet(path, **kwargs)
    if fmt == "safetensors":
        from .safetensors_io import load_safetensors

        return load_safetensors(path, **kwargs).model
    return load_checkpoint(path, **kwargs).model


def save_network(model: nn.Module, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Save to the format named by the suffix: ``.pt`` or ``.safetensors`` checkpoint, ``.onnx`` or ``.nnet``
    (never compressed: a ``.gz`` target is refused rather than written in another format under that name)."""
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        raise ModelError(f"{path}: networks are written uncompressed; save to {path.name[:-3]!r} and compress it")
    fmt = network_format(path)
    if fmt == "onnx":
        from .onnx import save_onnx

        return save_onnx(model, path, **kwargs)
    if fmt == "nnet":
        from .nnet import save_nnet

        return save_nnet(model, path, **kwargs)
    if fmt == "safetensors":
        from .safetensors_io import save_safetensors

        return save_safetensors(model, path, **kwargs)
    return save_checkpoint(model, path, **kwargs)
