"""Weights-only checkpoints in the ``.safetensors`` format, beside ``.pt``.

The same content as a ``.pt`` checkpoint (:mod:`nnmend.io.checkpoint`): the tensors of the state dict,
and in the file's ``__metadata__`` (string to string) the format tag, the version, the architecture
spec and the metadata as JSON text. Loading goes through the same checks as ``.pt``: the file's size
against the memory cap before it is read, the header's JSON nesting counted before it is parsed, the
spec's sizes matched against the file's tensors on the meta device before anything is allocated, no
NaN/Inf weights. A plain safetensors state dict (no nnmend metadata) loads when its architecture is
named (``arch="shnn_mlp"``), like a plain ``.pt`` state dict.

Example::

    save_network(net, "net.safetensors")          # or save_safetensors(net, "net.safetensors")
    net2 = load_network("net.safetensors")         # the same outputs, no code unpickled
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from torch import nn

from .._validation import read_bytes_capped
from ..errors import ModelError, describe
from .atomic import atomic_write
from .checkpoint import (FORMAT, MAX_SPEC_DEPTH, VERSION, Checkpoint, _build_checked, _ensure_registered, _header,
                         _json_depth, checkpoint_parts, finish_checkpoint, plain_model)

_LENGTH_BYTES = 8          # the format: little-endian u64 header length, JSON header, then the tensor bytes


def _library():
    try:
        import safetensors.torch
    except ImportError:
        raise ModelError("reading and writing .safetensors needs the safetensors package: pip install safetensors") from None
    return safetensors.torch


def save_safetensors(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (weights + architecture spec + metadata in the header) atomically to ``path``."""
    path = Path(path)
    spec, meta, state = checkpoint_parts(model, meta)
    header = {"format": FORMAT, "version": str(VERSION), "spec": json.dumps(spec), "meta": json.dumps(meta, default=str)}
    blob = _library().save({k: v.contiguous() for k, v in state.items()}, metadata=header)
    with atomic_write(path) as fh:
        fh.write(blob)
    return path


def _metadata(data: bytes, path: Path) -> dict:
    """The file's ``__metadata__``, read from the header with the checkpoint loader's limits."""
    if len(data) < _LENGTH_BYTES:
        raise ModelError(f"{path}: not a safetensors file (only {len(data)} bytes; truncated?)")
    n = int.from_bytes(data[:_LENGTH_BYTES], "little")
    if n > len(data) - _LENGTH_BYTES:
        raise ModelError(f"{path}: not a safetensors file (its header claims {n} bytes, the file has "
                         f"{len(data) - _LENGTH_BYTES} after the length; truncated?)")
    try:
        text = data[_LENGTH_BYTES:_LENGTH_BYTES + n].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a safetensors file (the header is not UTF-8 text)") from None
    if _json_depth(text) > MAX_SPEC_DEPTH:
        raise ModelError(f"{path}: safetensors header nested more than {MAX_SPEC_DEPTH} levels deep")
    try:
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: not a safetensors file (corrupt header: {describe(exc)})") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelError(f"{path}: corrupt safetensors header (__metadata__ must map names to strings)")
    return meta


def load_safetensors(path: str | os.PathLike, arch: str | Callable[[], nn.Module] | None = None, *,
                     allow_nonfinite: bool = False) -> Checkpoint:
    """Load a network written by :func:`save_safetensors`, or a plain safetensors state dict with ``arch``.

    ``allow_nonfinite`` as in :func:`nnmend.io.checkpoint.load_checkpoint`."""
    path = Path(path)
    data = read_bytes_capped(path, error=ModelError)
    header = _metadata(data, path)
    try:
        state = _library().load(data)
    except ModelError:
        raise
    except Exception as exc:  # safetensors_rust.SafetensorError: bad offsets, dtype, shape, overlapping data
        raise ModelError(f"{path}: not a readable safetensors file ({describe(exc)})") from None
    if header.get("format") == FORMAT:
        if header.get("version") != str(VERSION):
            raise ModelError(f"{path}: checkpoint version {header.get('version')} is not supported (expected {VERSION})")
        spec, meta = _header(header, path)
        _ensure_registered()
        model = _build_checked(spec, state, path)
    elif "spec" in header or "format" in header:
        raise ModelError(f"{path}: safetensors metadata names format {header.get('format')!r}, not {FORMAT!r}")
    else:
        model, meta = plain_model(arch, path)
    return finish_checkpoint(model, state, meta, path, allow_nonfinite)


__all__ = ["save_safetensors", "load_safetensors"]
