"""The ``.nnet`` text format of Reluplex / Marabou (Kyle Julian, Stanford 2016), read and written exactly.

Layout: ``//`` comment lines; ``numLayers,inputSize,outputSize,maxLayerSize``; the layer sizes; a flag
line (unused, ``0``); input minimums; input maximums; means (inputs + one for the outputs); ranges (the
same); then per layer the weight matrix row by row (one output neuron per line) and the biases, one per
line. Hidden layers use ReLU, the output layer none.

**Normalisation.** The network stored in the file works in *normalised* space: it expects
``(clip(x, min, max) - mean) / range`` and returns outputs that de-scale as ``y * range_out + mean_out``.
The VNN-COMP ONNX files and VNN-LIB properties use the same normalised space, so :func:`load_nnet`
returns exactly that layer stack (the same function as the ONNX file) and keeps the header in
``model.nnmend_meta["nnet"]``; :func:`normalize_inputs` / :func:`denormalize_outputs` convert raw
inputs and outputs with it. The argmin advisory of ACAS Xu is the same in both output spaces.

Example::

    net = load_nnet("ACASXU_run2a_1_1_batch_2000.nnet")        # Sequential(flatten, fc1, relu1, …, fc7)
    x = normalize_inputs(torch.tensor([[5000., 0.1, 3.0, 800., 600.]]), net.nnmend_meta["nnet"])
    advisory = net(x).argmin(1)
    save_nnet(net, "copy.nnet")                                 # header taken from nnmend_meta
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._validation import check_alloc, read_bytes_capped
from ..errors import ModelError
from .atomic import atomic_write

__all__ = ["load_nnet", "save_nnet", "normalize_inputs", "denormalize_outputs", "mlp_layers"]

HEADER_KEYS = ("mins", "maxs", "means", "ranges")
_BIG = float(np.finfo(np.float32).max)  # "unbounded" input range written when no header is known


class _Lines:
    """Numeric lines of the file with their 1-based line numbers, for errors that point at the line."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.items = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
                      if ln.strip() and not ln.lstrip().startswith("//")]
        self.pos = 0

    def fail(self, line: int | None, msg: str) -> ModelError:
        return ModelError(f"{self.path}:{line}: {msg}" if line else f"{self.path}: {msg}")

    def numbers(self, count: int, what: str, integer: bool = False) -> tuple[list, int]:
        if self.pos >= len(self.items):
            raise self.fail(None, f"file ends before {what}")
        line_no, text = self.items[self.pos]
        self.pos += 1
        fields = [f.strip() for f in text.split(",")]
        if fields and fields[-1] == "":
            fields.pop()  # lines end with a comma
        try:
            values = [int(f) if integer else float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_number(f, integer))
            raise self.fail(line_no, f"{what}: {bad!r} is not {'an integer' if integer else 'a number'}") from None
        if count >= 0 and len(values) != count:
            raise self.fail(line_no, f"{what}: expected {count} value(s), found {len(values)}")
        if not integer and not all(math.isfinite(v) for v in values):
            raise self.fail(line_no, f"{what}: NaN or Inf")
        return values, line_no

    def block(self, rows: int, cols: int, what: str) -> np.ndarray:
        """``rows`` lines of ``cols`` numbers each, parsed in bulk; the line-by-line path names a bad line."""
        chunk = self.items[self.pos:self.pos + rows]
        try:
            table = [ln.rstrip().rstrip(",").split(",") for _, ln in chunk]
            if len(chunk) == rows and all(len(r) == cols for r in table):
                arr = np.array(table, dtype=np.float64)
                if np.isfinite(arr).all():
                    self.pos += rows
                    return arr
        except ValueError:
            pass
        return np.array([self.numbers(cols, f"{what} {r + 1}")[0] for r in range(rows)], dtype=np.float64)


def _is_number(text: str, integer: bool) -> bool:
    try:
        int(text) if integer else float(text)
        return True
    except ValueError:
        return False


_MIN_BYTES_PER_VALUE = 2  # the shortest a weight can be written: one digit and a separator ("0,")


def _check_declared_size(lines: _Lines, line_no: int, sizes: list[int], file_bytes: int) -> None:
    """Refuse layer sizes that the file cannot hold, or that exceed the memory cap, before allocating them."""
    count = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    if count * _MIN_BYTES_PER_VALUE > file_bytes:
        raise lines.fail(line_no, f"layer sizes {_short(sizes)} declare {count:,} weights and biases, more than "
                                  f"a file of {file_bytes:,} bytes can hold (truncated, or a wrong header?)")
    check_alloc(f"{lines.path}:{line_no}: layer sizes {_short(sizes)}", count * 8)  # float64 while parsing


def _short(sizes: list[int]) -> str:
    return str(sizes) if len(sizes) <= 12 else f"[{', '.join(map(str, sizes[:6]))}, …, {sizes[-1]}] ({len(sizes)} sizes)"


def _check_header_values(lines: _Lines, line_no: int, key: str, header: dict) -> None:
    """Normalisation must be usable: every range non-zero (inputs are divided by it), minimums <= maximums."""
    values = header[key]
    if key == "ranges" and any(v == 0 for v in values):
        zero = [i for i, v in enumerate(values) if v == 0]
        raise lines.fail(line_no, f"input ranges: entry {zero[0] + 1} (of {len(values)}) is 0; every range must "
                                  "be non-zero (inputs are divided by theirs, outputs scaled by the last)")
    if key == "maxs":
        bad = [i for i, (lo, hi) in enumerate(zip(header["mins"], values)) if lo > hi]
        if bad:
            i = bad[0]
            raise lines.fail(line_no, f"input maxs: input {i + 1} has minimum {header['mins'][i]} above "
                                      f"maximum {values[i]}")


def mlp_layers(sizes: list[int]) -> nn.Sequential:
    """``nets.mlp``-style stack (flatten, fc1, relu1, …, fcK): the shape .nnet networks load into."""
    from ..nets import mlp

    return mlp(sizes, flatten=True)


def load_nnet(path: str | os.PathLike) -> nn.Sequential:
    """Read a ``.nnet`` file into ``Sequential(flatten, fc1, relu1, …, fcK)`` (normalised space, see module doc).

    Returns:
        the network in eval mode; ``nnmend_meta = {"format": "nnet", "source", "input_shape": [n_in],
        "nnet": {"mins", "maxs", "means", "ranges"}}`` (means/ranges have n_in + 1 entries, the last for
        the outputs) and ``nnmend_input_shape = (n_in,)``.

    A ``.nnet.gz`` file is decompressed first (under the memory cap, see :mod:`nnmend._validation`).

    Raises:
        ModelError naming the file and line for wrong counts, wrong layer sizes and non-numeric fields,
        layer sizes the file cannot hold or that exceed the memory cap (checked before any allocation),
        and a normalisation header with a zero range or a minimum above its maximum.
    """
    path = Path(path)
    raw = read_bytes_capped(path)  # ``.nnet.gz`` is decompressed under the memory cap
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: cannot read as text ({exc})") from None
    lines = _Lines(path, text)
    (n_layers, n_in, n_out, max_size), ln = lines.numbers(4, "header numLayers,inputSize,outputSize,maxLayerSize",
                                                          integer=True)
    if n_layers < 1 or n_in < 1 or n_out < 1:
        raise lines.fail(ln, f"header: sizes must be positive, got {n_layers},{n_in},{n_out},{max_size}")
    sizes, ln = lines.numbers(n_layers + 1, "layer sizes", integer=True)
    if sizes[0] != n_in or sizes[-1] != n_out:
        raise lines.fail(ln, f"layer sizes {sizes} must start with inputSize {n_in} and end with outputSize {n_out}")
    if min(sizes) < 1 or max(sizes) != max_size:
        raise lines.fail(ln, f"layer sizes {sizes} disagree with maxLayerSize {max_size} (or contain a size < 1)")
    _check_declared_size(lines, ln, sizes, len(raw))
    lines.numbers(-1, "symmetric flag", integer=True)
    header = {}
    for key, count in zip(HEADER_KEYS, (n_in, n_in, n_in + 1, n_in + 1)):
        header[key], ln = lines.numbers(count, f"input {key}")
        _check_header_values(lines, ln, key, header)
    model = mlp_layers(sizes)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for k, (layer, (a, b)) in enumerate(zip(linears, zip(sizes[:-1], sizes[1:])), start=1):
        w = lines.block(b, a, f"layer {k} weights of neuron")
        bias = lines.block(b, 1, f"layer {k} bias of neuron").reshape(b)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(bias))
    if lines.pos < len(lines.items):
        raise lines.fail(lines.items[lines.pos][0], "unexpected data after the last layer's biases")
    model.eval()
    model.nnmend_meta = {"format": "nnet", "source": path.name, "input_shape": [n_in], "nnet": header}
    model.nnmend_input_shape = (n_in,)
    return model


def normalize_inputs(x: torch.Tensor, header: dict, clip: bool = True) -> torch.Tensor:
    """Raw inputs (N, n_in) -> the network's space: ``(clip(x, mins, maxs) - means) / ranges``."""
    n = x.shape[-1]
    mins, maxs = (torch.tensor(header[k][:n], dtype=x.dtype) for k in ("mins", "maxs"))
    means, ranges = (torch.tensor(header[k][:n], dtype=x.dtype) for k in ("means", "ranges"))
    if clip:
        x = torch.maximum(torch.minimum(x, maxs), mins)
    return (x - means) / ranges


def denormalize_outputs(y: torch.Tensor, header: dict) -> torch.Tensor:
    """Network outputs -> raw units: ``y * ranges[-1] + means[-1]`` (one factor for all outputs)."""
    return y * float(header["ranges"][-1]) + float(header["means"][-1])


def _mlp_linears(model: nn.Module, path: Path) -> list[nn.Linear]:
    """The Linear layers of a Linear/ReLU chain, with ReLU after every hidden layer and none after the last."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    linears, relu_after = [], []
    for name, m in leaves:
        if isinstance(m, nn.Linear):
            linears.append(m)
            relu_after.append(False)
        elif isinstance(m, nn.ReLU):
            if not linears or relu_after[-1]:
                raise ModelError(f"{path}: .nnet holds Linear/ReLU MLPs; ReLU {name!r} does not follow a Linear layer")
            relu_after[-1] = True
        elif isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
            if isinstance(m, nn.Flatten) and linears:
                raise ModelError(f"{path}: .nnet holds Linear/ReLU MLPs; Flatten {name!r} comes after a Linear layer")
        else:
            raise ModelError(f"{path}: .nnet holds only Linear/ReLU MLPs; layer {name!r} is {type(m).__name__}")
    if not linears:
        raise ModelError(f"{path}: the network has no Linear layer to write")
    if not all(relu_after[:-1]) or relu_after[-1]:
        raise ModelError(f"{path}: .nnet needs ReLU after every hidden Linear layer and none after the output layer")
    for prev, nxt in zip(linears, linears[1:]):
        if prev.out_features != nxt.in_features:
            raise ModelError(f"{path}: layer sizes {prev.out_features} -> {nxt.in_features} do not chain")
    return linears


def _fmt(v: float) -> str:
    return repr(float(v))


def save_nnet(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write a Linear/ReLU MLP as ``.nnet`` (atomically).

    Args:
        model: ``[Flatten] Linear ReLU … Linear`` (any nesting of Sequentials).
        path: target file.
        meta: the normalisation header ``{"mins", "maxs", "means", "ranges"}`` or a dict holding it under
            ``"nnet"``. Default: ``model.nnmend_meta["nnet"]``, else an identity normalisation (means 0,
            ranges 1, mins/maxs ±3.4e38).

    Weights are written as float32 values' shortest round-trip text, the header as float64's, so reading
    the file back gives identical tensors and header.
    """
    path = Path(path)
    linears = _mlp_linears(model, path)
    n_in = linears[0].in_features
    header = meta if meta is not None else (getattr(model, "nnmend_meta", None) or {})
    header = header.get("nnet", header)
    if not all(k in header for k in HEADER_KEYS):
        header = {"mins": [-_BIG] * n_in, "maxs": [_BIG] * n_in, "means": [0.0] * (n_in + 1), "ranges": [1.0] * (n_in + 1)}
    for key, count in zip(HEADER_KEYS, (n_in, n_in, n_in + 1, n_in + 1)):
        if len(header[key]) != count:
            raise ModelError(f"{path}: header {key!r} has {len(header[key])} values; the network needs {count}")
    sizes = [n_in] + [m.out_features for m in linears]
    out = ["// Neural Network File Format by Kyle Julian, Stanford 2016", "// written by nnmend",
           f"{len(linears)},{n_in},{sizes[-1]},{max(sizes)},", ",".join(map(str, sizes)) + ",", "0,"]
    out += [",".join(_fmt(v) for v in header[k]) + "," for k in HEADER_KEYS]
    for m in linears:
        w = m.weight.detach().cpu().float().numpy()
        bias = m.bias.detach().cpu().float().numpy() if m.bias is not None else np.zeros(m.out_features, np.float32)
        if not (np.isfinite(w).all() and np.isfinite(bias).all()):
            raise ModelError(f"{path}: the network has NaN or Inf weights")
        out += [",".join(str(v) for v in row) + "," for row in w]  # numpy float32 str: shortest round trip
        out += [f"{v}," for v in bias]
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
    return path
