"""ONNX in and out, without onnx2torch: ONNX graphs become ordinary ``nn.Sequential`` networks.

:func:`load_onnx` reads the operators of the VNN-COMP MLP / CNN benchmarks (MatMul, Gemm, Add, Sub,
Mul, Div by constants, BatchNormalization, Relu, Flatten, Reshape, Conv, Identity, Dropout, Constant and
initialisers, plus constant sub-graphs such as PyTorch's ``Shape -> Gather -> Concat`` reshape targets)
and rebuilds them from torch's own layers, so every other part of nnmend (bounds, faults, repair) sees
plain ``nn.Linear`` / ``nn.Conv2d`` / ``nn.ReLU``. MatMul + Add fold into one ``nn.Linear``, a bias Add
after a Conv folds into the Conv, and element-wise arithmetic with constants becomes
:class:`nnmend.layers.ElementwiseAffine` (dropped when it is the identity, as ACAS Xu's all-zero
``Sub``). The graph must be a chain, except that an ``Add`` of two data paths is read as
:class:`nnmend.layers.SumOfNetworks` (how nnmend's patched networks export); anything else raises
:class:`~nnmend.errors.ModelError` naming the operator and the node. The graph is read per sample:
the file's batch dimension (1 in VNN-COMP files) becomes the batch dimension of the module.

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
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .._validation import check_alloc, numel, read_bytes_capped
from ..errors import ModelError, describe
from ._onnx_graph import SUPPORTED_OPS, batch_layout, build_network
from .atomic import atomic_path

__all__ = ["load_onnx", "save_onnx", "onnx_max_abs_diff", "SUPPORTED_OPS"]

META_KEY = "nnmend_meta"


def _onnx():
    import onnx  # imported lazily: `import nnmend` should not pay for onnx

    return onnx


OPSET_RANGE = (7, 21)
"""The ai.onnx opsets the reader is tested on (ACAS Xu files are opset 8, :func:`save_onnx` writes 17, the
fuzz tests build graphs across the whole range); a file outside it, or declaring none, is refused."""
_PROBE_COPIES = 16
"""The graph walk keeps a batch-1 probe tensor per value: a declared input is allowed at most
``cap / (4 bytes * max(_PROBE_COPIES, nodes))`` elements (see :func:`nnmend._validation.max_alloc_bytes`)."""
# numpy element size of the tensor types whose stored length can be checked against their declared shape
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_COMPLEX = {14: 8, 15: 16}  # complex64 / complex128: two numbers per element in float_data / double_data


def _read_model(path: Path):
    """Parse the file (``.onnx.gz`` decompressed under the memory cap) and check, before any tensor is
    converted: the opset, and that every initializer and Constant holds the data its shape declares."""
    onnx = _onnx()
    raw = read_bytes_capped(path)
    try:
        model = onnx.load_from_string(raw)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX model (truncated or corrupt: {describe(exc)})") from None
    if not model.graph.node or not model.graph.output:
        raise ModelError(f"{path}: not an ONNX model (the file holds no graph)")
    _check_opset(path, model)
    for tensor, what in _declared_tensors(model.graph):
        _check_tensor_size(path, tensor, what)
    return model


def _check_opset(path: Path, model) -> None:
    lo, hi = OPSET_RANGE
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise ModelError(f"{path}: the model declares no ai.onnx opset; nnmend reads opsets {lo}-{hi}")
    if not lo <= max(versions) <= hi:
        raise ModelError(f"{path}: opset {max(versions)} is outside the supported range {lo}-{hi}")


def _constant_tensors(graph):
    """``(TensorProto, description)`` for every Constant node's ``value``."""
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    yield a.t, f"Constant node {node.name or (node.output[0] if node.output else '')!r}"


def _declared_tensors(graph):
    """``(TensorProto, description)`` for every initializer and every Constant node's ``value``."""
    for t in graph.initializer:
        yield t, f"initializer {t.name!r}"
    yield from _constant_tensors(graph)


def _stored_elements(t) -> int | None:
    """How many elements ``t`` actually holds, or None for types whose storage is not checked here."""
    if t.HasField("raw_data"):
        size = _ITEMSIZE.get(t.data_type) or _COMPLEX.get(t.data_type)
        return None if size is None else len(t.raw_data) // size
    fields = (t.float_data, t.int32_data, t.int64_data, t.double_data, t.uint64_data, t.string_data)
    held = max(len(f) for f in fields)
    return held // 2 if t.data_type in _COMPLEX else held


def _check_tensor_size(path: Path, t, what: str) -> None:
    onnx = _onnx()
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise ModelError(f"{path}: {what} refers to external data; nnmend reads self-contained ONNX files only")
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"{path}: {what} has a negative dimension in its shape {dims}")
    count = numel(dims)
    check_alloc(f"{path}: {what} of shape {dims}", count * (_ITEMSIZE.get(t.data_type) or 1))
    stored = _stored_elements(t)
    if stored is not None and stored != count:
        raise ModelError(f"{path}: {what} declares shape {dims} ({count:,} elements) but holds {stored:,}")


def _tensor_arrays(path: Path, graph) -> dict[str, np.ndarray]:
    """Initializers as arrays, each finite (NaN/Inf weights are refused naming the tensor)."""
    onnx = _onnx()
    arrays = {}
    for t in graph.initializer:
        arrays[t.name] = _to_array(onnx, path, t, f"initializer {t.name!r}")
    for t, what in _constant_tensors(graph):
        _to_array(onnx, path, t, what)
    for node in graph.node:
        for a in node.attribute if node.op_type == "Constant" else ():
            if a.name in ("value_float", "value_floats"):
                _check_finite(path, np.asarray(onnx.helper.get_attribute_value(a), dtype=np.float64),
                              f"Constant node {node.name!r} attribute {a.name}")
    return arrays


def _to_array(onnx, path: Path, t, what: str) -> np.ndarray:
    try:
        arr = onnx.numpy_helper.to_array(t)
        if not arr.flags.writeable:  # read-only views of the protobuf's bytes: torch warns on from_numpy
            arr = arr.copy()
    except Exception as exc:  # unknown data type, inconsistent fields
        raise ModelError(f"{path}: {what} cannot be read ({describe(exc)})") from None
    _check_finite(path, arr, what)
    return arr


def _check_finite(path: Path, arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ModelError(f"{path}: {what} (shape {list(arr.shape)}) contains {bad} NaN or Inf value(s)")


def _sample_shape(path: Path, value_info, override: Sequence[int] | None, n_nodes: int = 0) -> tuple[int, ...]:
    if override is not None:
        shape = tuple(int(d) for d in override)
    else:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
        per = dims[1:] if len(dims) >= 2 else dims
        if not per or any(d is None or d <= 0 for d in per):
            raise ModelError(f"{path}: input {value_info.name!r} has shape {dims} with unknown per-sample "
                             "dimensions; pass input_shape=(C, H, W) or (features,)")
        shape = tuple(per)
    if not shape or min(shape) < 1:
        raise ModelError(f"{path}: input shape {list(shape)} must have positive sizes")
    check_alloc(f"{path}: input {value_info.name!r} of per-sample shape {list(shape)} "
                f"(probed through {max(_PROBE_COPIES, n_nodes)} values)",
                numel(shape) * 4 * max(_PROBE_COPIES, n_nodes))
    return shape


def load_onnx(path: str | os.PathLike, *, input_shape: Sequence[int] | None = None, check: bool = False,
              extra_outputs: Sequence[str] = ()) -> nn.Sequential:
    """Rebuild an ONNX network (a chain, with Adds of branches as SumOfNetworks) from standard torch layers.

    Args:
        path: the ``.onnx`` file (or ``.onnx.gz``).
        input_shape: per-sample input shape, only needed when the file leaves it symbolic. Default ``None``.
        check: also run the file in onnxruntime on 8 random inputs and raise if the outputs differ
            (max abs diff > 1e-4 * max(1, |y|)). Default ``False``.
        extra_outputs: names of hidden tensors appended (flattened) to the outputs. Several data inputs
            are read as their flat concatenation, several outputs written as one (``_onnx_graph``).

    Returns:
        ``nn.Sequential`` in eval mode, with ``nnmend_input_shape`` (e.g. ``(1, 1, 5)``) and
        ``nnmend_meta`` (format, source, input shape, opset, producer, and any ``nnmend_meta`` that
        :func:`save_onnx` stored in the file).

    Raises:
        ModelError naming the file for unreadable files; an opset outside :data:`OPSET_RANGE`; an
        initializer or Constant whose data does not match its declared shape, exceeds the memory cap or
        holds NaN/Inf (naming the tensor); an input too large to probe under the cap; and naming the
        operator type and node for an unsupported operator or a graph that is neither a chain nor a sum
        of chains.
    """
    path = Path(path)
    model = _read_model(path)
    g = model.graph
    consts: dict[str, np.ndarray] = _tensor_arrays(path, g)
    data_inputs = [i for i in g.input if i.name not in consts]
    if not data_inputs:
        raise ModelError(f"{path}: expected one data input, found 0 (none)")
    if len(data_inputs) > 1 and input_shape is None:    # several inputs: the network reads their concatenation
        from ._onnx_graph import several_inputs

        layout, total = several_inputs(path, data_inputs)
        net = build_network(model, path, layout, (total,), consts, False, tuple(extra_outputs)).eval()
        net.nnmend_meta = {"format": "onnx", "source": path.name, "input_shape": [total],
                           "onnx_inputs": [[n, list(s)] for n, s, _ in layout], "onnx_output": g.output[0].name}
        net.nnmend_input_shape = (total,)
        return net
    if len(data_inputs) != 1:
        raise ModelError(f"{path}: expected one data input, found {len(data_inputs)} "
                         f"({', '.join(i.name for i in data_inputs) or 'none'})")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in data_inputs[0].type.tensor_type.shape.dim]
    per, has_batch = batch_layout(dims, tuple(input_shape) if input_shape is not None else None)
    if any(d is None for d in per):
        per = None  # symbolic per-sample axes: _sample_shape names them
    sample_shape = _sample_shape(path, data_inputs[0], per if input_shape is None else input_shape, len(g.node))

    net = build_network(model, path, data_inputs[0].name, sample_shape, consts, has_batch, tuple(extra_outputs)).eval()
    meta = {}
    stored = {p.key: p.value for p in model.metadata_props}
    if META_KEY in stored:
        try:
            meta.update(json.loads(stored[META_KEY]))
        except json.JSONDecodeError:
            pass  # foreign or damaged metadata: the network itself is still valid
    if getattr(net, "nnmend_onnx_names", None):
        meta["onnx_names"] = net.nnmend_onnx_names
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
    source = read_bytes_capped(path) if str(path).endswith(".gz") else str(path)   # onnxruntime reads no .gz
    sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
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


def _dense_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """``(in_features,)`` for an ``nn.Sequential`` whose first computing layer is a ``Linear`` reached through
    element-wise layers only (a dense network fixes its input size; a convolution does not)."""
    if not isinstance(model, nn.Sequential):
        return None
    for m in model:
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, nn.Sequential):
            return _dense_input_shape(m)
        if not isinstance(m, (nn.Identity, nn.Dropout, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU)):
            return None
    return None


def save_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int] | None = None,
              check: bool = True, opset: int = 17) -> Path:
    """Export ``model`` to ONNX atomically; with ``check`` the file must reproduce the network in onnxruntime.

    Args:
        model: any exportable module (``nnmend.layers.ElementwiseAffine`` and ``SumOfNetworks`` included).
        path: target ``.onnx`` file; it is replaced only after a successful export and check.
        input_shape: per-sample input shape, e.g. ``(1, 28, 28)``. Default: ``model.nnmend_input_shape``,
            else ``model.nnmend_meta["input_shape"]``.
        check: compare onnxruntime with torch on 16 random inputs (tolerance 1e-4 · max(1, |y|)). Default True.
        opset: ONNX opset. Default 17. The batch dimension is dynamic (named ``batch``).
    """
    path = Path(path)
    shape = input_shape if input_shape is not None else getattr(model, "nnmend_input_shape", None)
    if shape is None:  # a reloaded checkpoint keeps the shape in its metadata
        shape = (getattr(model, "nnmend_meta", None) or {}).get("input_shape")
    if shape is None:
        shape = _dense_input_shape(model)
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
