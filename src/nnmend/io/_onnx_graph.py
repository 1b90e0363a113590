"""The ONNX graph walk behind :func:`nnmend.io.onnx.load_onnx`: ONNX nodes -> a graph of torch modules.

Every ONNX data tensor becomes the output of one node of a :class:`nnmend.graph.GraphNetwork` whose
modules are torch's layers or :mod:`nnmend.layers`' operators. Constant sub-graphs (``Shape`` of a data
tensor, ``Gather``, ``Concat``, ``Cast`` … as exporters emit for ``x.view(x.size(0), -1)``) are evaluated
with onnx's reference evaluator. A probe tensor (batch 1) carries every value's shape, so reshapes and
shape errors are resolved at load time and name the node.

The batch axis is taken as ONNX declares it: an input of shape ``[1, …]`` (or a symbolic first axis) has
one, ``[12, 8]`` has none; each tensor carries that flag through reshapes that add or drop it, and ONNX
axes are translated to per-sample axes accordingly. Operations on the batch axis are refused.

Arithmetic beyond affine maps (ReduceSum/Mean, Expand, Pow, comparisons, Cast to bool or integers, Where,
Mul/Div of two data tensors) is read by :mod:`nnmend.io._onnx_math`. Several data inputs are read as one
flat input (their concatenation), several outputs written as one, and an output computed from shapes and
constants alone is a constant.

Peephole folds keep networks small and their layers familiar: ``MatMul`` + ``Add`` is one ``nn.Linear``,
a bias ``Add`` after a ``Conv`` folds into it, element-wise arithmetic with constants is one
:class:`nnmend.layers.ElementwiseAffine` (dropped when it is the identity). A graph that ends up a chain
is returned as an ``nn.Sequential`` (``fc1``, ``relu1``, ``conv1`` …); anything else as a ``GraphNetwork``
with the same node names. ``nnmend_meta["onnx_names"]`` maps them to the file's node names.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..layers import (Add, Concat, ConstMatMul, ElementwiseAffine, Gather, Pad, Reshape, Slice, Sub,
                      Transpose)


@dataclass
class _Tensor:
    """A data tensor: the graph node producing it, a probe value (1, *per_sample) and the batch flag."""

    node: str
    probe: torch.Tensor
    batch: bool

    @property
    def onnx_shape(self) -> tuple[int, ...]:
        return tuple(self.probe.shape) if self.batch else tuple(self.probe.shape[1:])

    @property
    def rank(self) -> int:
        return len(self.onnx_shape)


# -- constants ----------------------------------------------------------------------------------------

def const_of_node(fail: Callable[[str], ModelError], node) -> np.ndarray:
    import onnx

    for attr in node.attribute:
        if attr.name == "value":
            return onnx.numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(attr))
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(attr)))
    raise fail("a Constant without a value this reader understands")


def fold_constant_node(fail: Callable[[str], ModelError], node, consts: dict, opsets) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants, under the model's own opset."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [n for n in node.input if n]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(consts[n]).dtype), None)
           for n in names]
    outs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
    mini = helper.make_model(helper.make_graph([node], "fold", ins, outs), opset_imports=opsets)
    try:
        return ReferenceEvaluator(mini).run(None, {n: np.asarray(consts[n]) for n in names})
    except Exception as exc:  # the reference evaluator raises many types
        raise fail(f"cannot evaluate this constant computation ({type(exc).__name__}: {exc})") from None


# -- the builder ----------------------------------------------------------------------------------------

PREFIX = {nn.Linear: "fc", nn.Conv1d: "conv", nn.Conv2d: "conv", nn.ConvTranspose2d: "convt", nn.ReLU: "relu",
          nn.LeakyReLU: "lrelu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Softmax: "softmax",
          nn.MaxPool1d: "maxpool", nn.MaxPool2d: "maxpool", nn.AvgPool1d: "avgpool", nn.AvgPool2d: "avgpool",
          nn.AdaptiveAvgPool1d: "gap", nn.AdaptiveAvgPool2d: "gap", ElementwiseAffine: "affine", Add: "add",
          Sub: "sub", Concat: "concat", Reshape: "reshape", Transpose: "transpose", Pad: "pad", Slice: "slice",
          Gather: "gather", ConstMatMul: "matmul", nn.Flatten: "flatten", nn.Unflatten: "unflatten"}


class _Builder:
    def __init__(self, path: Path, consts: dict[str, np.ndarray], opsets, opset: int):
        self.path, self.consts, self.opsets, self.opset = path, consts, opsets, opset
        self.nodes: "OrderedDict[str, tuple[nn.Module, list[str]]]" = OrderedDict()
        self.consumers: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.onnx_names: dict[str, str] = {}
        self.probes: dict[str, torch.Tensor] = {}
        self.node_uses: dict[str, int] = {}      # ONNX reads (and graph outputs) of each graph node's value
        self.node = None

    # helpers
    def fail(self, msg: str) -> ModelError:
        n = self.node
        return ModelError(f"{self.path}: node {n.name!r} ({n.op_type}): {msg}")

    def attr(self, name: str, default=None):
        import onnx

        for a in self.node.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def const(self, name: str) -> np.ndarray:
        return np.asarray(self.consts[name])

    def opt_const(self, i: int) -> np.ndarray | None:
        ins = self.node.input
        return self.const(ins[i]) if len(ins) > i and ins[i] else None

    def per_axis(self, t: _Tensor, axis: int) -> int:
        """An ONNX axis of ``t`` as a per-sample axis; refuses the batch axis."""
        a = axis + t.rank if axis < 0 else axis
        if not 0 <= a < t.rank:
            raise self.fail(f"axis {axis} is out of range for shape {list(t.onnx_shape)}")
        if t.batch:
            if a == 0:
                raise self.fail("operates on the batch axis")
            return a - 1
        return a

    def emit(self, module: nn.Module, inputs: list[_Tensor], batch: bool | None = None) -> _Tensor:
        """Append ``module`` reading ``inputs``; the probe gives the output's shape and names errors."""
        try:
            with torch.no_grad():
                out = module(*(t.probe for t in inputs))
        except (RuntimeError, ValueError, IndexError) as exc:
            shapes = ", ".join(str(list(t.onnx_shape)) for t in inputs)
            raise self.fail(f"does not fit its input shape(s) {shapes} ({str(exc).splitlines()[0]})") from None
        prefix = PREFIX.get(type(module), type(module).__name__.lower())
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        name = prefix if prefix == "flatten" and self.counts[prefix] == 1 else f"{prefix}{self.counts[prefix]}"
        self.nodes[name] = (module, [t.node for t in inputs])
        self.probes[name] = out
        for t in inputs:
            self.consumers[t.node] = self.consumers.get(t.node, 0) + 1
        if self.node is not None and self.node.name:
            self.onnx_names[name] = self.node.name
        return _Tensor(name, out, inputs[0].batch if batch is None else batch)

    def sole(self, t: _Tensor) -> nn.Module | None:
        """The module producing ``t`` when the current node is its only reader (so it may be folded into)."""
        if t.node not in self.nodes or self.consumers.get(t.node, 0) or self.node_uses.get(t.node, 0) != 1:
            return None
        return self.nodes[t.node][0]

    # reshapes
    def reshape_to(self, t: _Tensor, onnx_shape: tuple[int, ...], batch: bool | None = None) -> _Tensor:
        """``t`` reshaped to ``onnx_shape``; a leading 1 keeps (or makes) the batch axis unless told."""
        shape = tuple(int(d) for d in onnx_shape)
        if int(np.prod(shape)) != t.probe.numel():
            raise self.fail(f"cannot reshape {list(t.onnx_shape)} to {list(shape)}")
        if batch is None:
            batch = len(shape) >= 2 and shape[0] == 1 if t.batch else False
        per = shape[1:] if batch else shape
        if per == tuple(t.probe.shape[1:]):
            return _Tensor(t.node, t.probe, batch)
        if not per:
            per = (1,)
        if len(per) == 1:
            module: nn.Module = nn.Flatten()
        elif t.probe.dim() == 2:
            module = nn.Unflatten(1, per)
        else:
            module = Reshape(per)
        return self.emit(module, [t], batch=batch)


def _affine_consts(b: _Builder, t: _Tensor, c: np.ndarray) -> np.ndarray:
    """A constant operand as a per-sample broadcastable array."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > t.rank:
        raise b.fail(f"constant of shape {list(c.shape)} has more axes than the data {list(t.onnx_shape)}")
    if t.batch and c.ndim == t.rank:
        if c.shape[0] != 1:
            raise b.fail(f"constant of shape {list(c.shape)} varies along the batch axis")
        c = c[0]
    return c


def _bias_vector(prev: nn.Module | None, shift: np.ndarray, per: tuple[int, ...]) -> np.ndarray | None:
    """``shift`` as a per-channel bias of the Linear/Conv ``prev`` (output shape ``per``), or None."""
    if not isinstance(prev, (nn.Linear, nn.Conv1d, nn.Conv2d)) or prev.bias is None:
        return None
    n = prev.out_features if isinstance(prev, nn.Linear) else prev.out_channels
    spatial = len(per) - 1
    if shift.ndim == 0:
        return np.full(n, float(shift))
    shape = list(shift.shape)
    while len(shape) > 1 + spatial and shape[0] == 1:
        shape.pop(0)
    if len(shape) == 1 + spatial and shape[0] in (1, n) and all(d == 1 for d in shape[1:]):
        return np.broadcast_to(shift.reshape(-1), (n,)).copy()
    return None


def _append_affine(b: _Builder, t: _Tensor, scale: np.ndarray, shift: np.ndarray) -> _Tensor:
    """``t * scale + shift``: folded into a preceding bias, composed with a preceding affine, or new."""
    scale, shift = np.asarray(scale, dtype=np.float64), np.asarray(shift, dtype=np.float64)
    per = tuple(t.probe.shape[1:])
    try:
        out_shape = np.broadcast_shapes(per, scale.shape, shift.shape)
    except ValueError:
        raise b.fail(f"constant of shape {list(scale.shape if scale.ndim else shift.shape)} does not broadcast "
                     f"to the data {list(t.onnx_shape)}") from None
    if out_shape != per:
        raise b.fail(f"a constant of shape {list(shift.shape if shift.ndim else scale.shape)} would enlarge "
                     f"the data {list(t.onnx_shape)}")
    prev = b.sole(t)
    if (scale == 1).all():
        if (shift == 0).all():
            return t                          # the identity (ACAS Xu subtracts an all-zero "AvgImg")
        bias = _bias_vector(prev, shift, per)
        if bias is not None:
            with torch.no_grad():
                prev.bias += torch.from_numpy(bias.astype(np.float32))
                b.probes[t.node] = prev(b.probes[b.nodes[t.node][1][0]])
            return _Tensor(t.node, b.probes[t.node], t.batch)
    if isinstance(prev, ElementwiseAffine):          # (x*s1 + t1)*s2 + t2 as one layer
        s1, t1 = prev.scale.double().numpy(), prev.shift.double().numpy()
        src = b.nodes[t.node][1][0]
        del b.nodes[t.node]
        b.consumers[src] -= 1
        scale, shift = s1 * scale, t1 * scale + shift
        t = _Tensor(src, b.probes[src], t.batch)
    return b.emit(ElementwiseAffine(torch.as_tensor(np.asarray(scale, dtype=np.float32)),
                                    torch.as_tensor(np.asarray(shift, dtype=np.float32))), [t])


# -- operators ------------------------------------------------------------------------------------------

def _op_gemm(b: _Builder, ins: list) -> _Tensor:
    x, w, c = ins[0], ins[1], ins[2] if len(ins) > 2 else None
    if not isinstance(x, _Tensor) or isinstance(w, _Tensor) or isinstance(c, _Tensor):
        raise b.fail("only Gemm(data, constant B, constant C) is supported")
    if b.attr("transA", 0):
        raise b.fail("transA=1 is not supported")
    w = np.asarray(w, dtype=np.float64)
    w = w if b.attr("transB", 0) else w.T                 # -> (out, in)
    alpha, beta = float(b.attr("alpha", 1.0)), float(b.attr("beta", 1.0))
    bias = None if c is None else beta * np.asarray(c, dtype=np.float64).reshape(-1)
    if bias is not None and bias.size not in (1, w.shape[0]):
        raise b.fail(f"bias C of shape {list(np.shape(c))} does not broadcast to {w.shape[0]} outputs")
    return _linear(b, x, alpha * w, bias)


def _linear(b: _Builder, x: _Tensor, w: np.ndarray, bias: np.ndarray | None) -> _Tensor:
    out_f, in_f = w.shape
    if x.probe.shape[-1] != in_f:
        raise b.fail(f"weight expects {in_f} input features but the data has shape {list(x.onnx_shape)}")
    layer = nn.Linear(in_f, out_f)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        layer.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (out_f,)).astype(np.float32))
                         if bias is not None else torch.zeros(out_f))
    return b.emit(layer, [x])


def _op_matmul(b: _Builder, ins: list) -> _Tensor:
    a, w = ins
    if isinstance(a, _Tensor) and isinstance(w, _Tensor):
        raise b.fail("the matrix product of two data tensors is not supported (it is not linear)")
    if isinstance(a, _Tensor):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise b.fail(f"the constant operand must be a matrix, got shape {list(w.shape)}")
        if a.probe.dim() == 2:                             # per-sample vector: a Linear layer
            return _linear(b, a, w.T, None)
        return b.emit(ConstMatMul(torch.from_numpy(w.astype(np.float32)), right=True), [a])
    x, w = w, np.asarray(a, dtype=np.float64)
    if w.ndim != 2:
        raise b.fail(f"the constant operand must be a matrix, got shape {list(w.shape)}")
    if x.probe.dim() == 2 and not x.batch:                  # W @ v for a vector v
        return _linear(b, x, w, None)
    if x.probe.dim() < 3:
        raise b.fail(f"constant @ data needs a matrix per sample, the data has shape {list(x.onnx_shape)}")
    return b.emit(ConstMatMul(torch.from_numpy(w.astype(np.float32)), right=False), [x])


def _op_arith(b: _Builder, ins: list) -> _Tensor:
    op = b.node.op_type
    a, c = ins
    if isinstance(a, _Tensor) and isinstance(c, _Tensor):
        if op in ("Add", "Sub"):
            if a.probe.shape[1:] != c.probe.shape[1:] or a.batch != c.batch:
                a, c, batch = _math.broadcast_pair(b, a, c)
            else:
                batch = a.batch or c.batch
            return b.emit(Add() if op == "Add" else Sub(), [a, c], batch=batch)
        return _math.op_mul_div(b, a, c)
    data_first = isinstance(a, _Tensor)
    if op == "Div" and not data_first:
        return _math.op_mul_div(b, a, c)
    t, k = _math._const_for(b, a if data_first else c, c if data_first else a)
    one, zero = np.ones(()), np.zeros(())
    if op == "Add":
        return _append_affine(b, t, one, k)
    if op == "Sub":
        return _append_affine(b, t, one, -k) if data_first else _append_affine(b, t, -one, k)
    if op == "Mul":
        return _append_affine(b, t, k, zero)
    if (k == 0).any():
        raise b.fail("division by a constant that contains zero")
    return _append_affine(b, t, 1.0 / k, zero)


def _op_neg(b: _Builder, ins: list) -> _Tensor:
    return _append_affine(b, ins[0], -np.ones(()), np.zeros(()))


def _op_batchnorm(b: _Builder, ins: list) -> _Tensor:
    if b.attr("training_mode", 0) or len([o for o in b.node.output if o]) > 1:
        raise b.fail("only inference-mode BatchNormalization is supported")
    x = ins[0]
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in ins[1:5])
    s = gamma / np.sqrt(var + float(b.attr("epsilon", 1e-5)))
    per = (-1,) + (1,) * (x.probe.dim() - 2)              # channels first in each sample
    return _append_affine(b, x, s.reshape(per), (beta - mean * s).reshape(per))


def _op_activation(b: _Builder, ins: list) -> _Tensor:
    op = b.node.op_type
    if op == "LeakyRelu":
        return b.emit(nn.LeakyReLU(float(b.attr("alpha", 0.01))), ins[:1])
    if op in ("Softmax",):
        x = ins[0]
        axis = int(b.attr("axis", -1 if b.opset >= 13 else 1))
        a = axis + x.rank if axis < 0 else axis
        if b.opset < 13 and a != x.rank - 1:
            raise b.fail(f"Softmax(axis={axis}) before opset 13 flattens the trailing axes; only the last axis is supported")
        return b.emit(nn.Softmax(dim=b.per_axis(x, axis) + 1), [x])
    return b.emit({"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}[op](), ins[:1])


def _op_passthrough(b: _Builder, ins: list) -> _Tensor:
    if b.node.op_type == "Cast":
        import onnx

        kind = onnx.helper.tensor_dtype_to_np_dtype(int(b.attr("to", 1))).kind
        if kind != "f":
            return _math.cast(b, ins[0], kind)
    return ins[0]


def _op_flatten(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    axis = int(b.attr("axis", 1))
    shape = x.onnx_shape
    axis = axis + len(shape) if axis < 0 else axis
    outer = int(np.prod(shape[:axis])) if axis else 1
    return b.reshape_to(x, (outer, int(np.prod(shape[axis:]))), batch=x.batch or outer == 1)


def _op_reshape(b: _Builder, ins: list) -> _Tensor:
    x, target = ins
    cur = list(x.onnx_shape)
    dims = [int(v) for v in np.asarray(target).reshape(-1)]
    if not int(b.attr("allowzero", 0)):
        dims = [cur[i] if (d == 0 and i < len(cur)) else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1:
        raise b.fail(f"shape {dims} has more than one -1")
    total = int(np.prod(cur))
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1])) or 1
        dims[dims.index(-1)] = total // known
    return b.reshape_to(x, tuple(dims))


def _axes(b: _Builder, ins: list, i: int) -> list[int] | None:
    if len(ins) > i and ins[i] is not None:
        return [int(v) for v in np.asarray(ins[i]).reshape(-1)]
    a = b.attr("axes")
    return None if a is None else [int(v) for v in a]


def _op_squeeze(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    shape = list(x.onnx_shape)
    axes = _axes(b, ins, 1)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [a % len(shape) for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise b.fail(f"cannot squeeze axes {axes} of shape {shape}")
    out = tuple(d for i, d in enumerate(shape) if i not in axes)
    return b.reshape_to(x, out, batch=x.batch and 0 not in axes)


def _op_unsqueeze(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    shape = list(x.onnx_shape)
    axes = _axes(b, ins, 1) or []
    rank = len(shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    for a in axes:
        shape.insert(a, 1)
    return b.reshape_to(x, tuple(shape), batch=x.batch or axes[:1] == [0])


def _op_transpose(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    perm = [int(p) for p in (b.attr("perm") or reversed(range(x.rank)))]
    if x.batch and perm[0] != 0:                 # the batch axis (size 1) moves: transpose whole samples
        x = b.reshape_to(x, x.onnx_shape, batch=False)
    if x.batch:
        per = [p - 1 for p in perm[1:]]
    else:
        per = perm
    if per == sorted(per):
        return x
    return b.emit(Transpose(tuple(per)), [x])


def _op_concat(b: _Builder, ins: list) -> _Tensor:
    if not all(isinstance(t, _Tensor) for t in ins):
        return _math.op_concat_const(b, ins, int(b.attr("axis")))
    axis = b.per_axis(ins[0], int(b.attr("axis")))
    if len({t.probe.dim() for t in ins}) != 1:
        raise b.fail("inputs of different ranks")
    if len(ins) == 1:
        return ins[0]
    return b.emit(Concat(axis), ins, batch=any(t.batch for t in ins))


def _op_slice(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    if b.opset < 10:
        starts, ends, axes, steps = b.attr("starts"), b.attr("ends"), b.attr("axes"), None
    else:
        starts, ends = ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 else None
        steps = ins[4] if len(ins) > 4 else None
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = list(range(len(starts))) if axes is None else [int(v) for v in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).reshape(-1)]
    shape = x.onnx_shape
    out = x
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        a = ax % len(shape)
        if sp == 0:
            raise b.fail("step 0")
        if sp < 0:                                   # a reversed selection: constant indices
            idx = np.arange(shape[a])[slice(st, en, sp)]
            out = b.emit(Gather(b.per_axis(x, ax), torch.from_numpy(idx.astype(np.int64))), [out])
            continue
        start, stop, _ = slice(st, en, sp).indices(shape[a])
        if (start, stop, sp) == (0, shape[a], 1) or (x.batch and a == 0 and (start, stop) == (0, 1)):
            continue
        out = b.emit(Slice(b.per_axis(x, ax), start, stop, sp), [out])
    return out


def _op_split(b: _Builder, ins: list) -> list[_Tensor]:
    x = ins[0]
    axis = int(b.attr("axis", 0))
    n_out = len(b.node.output)
    size = x.onnx_shape[axis % x.rank]
    split = ins[1] if len(ins) > 1 and ins[1] is not None else b.attr("split")
    if split is None:
        step = -(-size // n_out)
        split = [min(step, size - i * step) for i in range(n_out)]
    split = [int(v) for v in np.asarray(split).reshape(-1)]
    outs, start = [], 0
    for s in split:
        outs.append(b.emit(Slice(b.per_axis(x, axis), start, start + s, 1), [x]))
        start += s
    return outs


def _op_gather(b: _Builder, ins: list) -> _Tensor:
    x, idx = ins
    if isinstance(idx, _Tensor):
        raise b.fail("indices computed from the data are not supported")
    idx = np.asarray(idx)
    if idx.ndim > 1:
        raise b.fail(f"indices of shape {list(idx.shape)} (only a scalar or a vector)")
    axis = int(b.attr("axis", 0))
    size = x.onnx_shape[axis % x.rank]
    if ((idx < -size) | (idx >= size)).any():
        raise b.fail(f"index out of range for an axis of size {size}")
    return b.emit(Gather(b.per_axis(x, axis), torch.from_numpy(np.asarray(idx % size, dtype=np.int64)), scalar=idx.ndim == 0),
                  [x])


def _spatial_pads(b: _Builder, x: _Tensor, kernel, strides, dilations) -> list[int]:
    """ONNX pads (begin…, end…) after ``auto_pad``."""
    n = len(kernel)
    auto = b.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET",):
        return [int(p) for p in (b.attr("pads") or [0] * (2 * n))]
    if auto == "VALID":
        return [0] * (2 * n)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise b.fail(f"auto_pad={auto}")
    sizes = x.probe.shape[2:]
    pads_b, pads_e = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pads_b.append(small if auto == "SAME_UPPER" else big)
        pads_e.append(big if auto == "SAME_UPPER" else small)
    return pads_b + pads_e


def _torch_pads(pads: list[int]) -> tuple[int, ...]:
    """ONNX spatial pads (b1, b2, e1, e2) -> torch's F.pad order (last axis first)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return tuple(out)


def _op_conv(b: _Builder, ins: list) -> _Tensor:
    x, w = ins[0], ins[1]
    if not isinstance(x, _Tensor) or isinstance(w, _Tensor):
        raise b.fail("only Conv(data, constant weight[, constant bias]) is supported")
    w = np.asarray(w, dtype=np.float32)
    n = w.ndim - 2
    if n not in (1, 2):
        raise b.fail(f"only 1-D and 2-D convolutions are supported (weight shape {list(w.shape)})")
    kernel = tuple(w.shape[2:])
    if tuple(b.attr("kernel_shape", kernel)) != kernel:
        raise b.fail(f"kernel_shape {b.attr('kernel_shape')} disagrees with the weight shape {list(w.shape)}")
    strides = tuple(b.attr("strides", [1] * n))
    dil = tuple(b.attr("dilations", [1] * n))
    group = int(b.attr("group", 1))
    pads = _spatial_pads(b, x, kernel, strides, dil)
    if pads[:n] != pads[n:]:
        x = b.emit(Pad(_torch_pads(pads)), [x])
        pads = [0] * (2 * n)
    out_c = w.shape[0]
    cls = nn.Conv1d if n == 1 else nn.Conv2d
    conv = cls(w.shape[1] * group, out_c, kernel, stride=strides, padding=tuple(pads[:n]), dilation=dil, groups=group)
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros(out_c, np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32).reshape(out_c)))
    return b.emit(conv, [x])


def _op_conv_transpose(b: _Builder, ins: list) -> _Tensor:
    x, w = ins[0], np.asarray(ins[1], dtype=np.float32)
    if w.ndim != 4:
        raise b.fail(f"only 2-D transposed convolutions are supported (weight shape {list(w.shape)})")
    if b.attr("output_shape") is not None or b.attr("auto_pad", "NOTSET") != "NOTSET":
        raise b.fail("output_shape / auto_pad are not supported; export with explicit pads")
    pads = [int(p) for p in (b.attr("pads") or [0, 0, 0, 0])]
    if pads[:2] != pads[2:]:
        raise b.fail(f"asymmetric padding {pads} is not supported")
    group = int(b.attr("group", 1))
    conv = nn.ConvTranspose2d(w.shape[0], w.shape[1] * group, tuple(w.shape[2:]), stride=tuple(b.attr("strides", [1, 1])),
                              padding=tuple(pads[:2]), output_padding=tuple(b.attr("output_padding", [0, 0])),
                              groups=group, dilation=tuple(b.attr("dilations", [1, 1])))
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros(conv.out_channels, np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32).reshape(-1)))
    return b.emit(conv, [x])


def _op_pool(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    op = b.node.op_type
    n = x.probe.dim() - 2
    if n not in (1, 2):
        raise b.fail(f"pooling of a {n}-D input is not supported")
    if op.startswith("Global"):
        cls = nn.AdaptiveAvgPool1d if n == 1 else nn.AdaptiveAvgPool2d
        if op == "GlobalMaxPool":
            raise b.fail("GlobalMaxPool is not supported")
        return b.emit(cls(1), [x])
    kernel = tuple(int(k) for k in b.attr("kernel_shape"))
    strides = tuple(b.attr("strides", [1] * n))
    dil = tuple(b.attr("dilations", [1] * n))
    pads = _spatial_pads(b, x, kernel, strides, dil)
    ceil = bool(b.attr("ceil_mode", 0))
    if pads[:n] != pads[n:]:
        raise b.fail(f"asymmetric padding {pads} is not supported for pooling")
    pad = tuple(pads[:n])
    if any(2 * p > k for p, k in zip(pad, kernel)):
        raise b.fail(f"padding {list(pad)} is more than half the kernel {list(kernel)}")
    if op == "MaxPool":
        if len([o for o in b.node.output if o]) > 1:
            raise b.fail("the Indices output is not supported")
        cls = nn.MaxPool1d if n == 1 else nn.MaxPool2d
        return b.emit(cls(kernel, strides, pad, dil, ceil_mode=ceil), [x])
    if any(d != 1 for d in dil):
        raise b.fail(f"dilations {list(dil)} are not supported for AveragePool")
    cls = nn.AvgPool1d if n == 1 else nn.AvgPool2d
    return b.emit(cls(kernel, strides, pad, ceil_mode=ceil, count_include_pad=bool(b.attr("count_include_pad", 0))), [x])


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def _op_pad(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    mode = b.attr("mode", "constant")
    if mode not in PAD_MODES:
        raise b.fail(f"mode={mode!r}")
    if b.opset < 11:
        pads, value, axes = list(b.attr("pads")), float(b.attr("value", 0.0)), None
    else:
        pads = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
        value = float(np.asarray(ins[2]).reshape(-1)[0]) if len(ins) > 2 and ins[2] is not None and np.size(ins[2]) else 0.0
        axes = _axes(b, ins, 3) if len(ins) > 3 else None
    rank = x.rank
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    k = len(axes)
    begin = {a: pads[i] for i, a in enumerate(axes)}
    end = {a: pads[i + k] for i, a in enumerate(axes)}
    if any(p < 0 for p in pads):
        raise b.fail(f"negative pads {pads} (cropping) are not supported")
    if x.batch and (begin.get(0, 0) or end.get(0, 0)):
        raise b.fail("pads the batch axis")
    padded = [a for a in range(rank) if begin.get(a, 0) or end.get(a, 0)]
    if not padded:
        return x
    first = min(padded)
    torch_pads: list[int] = []
    for a in reversed(range(first, rank)):
        torch_pads += [begin.get(a, 0), end.get(a, 0)]
    mode = PAD_MODES[mode]
    if mode != "constant":
        per_rank = x.probe.dim() - 1
        n_spatial = rank - first
        if n_spatial > 3 or per_rank - n_spatial < 1:
            raise b.fail(f"{mode} padding of axes {padded} of shape {list(x.onnx_shape)} (only the trailing "
                         "spatial axes after a channel axis)")
    return b.emit(Pad(tuple(torch_pads), mode, value), [x])


HANDLERS: dict[str, Callable[[_Builder, list], object]] = {
    "Gemm": _op_gemm, "MatMul": _op_matmul, "Add": _op_arith, "Sub": _op_arith, "Mul": _op_arith,
    "Div": _op_arith, "Neg": _op_neg, "BatchNormalization": _op_batchnorm, "Relu": _op_activation,
    "LeakyRelu": _op_activation, "Sigmoid": _op_activation, "Tanh": _op_activation, "Softmax": _op_activation,
    "Identity": _op_passthrough, "Dropout": _op_passthrough, "Cast": _op_passthrough, "Flatten": _op_flatten,
    "Reshape": _op_reshape, "Squeeze": _op_squeeze, "Unsqueeze": _op_unsqueeze, "Transpose": _op_transpose,
    "Concat": _op_concat, "Slice": _op_slice, "Split": _op_split, "Gather": _op_gather, "Conv": _op_conv,
    "ConvTranspose": _op_conv_transpose, "MaxPool": _op_pool, "AveragePool": _op_pool,
    "GlobalAveragePool": _op_pool, "Pad": _op_pad,
}
from . import _onnx_math as _math  # noqa: E402  (it builds on the helpers above)

HANDLERS.update(_math.MATH_HANDLERS)
SUPPORTED_OPS = tuple(sorted([*HANDLERS, "Constant", "Shape", "(constant sub-graphs)"]))


# -- the walk -----------------------------------------------------------------------------------------

def batch_layout(dims: list[int | None], override: tuple[int, ...] | None) -> tuple[tuple[int, ...], bool]:
    """``(per-sample shape, has batch axis)`` of an input declared with ``dims`` (``None`` = symbolic)."""
    if override is not None:
        return tuple(override), len(dims) == len(override) + 1 or not dims
    if len(dims) >= 2 and (dims[0] is None or dims[0] == 1):
        return tuple(dims[1:]), True
    return tuple(dims), False


def build_network(model, path: Path, input_name: str | list[tuple[str, tuple[int, ...], bool]],
                  sample_shape: tuple[int, ...], consts: dict[str, np.ndarray], has_batch: bool = True,
                  extra_outputs: tuple[str, ...] = ()) -> nn.Module:
    """Turn ``model.graph`` into an ``nn.Sequential`` (a chain) or a ``GraphNetwork`` (see the module docstring).

    ``input_name`` may list several data inputs ``(name, per-sample shape, has batch axis)``: the network
    then reads their flat concatenation (in that order; ``sample_shape`` is its length). Several graph
    outputs are flattened and concatenated in order; an output that does not depend on the input is a
    constant (:class:`nnmend.layers_math.ConstantOutput`). ``extra_outputs``: names of further tensors (hidden
    nodes) appended to the outputs, in order, each kept as the file computes it (never folded into a later node).
    """
    from ..graph import GraphNetwork

    g = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    b = _Builder(path, consts, list(model.opset_import), opset)
    root = _Tensor(GraphNetwork.INPUT, torch.zeros(1, *sample_shape), has_batch)
    b.probes[GraphNetwork.INPUT] = root.probe
    uses: dict[str, int] = {}
    for node in g.node:
        if node.op_type != "Shape":  # Shape reads only the (known) shape, not the values
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
    for name in [o.name for o in g.output] + list(extra_outputs):
        uses[name] = uses.get(name, 0) + 1
    if isinstance(input_name, str):
        tensors: dict[str, _Tensor] = {input_name: root}
        b.node_uses[GraphNetwork.INPUT] = uses.get(input_name, 0)
    else:
        tensors, start = {}, 0
        b.node_uses[GraphNetwork.INPUT] = len(input_name)
        for name, per, batch in input_name:
            n = int(np.prod(per))
            t = b.reshape_to(b.emit(Slice(0, start, start + n), [root], batch=False), ((1,) if batch else ()) + tuple(per),
                             batch=batch)
            b.node_uses[t.node] = uses.get(name, 0)
            tensors[name], start = t, start + n

    def fail(msg: str) -> ModelError:
        return b.fail(msg)

    for node in g.node:
        b.node = node
        if node.op_type == "Constant":
            consts[node.output[0]] = const_of_node(fail, node)
            continue
        data = [n for n in node.input if n and n not in consts]
        unknown = [n for n in data if n not in tensors]
        if unknown:
            raise b.fail(f"reads tensor {unknown[0]!r}, which no earlier node produces (graphs must be in "
                         "topological order; cycles are refused)")
        if node.op_type == "Shape":
            shape = np.array(tensors[data[0]].onnx_shape if data else np.shape(consts[node.input[0]]), dtype=np.int64)
            start, end = int(b.attr("start", 0)), b.attr("end", None)
            consts[node.output[0]] = shape[start:None if end is None else int(end)]
            continue
        if not data:
            for name, value in zip(node.output, fold_constant_node(fail, node, consts, b.opsets)):
                consts[name] = np.asarray(value)
            continue
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise b.fail(f"unsupported ONNX operator {node.op_type!r}; supported: {', '.join(SUPPORTED_OPS)}")
        ins = [tensors[n] if n in tensors else (consts[n] if n else None) for n in node.input]
        out = handler(b, ins)
        outs = out if isinstance(out, list) else [out]
        read = {tensors[n].node for n in data}
        for name, t in zip(node.output, outs):
            if name:
                tensors[name] = t
                # a pass-through (the same graph node) hands its own read on to its readers
                b.node_uses[t.node] = b.node_uses.get(t.node, 0) + uses.get(name, 0) - (t.node in read)

    b.node = None
    outs = []
    for name in [o.name for o in g.output] + list(extra_outputs):
        if name in tensors:
            outs.append(tensors[name])
        elif name in consts:             # computed from shapes and constants only
            from ..layers_math import ConstantOutput

            value = np.asarray(consts[name], dtype=np.float64)
            outs.append(b.emit(ConstantOutput(torch.as_tensor(value.reshape(value.shape or (1,)), dtype=torch.float32)),
                               [root], batch=False))
        else:
            raise ModelError(f"{path}: tensor {name!r} is not computed by any node of the graph")
    if len(outs) > 1:
        flat = [t if t.probe.dim() == 2 else b.emit(nn.Flatten(), [t], batch=False) for t in outs]
        outs = [b.emit(Concat(0), flat, batch=False)]
    net = _assemble(b, outs[0].node, GraphNetwork)
    net.nnmend_onnx_names = b.onnx_names
    return net


def _assemble(b: _Builder, output: str, GraphNetwork) -> nn.Module:
    """A chain as ``nn.Sequential``, anything else as a ``GraphNetwork``; only nodes the output needs."""
    needed, stack = set(), [output]
    while stack:
        n = stack.pop()
        if n in needed or n == GraphNetwork.INPUT:
            continue
        needed.add(n)
        stack += b.nodes[n][1]
    nodes = [(name, m, ins) for name, (m, ins) in b.nodes.items() if name in needed]
    prev, chain = GraphNetwork.INPUT, True
    for name, _, ins in nodes:
        chain &= ins == [prev]
        prev = name
    if chain and (not nodes or nodes[-1][0] == output):
        return nn.Sequential(OrderedDict((name, m) for name, m, _ in nodes))
    return GraphNetwork(nodes, output)


def several_inputs(path: Path, data_inputs) -> tuple[list[tuple[str, tuple[int, ...], bool]], int]:
    """``[(name, per-sample shape, has batch axis)]`` of several declared data inputs and their total size."""
    layout, total = [], 0
    for vi in data_inputs:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in vi.type.tensor_type.shape.dim]
        per, batch = batch_layout(dims, None)
        if any(d is None for d in per):
            raise ModelError(f"{path}: input {vi.name!r} has shape {dims} with unknown dimensions")
        per = tuple(per) or (1,)
        layout.append((vi.name, per, batch))
        total += int(np.prod(per))
    return layout, total
