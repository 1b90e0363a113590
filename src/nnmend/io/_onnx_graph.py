"""The ONNX graph walk behind :func:`nnmend.io.onnx.load_onnx`: operators -> torch layers.

Every data tensor is held as "layers applied to an anchor tensor". A tensor read by several nodes becomes
an anchor of its own, so layers are never shared or folded across branches; an ``Add`` of two data
tensors finds the nearest common anchor and becomes ``SumOfNetworks(branch_a, branch_b)`` there (how
nnmend's patched networks export). Constant sub-graphs (``Shape`` of a data tensor, ``Gather``,
``Concat``, ``Unsqueeze``, ``Cast`` … as PyTorch emits for ``x.view(x.size(0), -1)``) are evaluated
with onnx's reference evaluator. A probe tensor (batch 1) carries every value's shape, so reshapes and
shape errors are resolved at load time and name the node.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError


@dataclass
class _Rep:
    """A data tensor as ``layers`` applied to the anchor tensor ``base`` (whose probe is ``base_probe``)."""

    base: str
    layers: list  # [[name, module], ...]
    base_probe: torch.Tensor
    probe: torch.Tensor


class _Builder:
    def __init__(self, path: Path, consts: dict[str, np.ndarray], opsets):
        self.path, self.consts, self.opsets = path, consts, opsets
        self.counts: dict[str, int] = {}
        self.node = None
        self.rep: _Rep | None = None

    def fail(self, msg: str) -> ModelError:
        n = self.node
        return ModelError(f"{self.path}: node {n.name!r} ({n.op_type}): {msg}")

    def attr(self, name: str, default=None):
        import onnx

        for a in self.node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def const(self, name: str) -> np.ndarray:
        return np.asarray(self.consts[name])

    @property
    def layers(self) -> list:
        return self.rep.layers

    @property
    def probe(self) -> torch.Tensor:
        return self.rep.probe

    @property
    def last(self) -> nn.Module | None:
        return self.rep.layers[-1][1] if self.rep.layers else None

    def name(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return prefix if prefix == "flatten" and self.counts[prefix] == 1 else f"{prefix}{self.counts[prefix]}"

    def append(self, prefix: str, module: nn.Module) -> None:
        try:
            with torch.no_grad():
                out = module(self.rep.probe)
        except RuntimeError as exc:
            raise self.fail(f"does not fit its input of shape {tuple(self.rep.probe.shape[1:])} "
                            f"({str(exc).splitlines()[0]})") from None
        self.rep.layers.append([self.name(prefix), module])
        self.rep.probe = out

    def reset_probe(self) -> None:
        x = self.rep.base_probe
        with torch.no_grad():
            for _, m in self.rep.layers:
                x = m(x)
        self.rep.probe = x


# -- constants ----------------------------------------------------------------------------------------

def const_of_node(b: _Builder, node) -> np.ndarray:
    import onnx

    for attr in node.attribute:
        if attr.name == "value":
            return onnx.numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(attr))
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(attr)))
    raise b.fail("a Constant without a value this reader understands")


def fold_constant_node(b: _Builder, node) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants, under the model's own opset."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [n for n in node.input if n]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(b.const(n).dtype), None) for n in names]
    outs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output if n]
    mini = helper.make_model(helper.make_graph([node], "fold", ins, outs), opset_imports=b.opsets)
    try:
        return ReferenceEvaluator(mini).run(None, {n: b.const(n) for n in names})
    except Exception as exc:  # the reference evaluator raises many types
        raise b.fail(f"cannot evaluate this constant computation ({type(exc).__name__}: {exc})") from None


# -- operators ----------------------------------------------------------------------------------------

def _linear(b: _Builder, weight: np.ndarray, bias: np.ndarray | None) -> None:
    out_f, in_f = weight.shape
    if b.probe.shape[-1] != in_f:
        raise b.fail(f"weight expects {in_f} input features but the data has shape {tuple(b.probe.shape[1:])}")
    layer = nn.Linear(in_f, out_f)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)))
        layer.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (out_f,)).astype(np.float32))
                         if bias is not None else torch.zeros(out_f))
    b.append("fc", layer)


def _op_matmul(b: _Builder, data: str) -> None:
    if b.node.input[0] != data:
        raise b.fail("only data @ constant is supported (the constant is on the left)")
    w = b.const(b.node.input[1])
    if w.ndim != 2:
        raise b.fail(f"the constant operand must be a matrix, got shape {w.shape}")
    _linear(b, w.T, None)


def _op_gemm(b: _Builder, data: str) -> None:
    if b.node.input[0] != data or b.attr("transA", 0):
        raise b.fail("only Gemm(data, constant B, constant C) with transA=0 is supported")
    w = b.const(b.node.input[1]).astype(np.float64)
    w = w if b.attr("transB", 0) else w.T  # -> (out, in)
    alpha, beta = float(b.attr("alpha", 1.0)), float(b.attr("beta", 1.0))
    c = b.const(b.node.input[2]).astype(np.float64).reshape(-1) if len(b.node.input) > 2 and b.node.input[2] else None
    if c is not None and c.size not in (1, w.shape[0]):
        raise b.fail(f"bias C of shape {c.shape} does not broadcast to {w.shape[0]} outputs")
    _linear(b, alpha * w, None if c is None else beta * c)


def _strip_ones(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _affine(b: _Builder, scale: np.ndarray, shift: np.ndarray) -> None:
    """Append ``x * scale + shift``: folded into a preceding bias, composed with a preceding affine, or new."""
    from ..layers import ElementwiseAffine

    last = b.last
    if bool((scale == 1).all()):
        for kind, width in ((nn.Linear, "out_features"), (nn.Conv2d, "out_channels")):
            if isinstance(last, kind):
                n = getattr(last, width)
                per = (n,) if kind is nn.Linear else (n, 1, 1)
                if _strip_ones(shift.shape) in ((), per):
                    with torch.no_grad():
                        last.bias += torch.from_numpy(np.broadcast_to(shift.reshape(-1), (n,)).astype(np.float32))
                    return
    if isinstance(last, ElementwiseAffine):  # (x*s1 + t1)*s2 + t2 as one layer
        s1, t1 = last.scale.double().numpy(), last.shift.double().numpy()
        scale, shift = s1 * scale, t1 * scale + shift
        b.layers.pop()
        b.reset_probe()
    shape_in = tuple(b.probe.shape)
    if (scale == 1).all() and (shift == 0).all() and np.broadcast_shapes(shape_in, scale.shape, shift.shape) == shape_in:
        return  # the identity (ACAS Xu subtracts an all-zero "AvgImg")
    b.append("affine", ElementwiseAffine(torch.from_numpy(np.asarray(scale, dtype=np.float32)),
                                         torch.from_numpy(np.asarray(shift, dtype=np.float32))))


def _op_elementwise(b: _Builder, data: str) -> None:
    op = b.node.op_type
    data_first = b.node.input[0] == data
    c = b.const(b.node.input[1] if data_first else b.node.input[0]).astype(np.float64)
    if c.ndim == b.probe.dim():
        if c.shape[0] != 1:
            raise b.fail(f"constant of shape {c.shape} varies along the batch dimension")
        c = c[0]  # ElementwiseAffine broadcasts against one sample's shape
    one, zero = np.ones(()), np.zeros(())
    if op == "Add":
        scale, shift = one, c
    elif op == "Sub":
        scale, shift = (one, -c) if data_first else (-one, c)
    elif op == "Mul":
        scale, shift = c, zero
    else:  # Div
        if not data_first:
            raise b.fail("dividing a constant by the data is not linear")
        if (c == 0).any():
            raise b.fail("division by a constant that contains zero")
        scale, shift = 1.0 / c, zero
    _affine(b, scale, shift)


def _op_batchnorm(b: _Builder, data: str) -> None:
    if b.attr("training_mode", 0) or len([o for o in b.node.output if o]) > 1:
        raise b.fail("only inference-mode BatchNormalization is supported")
    gamma, beta, mean, var = (b.const(n).astype(np.float64) for n in b.node.input[1:5])
    s = gamma / np.sqrt(var + float(b.attr("epsilon", 1e-5)))
    per = (-1,) + (1,) * (b.probe.dim() - 2)  # channels on dim 1 of (N, C, ...)
    _affine(b, s.reshape(per), (beta - mean * s).reshape(per))


def _op_relu(b: _Builder, data: str) -> None:
    b.append("relu", nn.ReLU())


def _op_flatten(b: _Builder, data: str) -> None:
    rank = b.probe.dim()
    axis = int(b.attr("axis", 1))
    axis = axis + rank if axis < 0 else axis
    # Per sample, a Flatten whose leading block is only the (size-1) batch dimension keeps one sample per row.
    if axis > 1 and any(d != 1 for d in b.probe.shape[1:axis]):
        raise b.fail(f"Flatten(axis={axis}) on shape {tuple(b.probe.shape)} would mix samples")
    if rank > 2:
        b.append("flatten", nn.Flatten())


def _op_reshape(b: _Builder, data: str) -> None:
    target = [int(v) for v in b.const(b.node.input[1]).reshape(-1)]
    cur = list(b.probe.shape)
    allow_zero = int(b.attr("allowzero", 0))
    dims = [cur[i] if (t == 0 and not allow_zero and i < len(cur)) else t for i, t in enumerate(target)]
    if dims.count(-1) > 1:
        raise b.fail(f"shape {target} has more than one -1")
    total = int(np.prod(cur))
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1])) or 1
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total:
        raise b.fail(f"cannot reshape {tuple(cur)} to {target}")
    # The file's batch dimension is 1: a leading 1 is the batch; a target without one drops it.
    per = tuple(dims[1:]) if len(dims) >= 2 and dims[0] == 1 else tuple(dims)
    now = tuple(cur[1:])
    if per == now:
        return
    if len(now) > 1 or len(per) == 1:
        b.append("flatten", nn.Flatten())
    if len(per) > 1:
        b.append("unflatten", nn.Unflatten(1, per))


def _op_conv(b: _Builder, data: str) -> None:
    if b.node.input[0] != data:
        raise b.fail("the data must be the first input")
    w = b.const(b.node.input[1]).astype(np.float32)
    if w.ndim != 4:
        raise b.fail(f"only 2-D convolutions are supported (weight shape {w.shape})")
    auto_pad = b.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        raise b.fail(f"auto_pad={auto_pad} is not supported; export with explicit pads")
    pads = list(b.attr("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    if pads[:2] != pads[2:]:
        raise b.fail(f"asymmetric padding {pads} is not supported")
    group = int(b.attr("group", 1))
    out_c, in_per_group, kh, kw = w.shape
    kernel = tuple(b.attr("kernel_shape", [kh, kw]))
    if kernel != (kh, kw):
        raise b.fail(f"kernel_shape {kernel} disagrees with the weight shape {w.shape}")
    conv = nn.Conv2d(in_per_group * group, out_c, (kh, kw), stride=tuple(b.attr("strides", [1, 1])),
                     padding=tuple(pads[:2]), dilation=tuple(b.attr("dilations", [1, 1])), groups=group)
    has_bias = len(b.node.input) > 2 and b.node.input[2]
    bias = b.const(b.node.input[2]).astype(np.float32) if has_bias else np.zeros(out_c, np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(bias.reshape(out_c)))
    b.append("conv", conv)


def _op_identity(b: _Builder, data: str) -> None:
    return None


HANDLERS: dict[str, Callable[[_Builder, str], None]] = {
    "MatMul": _op_matmul, "Gemm": _op_gemm, "Add": _op_elementwise, "Sub": _op_elementwise,
    "Mul": _op_elementwise, "Div": _op_elementwise, "BatchNormalization": _op_batchnorm, "Relu": _op_relu,
    "Flatten": _op_flatten, "Reshape": _op_reshape, "Conv": _op_conv, "Identity": _op_identity,
    "Dropout": _op_identity,
}
SUPPORTED_OPS = tuple(sorted([*HANDLERS, "Constant", "Shape", "(constant sub-graphs)"]))


# -- the walk -----------------------------------------------------------------------------------------

def build_network(model, path: Path, input_name: str, sample_shape: tuple[int, ...],
                  consts: dict[str, np.ndarray]) -> nn.Sequential:
    """Turn ``model.graph`` into an ``nn.Sequential`` (see the module docstring)."""
    from ..layers import SumOfNetworks

    g = model.graph
    b = _Builder(path, consts, list(model.opset_import))
    probe = torch.zeros(1, *sample_shape)
    uses: dict[str, int] = {}
    for node in g.node:
        if node.op_type != "Shape":  # Shape reads only the (known) shape, not the values
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
    for out in g.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    reps = {input_name: _Rep(input_name, [], probe, probe)}
    anchors: dict[str, tuple[str | None, list, torch.Tensor]] = {input_name: (None, [], probe)}

    def take(t: str) -> _Rep:
        rep = reps[t]
        is_anchor = rep.base == t and not rep.layers
        if uses.get(t, 0) > 1 and not is_anchor:  # read by several nodes: freeze it as an anchor
            anchors[t] = (rep.base, rep.layers, rep.probe)
            reps[t] = rep = _Rep(t, [], rep.probe, rep.probe)
            is_anchor = True
        return _Rep(t, [], rep.probe, rep.probe) if is_anchor else rep

    def lineage(a: str) -> list[str]:
        out = [a]
        while anchors[out[-1]][0] is not None:
            out.append(anchors[out[-1]][0])
        return out

    def path_layers(top: str, anchor: str) -> list:
        layers: list = []
        while anchor != top:
            parent, own, _ = anchors[anchor]
            layers = [[n, copy.deepcopy(m)] for n, m in own] + layers
            anchor = parent
        return layers

    def merge(a: str, b_: str) -> _Rep:
        ra, rb = take(a), take(b_)
        seen = set(lineage(ra.base))
        top = next(x for x in lineage(rb.base) if x in seen)
        branches = []
        for r in (ra, rb):
            layers = path_layers(top, r.base) + r.layers
            if len(layers) == 1 and isinstance(layers[0][1], SumOfNetworks):
                branches += list(layers[0][1].branches)  # (a + b) + c as one sum of three
            else:
                branches.append(nn.Sequential(OrderedDict((n, m) for n, m in layers)))
        summed = SumOfNetworks(*branches)
        top_probe = anchors[top][2]
        b.rep = _Rep(top, [], top_probe, top_probe)
        b.append("sum", summed)
        return b.rep

    for node in g.node:
        b.node = node
        if node.op_type == "Constant":
            consts[node.output[0]] = const_of_node(b, node)
            continue
        data = [n for n in node.input if n and n not in consts]
        unknown = [n for n in data if n not in reps]
        if unknown:
            raise b.fail(f"reads tensor {unknown[0]!r}, which no earlier node produces")
        if node.op_type == "Shape":
            shape = np.array(reps[data[0]].probe.shape, dtype=np.int64)
            start, end = int(b.attr("start", 0)), b.attr("end", None)
            consts[node.output[0]] = shape[start:None if end is None else int(end)]
            continue
        if not data:
            for name, value in zip(node.output, fold_constant_node(b, node)):
                consts[name] = np.asarray(value)
            continue
        if node.op_type == "Add" and len(data) == 2:
            reps[node.output[0]] = merge(*data)
            continue
        if len(data) > 1:
            raise b.fail(f"combines {len(data)} data tensors ({', '.join(map(repr, data))}); only an Add of "
                         "two branches is supported (read as SumOfNetworks)")
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise b.fail(f"unsupported ONNX operator {node.op_type!r}; supported: {', '.join(SUPPORTED_OPS)}")
        b.rep = take(data[0])
        handler(b, data[0])
        reps[node.output[0]] = b.rep

    out = g.output[0].name
    if out not in reps:
        raise ModelError(f"{path}: the graph output {out!r} does not depend on the input")
    final = reps[out]
    layers = path_layers(input_name, final.base) + final.layers
    return nn.Sequential(OrderedDict((n, m) for n, m in layers))
