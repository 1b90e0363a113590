"""ONNX in and out, without onnx2torch: chains of standard operators become an ordinary ``nn.Sequential``.

:func:`load_onnx` reads the operators of the VNN-COMP MLP / CNN benchmarks (MatMul, Gemm, Add, Sub,
Mul, Div by constants, Relu, Flatten, Reshape, Conv, Identity, Dropout, Constant and initialisers) and
rebuilds them from torch's own layers, so every other part of nnmend (bounds, faults, repair) sees plain
``nn.Linear`` / ``nn.Conv2d`` / ``nn.ReLU``. MatMul + Add fold into one ``nn.Linear``, a bias Add after a
Conv folds into the Conv, and element-wise arithmetic with constants becomes
:class:`nnmend.layers.ElementwiseAffine` (dropped when it is the identity, as ACAS Xu's all-zero
``Sub``). The graph is read per sample: the file's batch dimension (1 in VNN-COMP files) becomes the
batch dimension of the module.

:func:`save_onnx` exports with the TorchScript exporter (``dynamo=False``; no onnxscript needed), keeps
``nnmend_meta`` in the file's metadata, and checks the written file against the network in
onnxruntime before it replaces the target.

Example::

    net = load_onnx("ACASXU_run2a_1_1_batch_2000.onnx")   # Sequential(flatten, fc1, relu1, …, fc7)
    net.nnmend_input_shape                                # (1, 1, 5)
    save_onnx(net, "copy.onnx")                           # input shape taken from the network
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from .atomic import atomic_path

__all__ = ["load_onnx", "save_onnx", "onnx_max_abs_diff", "SUPPORTED_OPS"]

META_KEY = "nnmend_meta"


def _onnx():
    import onnx  # imported lazily: `import nnmend` should not pay for onnx

    return onnx


def _read_model(path: Path):
    onnx = _onnx()
    if not path.exists():
        raise ModelError(f"{path}: file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model (truncated or corrupt: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not model.graph.node or not model.graph.output:
        raise ModelError(f"{path}: not an ONNX model (the file holds no graph)")
    return model


def _const_of_node(node) -> np.ndarray:
    onnx = _onnx()
    for attr in node.attribute:
        if attr.name == "value":
            return onnx.numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(attr))
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(onnx.helper.get_attribute_value(attr)))
    raise ModelError(f"Constant node {node.name!r} has no value this reader understands")


class _Builder:
    """Appends torch layers for one chain of ONNX nodes, tracking the per-sample shape with a probe."""

    def __init__(self, path: Path, consts: dict[str, np.ndarray], sample_shape: tuple[int, ...]):
        self.path, self.consts = path, consts
        self.layers: list[list] = []  # [name, module]
        self.counts: dict[str, int] = {}
        self.sample_shape = tuple(sample_shape)
        self.probe = torch.zeros(1, *sample_shape)
        self.node = None

    # -- helpers ---------------------------------------------------------------------------------
    def fail(self, msg: str) -> ModelError:
        n = self.node
        return ModelError(f"{self.path}: node {n.name!r} ({n.op_type}): {msg}")

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                return _onnx().helper.get_attribute_value(a)
        return default

    def const(self, name: str) -> np.ndarray:
        return np.asarray(self.consts[name])

    def append(self, prefix: str, module: nn.Module) -> None:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        name = prefix if prefix == "flatten" and self.counts[prefix] == 1 else f"{prefix}{self.counts[prefix]}"
        self.layers.append([name, module])
        self.reprobe()

    def reprobe(self) -> None:
        """Push the probe through the newest layer (shape errors surface here, naming the node)."""
        try:
            with torch.no_grad():
                x = self.layers[-1][1](self.probe)
        except RuntimeError as exc:
            raise self.fail(f"does not fit its input of shape {tuple(self.probe.shape[1:])} "
                            f"({str(exc).splitlines()[0]})") from None
        self.probe = x

    def reset_probe(self) -> None:
        x = torch.zeros(1, *self.sample_shape)
        with torch.no_grad():
            for _, m in self.layers:
                x = m(x)
        self.probe = x

    @property
    def last(self) -> nn.Module | None:
        return self.layers[-1][1] if self.layers else None


# -- operators ---------------------------------------------------------------------------------------

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


def _op_elementwise(b: _Builder, data: str) -> None:
    op = b.node.op_type
    data_first = b.node.input[0] == data
    c = b.const(b.node.input[1] if data_first else b.node.input[0]).astype(np.float64)
    full = tuple(b.probe.shape)
    if c.ndim >= len(full) and c.ndim and c.shape[0] != 1 and len(full) == c.ndim:
        raise b.fail(f"constant of shape {c.shape} varies along the batch dimension")
    one = np.ones((), dtype=np.float64)
    zero = np.zeros((), dtype=np.float64)
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

    last = b.last
    pure_shift = bool((scale == 1).all())
    if pure_shift and isinstance(last, nn.Linear) and _strip_ones(shift.shape) in ((), (last.out_features,)):
        with torch.no_grad():
            last.bias += torch.from_numpy(np.broadcast_to(shift.reshape(-1), (last.out_features,)).astype(np.float32))
        return
    if pure_shift and isinstance(last, nn.Conv2d) and _strip_ones(shift.shape) in ((), (last.out_channels, 1, 1)):
        if last.bias is None:
            last.bias = nn.Parameter(torch.zeros(last.out_channels))
        with torch.no_grad():
            last.bias += torch.from_numpy(np.broadcast_to(shift.reshape(-1), (last.out_channels,)).astype(np.float32))
        return
    from ..layers import ElementwiseAffine

    if isinstance(last, ElementwiseAffine):  # compose (x*s1 + t1)*s2 + t2 into one layer
        s1, t1 = last.scale.double().numpy(), last.shift.double().numpy()
        scale, shift = s1 * scale, t1 * scale + shift
        b.layers.pop()
        b.reset_probe()
    shape_in = tuple(b.probe.shape)
    if (scale == 1).all() and (shift == 0).all() and np.broadcast_shapes(shape_in, scale.shape, shift.shape) == shape_in:
        return  # the identity (ACAS Xu subtracts an all-zero "AvgImg")
    b.append("affine", ElementwiseAffine(torch.from_numpy(np.asarray(scale, dtype=np.float32)),
                                         torch.from_numpy(np.asarray(shift, dtype=np.float32))))


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
    bias = b.const(b.node.input[2]).astype(np.float32) if len(b.node.input) > 2 and b.node.input[2] else np.zeros(out_c, np.float32)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        conv.bias.copy_(torch.from_numpy(bias.reshape(out_c)))
    b.append("conv", conv)


def _op_identity(b: _Builder, data: str) -> None:
    return None


_HANDLERS: dict[str, Callable[[_Builder, str], None]] = {
    "MatMul": _op_matmul, "Gemm": _op_gemm, "Add": _op_elementwise, "Sub": _op_elementwise,
    "Mul": _op_elementwise, "Div": _op_elementwise, "Relu": _op_relu, "Flatten": _op_flatten,
    "Reshape": _op_reshape, "Conv": _op_conv, "Identity": _op_identity, "Dropout": _op_identity,
}
SUPPORTED_OPS = tuple(sorted([*_HANDLERS, "Constant"]))


def _sample_shape(path: Path, value_info, override: Sequence[int] | None) -> tuple[int, ...]:
    if override is not None:
        return tuple(int(d) for d in override)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
    per = dims[1:] if len(dims) >= 2 else dims
    if not per or any(d is None or d <= 0 for d in per):
        raise ModelError(f"{path}: input {value_info.name!r} has shape {dims} with unknown per-sample "
                         "dimensions; pass input_shape=(C, H, W) or (features,)")
    return tuple(per)


def load_onnx(path: str | os.PathLike, *, input_shape: Sequence[int] | None = None, check: bool = False) -> nn.Sequential:
    """Rebuild a chain-structured ONNX network as an ``nn.Sequential`` of standard torch layers.

    Args:
        path: the ``.onnx`` file.
        input_shape: per-sample input shape, only needed when the file leaves it symbolic. Default ``None``.
        check: also run the file in onnxruntime on 8 random inputs and raise if the outputs differ
            (max abs diff > 1e-4 * max(1, |y|)). Default ``False``.

    Returns:
        ``nn.Sequential`` in eval mode, with ``nnmend_input_shape`` (e.g. ``(1, 1, 5)``) and
        ``nnmend_meta`` (format, source, input shape, opset, producer, and any ``nnmend_meta`` that
        :func:`save_onnx` stored in the file).

    Raises:
        ModelError naming the file for unreadable files, and naming the operator type and node for an
        unsupported operator or a graph that is not a single chain.
    """
    path = Path(path)
    model = _read_model(path)
    g = model.graph
    onnx = _onnx()
    consts: dict[str, np.ndarray] = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    data_inputs = [i for i in g.input if i.name not in consts]
    if len(data_inputs) != 1:
        raise ModelError(f"{path}: expected one data input, found {len(data_inputs)} "
                         f"({', '.join(i.name for i in data_inputs) or 'none'})")
    if len(g.output) != 1:
        raise ModelError(f"{path}: expected one output, found {len(g.output)}")
    sample_shape = _sample_shape(path, data_inputs[0], input_shape)

    uses: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            uses.setdefault(name, []).append(node)
    b = _Builder(path, consts, sample_shape)
    current = data_inputs[0].name
    for node in g.node:
        b.node = node
        if node.op_type == "Constant":
            consts[node.output[0]] = _const_of_node(node)
            continue
        data = [n for n in node.input if n and n not in consts]
        if not data:
            raise b.fail("computes on constants only; fold constants before export (e.g. onnx-simplifier)")
        if len(data) > 1 or data[0] != current:
            raise b.fail(f"reads {', '.join(map(repr, data))} but the chain's current tensor is {current!r}: "
                         "the graph is not a single chain (skip connections and branches are not supported)")
        readers = uses.get(current, [])
        if len(readers) > 1:
            others = ", ".join(f"{n.name!r} ({n.op_type})" for n in readers)
            raise b.fail(f"tensor {current!r} feeds several nodes ({others}): the graph is not a single chain")
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            raise b.fail(f"unsupported ONNX operator {node.op_type!r}; supported: {', '.join(SUPPORTED_OPS)}")
        handler(b, current)
        current = node.output[0]
    if g.output[0].name != current:
        raise ModelError(f"{path}: the graph output {g.output[0].name!r} is not the end of the chain ({current!r})")

    net = nn.Sequential(OrderedDict((name, m) for name, m in b.layers)).eval()
    meta = {}
    stored = {p.key: p.value for p in model.metadata_props}
    if META_KEY in stored:
        try:
            meta.update(json.loads(stored[META_KEY]))
        except json.JSONDecodeError:
            pass  # foreign or damaged metadata: the network itself is still valid
    meta.update({"format": "onnx", "source": path.name, "input_shape": list(sample_shape),
                 "onnx_input": data_inputs[0].name, "onnx_output": g.output[0].name,
                 "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
                 "producer": model.producer_name})
    net.nnmend_meta = meta
    net.nnmend_input_shape = tuple(sample_shape)
    if check:
        diff, scale = onnx_max_abs_diff(net, path, sample_shape)
        if diff > 1e-4 * max(1.0, scale):
            raise ModelError(f"{path}: the rebuilt network differs from onnxruntime by {diff:.3g}")
    return net


def onnx_max_abs_diff(net: nn.Module, path: str | os.PathLike, sample_shape: Sequence[int], n: int = 8,
                      seed: int = 0, x: torch.Tensor | None = None) -> tuple[float, float]:
    """``(max |net(x) - onnxruntime(x)|, max |onnxruntime(x)|)`` over ``x`` (default ``n`` samples of N(0, 1)).

    Runs one sample per call when the file fixes its batch size to 1, as VNN-COMP files do.
    """
    import onnxruntime as ort

    if x is None:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *sample_shape, generator=gen)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed_batch = isinstance(inp.shape[0], int) if inp.shape else False
    xs = x.numpy().astype(np.float32)
    if fixed_batch:
        ref = np.concatenate([sess.run(None, {inp.name: xi.reshape(inp.shape)})[0].reshape(1, -1) for xi in xs])
    else:
        ref = sess.run(None, {inp.name: xs})[0].reshape(len(xs), -1)
    with torch.no_grad():
        out = net.eval()(x).reshape(len(xs), -1).numpy()
    return float(np.abs(out - ref).max()), float(np.abs(ref).max())


def save_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int] | None = None,
              check: bool = True, opset: int = 17) -> Path:
    """Export ``model`` to ONNX atomically; with ``check`` the file must reproduce the network in onnxruntime.

    Args:
        model: any exportable module (``nnmend.layers.ElementwiseAffine`` and ``SumOfNetworks`` included).
        path: target ``.onnx`` file; it is replaced only after a successful export and check.
        input_shape: per-sample input shape, e.g. ``(1, 28, 28)``. Default: ``model.nnmend_input_shape``.
        check: compare onnxruntime with torch on 16 random inputs (tolerance 1e-4 · max(1, |y|)). Default True.
        opset: ONNX opset. Default 17. The batch dimension is dynamic (named ``batch``).
    """
    path = Path(path)
    shape = input_shape if input_shape is not None else getattr(model, "nnmend_input_shape", None)
    if shape is None:
        raise ModelError(f"{path}: pass input_shape (per sample, e.g. 1,28,28); the network does not record one")
    shape = tuple(int(d) for d in shape)
    net = copy.deepcopy(model).cpu().float().eval()
    dummy = torch.zeros(1, *shape)
    try:
        with torch.no_grad():
            net(dummy)
    except RuntimeError as exc:
        raise ModelError(f"{path}: the network does not accept inputs of shape {shape} "
                         f"({str(exc).splitlines()[0]})") from None
    onnx = _onnx()
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is deprecated
            torch.onnx.export(net, (dummy,), str(tmp), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                              opset_version=opset, dynamo=False)
        meta = dict(getattr(model, "nnmend_meta", None) or {})
        meta["input_shape"] = list(shape)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta, default=str)
        onnx.save(proto, str(tmp))
        if check:
            diff, scale = onnx_max_abs_diff(net, tmp, shape, n=16)
            if not diff <= 1e-4 * max(1.0, scale):
                raise ModelError(f"{path}: the exported file differs from the network by {diff:.3g} in "
                                 "onnxruntime; nothing was written")
    return path
