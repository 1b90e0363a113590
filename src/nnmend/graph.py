"""The one representation of any network: a DAG of operator modules (:class:`GraphNetwork`).

Each node is an ``nn.Module`` (torch's layers or the small operators of :mod:`nnmend.layers`) applied to
the outputs of earlier nodes; ``"input"`` names the network input. A ``GraphNetwork`` is an ordinary
``nn.Module``: it runs, trains, saves weights-only (:mod:`nnmend.io.checkpoint`), exports to ONNX and is
bounded node by node (:mod:`nnmend.bounds`). ONNX files with branches become one, and
:func:`from_module` turns any ``nn.Module`` that ``torch.fx`` can trace (a user's own class with a
``forward()``: residual blocks, ``torch.cat``, ``view``, ``permute``, functional calls) into one.

Example::

    g = from_module(MyResNet().eval(), input_shape=(3, 32, 32))
    g.names()                       # node names: the module paths of the traced network ("layer1_0_conv1", …)
    save_network(g, "net.pt")        # weights only; loads back without the class
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelError
from .io.checkpoint import serializable
from .layers import (Add, Concat, ConstMatMul, ElementwiseAffine, Gather, Pad, Reshape, Slice, Sub,
                     Transpose)


@dataclass(frozen=True)
class GraphNode:
    """One node: the module ``ops[name]`` applied to the outputs of ``inputs`` (node names or ``"input"``)."""

    name: str
    inputs: tuple[str, ...]


@serializable
class GraphNetwork(nn.Module):
    """A network as a DAG of modules; ``output`` names the node whose value is returned."""

    INPUT = "input"

    def __init__(self, nodes: Sequence[tuple[str, nn.Module, Sequence[str]]], output: str,
                 input_shape: Sequence[int] | None = None):
        super().__init__()
        self.ops = nn.ModuleDict()
        self.nodes: list[GraphNode] = []
        seen = {self.INPUT}
        for name, module, inputs in nodes:
            if name in seen or "." in name or not name:
                raise ModelError(f"graph: node name {name!r} is empty, repeated, contains '.' or is 'input'")
            missing = [i for i in inputs if i not in seen]
            if missing:
                raise ModelError(f"graph: node {name!r} reads {missing[0]!r}, which no earlier node produces "
                                 "(the nodes must be in topological order; cycles are refused)")
            self.ops[name] = module
            self.nodes.append(GraphNode(name, tuple(inputs)))
            seen.add(name)
        if output not in seen:
            raise ModelError(f"graph: output {output!r} is not a node")
        self.output = output
        if input_shape is not None:
            self.nnmend_input_shape = tuple(int(d) for d in input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vals = {self.INPUT: x}
        for node in self.nodes:
            vals[node.name] = self.ops[node.name](*(vals[i] for i in node.inputs))
        return vals[self.output]

    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def prepend(self, name: str, module: nn.Module) -> "GraphNetwork":
        """A new graph (sharing this one's modules) that feeds ``module(x)`` where this one read its input — e.g.
        ``net.prepend("normalize", normalization(mean, std))`` for a network trained on normalised data."""
        nodes = [(name, module, [self.INPUT])]
        nodes += [(n.name, self.ops[n.name], [name if i == self.INPUT else i for i in n.inputs]) for n in self.nodes]
        out = GraphNetwork(nodes, self.output)
        if hasattr(self, "nnmend_input_shape"):
            out.nnmend_input_shape = self.nnmend_input_shape
        return out.train(self.training)

    def spec_args(self) -> dict:
        return {"nodes": [[n.name, list(n.inputs)] for n in self.nodes], "output": self.output}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "GraphNetwork":
        ops = children["ops"]
        return cls([(name, ops[name], inputs) for name, inputs in args["nodes"]], args["output"])


# -- tracing an nn.Module ---------------------------------------------------------------------------------

def _leaf_types() -> tuple[type, ...]:
    from .bounds.operators import OPERATORS

    return tuple(OPERATORS)


def _per_sample_axis(dim: int, rank: int, where: str) -> int:
    """A batched tensor's axis (rank includes the batch) as a per-sample axis."""
    d = dim + rank if dim < 0 else dim
    if d == 0:
        raise ModelError(f"graph: {where} acts on the batch axis")
    return d - 1


class _Converter:
    """Walks a traced ``torch.fx`` graph with the shapes of a probe batch and emits graph nodes."""

    def __init__(self, root: nn.Module, gm: Any, probe: torch.Tensor):
        self.root, self.gm, self.probe = root, gm, probe
        self.nodes: list[tuple[str, nn.Module, list[str]]] = []
        self.data: dict[str, str] = {}         # fx node name -> graph node name (data tensors)
        self.values: dict[str, Any] = {}        # fx node name -> probe value (everything)
        self.used: set[str] = set()

    def fail(self, node, msg: str) -> ModelError:
        return ModelError(f"graph: node {node.name!r} ({node.op} {getattr(node.target, '__name__', node.target)}): {msg}")

    def name(self, base: str) -> str:
        base = base.replace(".", "_") or "node"
        name, k = base, 1
        while name in self.used or name == GraphNetwork.INPUT:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def emit(self, node, module: nn.Module, inputs: list[str], base: str | None = None) -> None:
        name = self.name(base or node.name)
        self.nodes.append((name, module, inputs))
        self.data[node.name] = name

    def is_data(self, a: Any) -> bool:
        import torch.fx as fx

        return isinstance(a, fx.Node) and a.name in self.data

    def const(self, a: Any) -> Any:
        import torch.fx as fx

        if isinstance(a, fx.Node):
            return self.values[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.const(v) for v in a)
        return a

    def run(self) -> GraphNetwork:
        import torch.fx as fx

        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.values:
                    raise self.fail(node, "networks with more than one input are not supported")
                self.values[node.name] = self.probe
                self.data[node.name] = GraphNetwork.INPUT
                continue
            if node.op == "output":
                out = node.args[0]
                if not self.is_data(out):
                    raise self.fail(node, "the output must be one tensor computed from the input")
                shape = tuple(self.probe.shape[1:])
                return GraphNetwork(self.nodes, self.data[out.name], shape)
            args = fx.node.map_arg(node.args, lambda n: n)
            value = self._evaluate(node)
            self.values[node.name] = value
            data_args = [a for a in _flat(node.args) + _flat(node.kwargs) if self.is_data(a)]
            if not data_args or (not torch.is_tensor(value) and node.op != "call_function") \
                    or isinstance(value, (int, float, torch.Size)):
                continue                          # a constant (get_attr, size(), shape arithmetic)
            self._convert(node, args, value, data_args)
        raise ModelError("graph: the traced graph has no output")

    def _evaluate(self, node) -> Any:
        args = self.const(node.args)
        kwargs = {k: self.const(v) for k, v in node.kwargs.items()}
        with torch.no_grad():
            if node.op == "get_attr":
                obj = self.root
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                return obj
            if node.op == "call_module":
                return self.gm.get_submodule(node.target)(*args, **kwargs)
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise self.fail(node, "unknown fx node kind")

    def _shape_op(self, node, value: torch.Tensor, src) -> None:
        """Any reshape whose result keeps the batch: emitted as Reshape to the probe's per-sample shape."""
        x = self.values[src.name]
        if value.dim() == 0 or value.shape[0] != x.shape[0] or value.numel() != x.numel():
            raise self.fail(node, "reshapes across samples (the batch axis must stay first)")
        if tuple(value.shape) == tuple(x.shape):
            self.data[node.name] = self.data[src.name]
            return
        self.emit(node, Reshape(tuple(value.shape[1:])), [self.data[src.name]])

    def _convert(self, node, args, value, data_args) -> None:
        t = node.target
        if node.op == "call_module":
            module = self.gm.get_submodule(t)
            if len(data_args) != 1 or not self.is_data(node.args[0]):
                raise self.fail(node, "a module called on anything but one data tensor")
            self.emit(node, module, [self.data[node.args[0].name]], base=t)
            return
        fname = getattr(t, "__name__", str(t))
        ins = [self.data[a.name] for a in data_args]
        x = node.args[0] if node.args else None
        rank = self.values[data_args[0].name].dim()
        if node.op == "call_method":
            fname = t
        if fname in ("add", "iadd", "__add__", "sub", "isub", "__sub__", "rsub", "mul", "imul", "__mul__",
                     "truediv", "div", "__truediv__", "neg", "__neg__"):
            self._arith(node, fname, ins, data_args)
            return
        if fname in ("relu", "relu_"):
            self.emit(node, nn.ReLU(), ins)
        elif fname in ("sigmoid",):
            self.emit(node, nn.Sigmoid(), ins)
        elif fname in ("tanh",):
            self.emit(node, nn.Tanh(), ins)
        elif fname == "leaky_relu":
            slope = self.const(node.args[1]) if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
            self.emit(node, nn.LeakyReLU(float(slope)), ins)
        elif fname == "softmax":
            dim = self.const(node.args[1]) if len(node.args) > 1 else node.kwargs.get("dim")
            self.emit(node, nn.Softmax(dim=dim), ins)
        elif fname in ("cat", "concat", "concatenate"):
            dim = self.const(node.args[1]) if len(node.args) > 1 else node.kwargs.get("dim", 0)
            parts = node.args[0]
            if not all(self.is_data(p) for p in parts):
                raise self.fail(node, "concatenates a constant with data")
            self.emit(node, Concat(_per_sample_axis(dim, rank, node.name)), [self.data[p.name] for p in parts])
        elif fname in ("flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous_view", "unflatten"):
            self._shape_op(node, value, x)
        elif fname in ("permute", "transpose", "t"):
            src = self.values[x.name]
            perm = _permutation(src, value, fname, self.const(node.args[1:]))
            if perm[0] != 0:
                raise self.fail(node, "moves the batch axis")
            self.emit(node, Transpose(tuple(p - 1 for p in perm[1:])), ins)
        elif fname in ("contiguous", "clone", "detach", "dropout", "identity"):
            self.data[node.name] = ins[0]
        elif fname == "pad":
            pads = self.const(node.args[1]) if len(node.args) > 1 else node.kwargs["pad"]
            mode = self.const(node.args[2]) if len(node.args) > 2 else node.kwargs.get("mode", "constant")
            val = self.const(node.args[3]) if len(node.args) > 3 else node.kwargs.get("value", 0.0)
            self.emit(node, Pad(tuple(pads), mode, val or 0.0), ins)
        elif fname in ("max_pool2d", "avg_pool2d", "max_pool1d", "avg_pool1d", "adaptive_avg_pool2d"):
            self.emit(node, _pool_module(fname, self.const(node.args[1:]), self.const(dict(node.kwargs))), ins)
        elif fname == "getitem":
            self._getitem(node, value, x, ins)
        elif fname in ("linear", "matmul", "__matmul__", "mm", "conv2d", "conv1d"):
            self._weighted(node, fname, ins, data_args)
        else:
            raise self.fail(node, f"operation {fname!r} on data is not supported")

    def _arith(self, node, fname: str, ins: list[str], data_args) -> None:
        base = fname.strip("_").lstrip("i") if fname not in ("rsub",) else "rsub"
        if base in ("neg",):
            self.emit(node, ElementwiseAffine(torch.tensor(-1.0), torch.tensor(0.0)), ins)
            return
        a, b = (list(node.args) + [node.kwargs.get("other")])[:2]
        if len(data_args) == 2:
            if base == "add":
                self.emit(node, Add(), [self.data[a.name], self.data[b.name]])
            elif base == "sub":
                self.emit(node, Sub(), [self.data[a.name], self.data[b.name]])
            else:
                raise self.fail(node, "the product or quotient of two data tensors is not linear")
            return
        data_first = self.is_data(a)
        c = self.const(b if data_first else a)
        c = torch.as_tensor(c, dtype=torch.float32).detach()
        if c.dim() == self.values[data_args[0].name].dim():
            if c.shape[0] != 1:
                raise self.fail(node, f"a constant of shape {tuple(c.shape)} varies along the batch")
            c = c[0]
        one, zero = torch.ones(()), torch.zeros(())
        if base == "add":
            scale, shift = one, c
        elif base in ("sub", "rsub"):
            flip = (base == "sub") != data_first      # c - x
            scale, shift = (-one, c) if flip else (one, -c)
        elif base == "mul":
            scale, shift = c, zero
        else:
            if not data_first:
                raise self.fail(node, "dividing a constant by data is not linear")
            if (c == 0).any():
                raise self.fail(node, "division by a constant that contains zero")
            scale, shift = 1.0 / c, zero
        self.emit(node, ElementwiseAffine(scale, shift), [ins[0]])

    def _getitem(self, node, value, x, ins) -> None:
        idx = self.const(node.args[1])
        src = self.values[x.name]
        idx = idx if isinstance(idx, tuple) else (idx,)
        if not idx or not isinstance(idx[0], slice) or idx[0] != slice(None):
            raise self.fail(node, "indexing must keep the batch axis (x[:, ...])")
        cur = ins[0]
        modules = []
        for axis, s in enumerate(idx[1:]):
            if s is Ellipsis:
                raise self.fail(node, "Ellipsis indexing is not supported")
            size = src.shape[axis + 1]
            if isinstance(s, slice):
                start, stop, step = s.indices(size)
                if (start, stop, step) != (0, size, 1):
                    modules.append(Slice(axis, start, stop, step))
            elif isinstance(s, int):
                modules.append(Gather(axis, torch.tensor([s % size]), scalar=True))
            else:
                raise self.fail(node, f"index {s!r} is not supported")
        # integer indices drop axes: apply from the last axis so earlier axis numbers stay valid
        modules.sort(key=lambda m: -m.axis)
        if not modules:
            self.data[node.name] = cur
            return
        for k, m in enumerate(modules):
            base = node.name if k == len(modules) - 1 else f"{node.name}_{k}"
            name = self.name(base)
            self.nodes.append((name, m, [cur]))
            cur = name
        self.data[node.name] = cur

    def _weighted(self, node, fname: str, ins: list[str], data_args) -> None:
        if len(data_args) != 1:
            raise self.fail(node, "a product of two data tensors is not linear")
        args = list(node.args)
        w = self.const(args[1]) if len(args) > 1 else self.const(node.kwargs.get("weight"))
        w = torch.as_tensor(w).detach().float()
        if fname == "linear":
            b = self.const(args[2]) if len(args) > 2 else self.const(node.kwargs.get("bias"))
            layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(torch.as_tensor(b).float())
            self.emit(node, layer, ins)
        elif fname in ("conv2d", "conv1d"):
            raise self.fail(node, "functional convolutions are not supported; use nn.Conv1d/nn.Conv2d modules")
        else:
            right = self.is_data(args[0])
            self.emit(node, ConstMatMul(w, right=right), ins)


def _flat(a: Any) -> list:
    if isinstance(a, (list, tuple)):
        return [y for x in a for y in _flat(x)]
    if isinstance(a, dict):
        return [y for x in a.values() for y in _flat(x)]
    return [a]


def _permutation(src: torch.Tensor, out: torch.Tensor, fname: str, args: tuple) -> list[int]:
    rank = src.dim()
    if fname == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
        return [d % rank for d in dims]
    if fname == "t":
        return [1, 0]
    a, b = (d % rank for d in args[:2])
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return perm


def _pool_module(fname: str, args: tuple, kwargs: dict) -> nn.Module:
    names = {"max_pool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
             "max_pool1d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
             "avg_pool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
             "avg_pool1d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
             "adaptive_avg_pool2d": ("output_size",)}[fname]
    kw = dict(zip(names, args))
    kw.update({k: v for k, v in kwargs.items() if k in names})
    if kw.get("stride") in (None, [], ()):
        kw.pop("stride", None)
    cls = {"max_pool2d": nn.MaxPool2d, "max_pool1d": nn.MaxPool1d, "avg_pool2d": nn.AvgPool2d,
           "avg_pool1d": nn.AvgPool1d, "adaptive_avg_pool2d": nn.AdaptiveAvgPool2d}[fname]
    return cls(**kw)


def from_module(net: nn.Module, input_shape: Sequence[int] | None = None) -> GraphNetwork:
    """Trace ``net`` (any ``nn.Module`` ``torch.fx`` can trace) into a :class:`GraphNetwork` sharing its modules.

    Args:
        net: the network; its known layers (Linear, Conv, ReLU, pooling, …) stay modules (node names are
            their paths with ``_`` for ``.``), functional calls and tensor methods become operator nodes.
        input_shape: one sample's shape; default ``net.nnmend_input_shape`` or the first layer's input.
    Raises:
        ModelError naming the traced node for anything that cannot be represented (data-dependent
        control flow, products of two data tensors, indexing across samples, …).
    """
    import torch.fx as fx

    if isinstance(net, GraphNetwork):
        return net
    shape = tuple(input_shape) if input_shape is not None else _guess_shape(net)
    leaves = _leaf_types()

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return type(m) in leaves

    try:
        graph = _Tracer().trace(net)
    except Exception as exc:  # fx raises TraceError, TypeError, … for untraceable forwards
        raise ModelError(f"graph: cannot trace {type(net).__name__} with torch.fx "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    gm = fx.GraphModule(net, graph)
    p = next(iter(net.parameters()), None)
    probe = torch.zeros((2, *shape), dtype=p.dtype if p is not None else torch.float32)
    if math.prod(shape) > 1 << 26:
        raise ModelError(f"graph: input shape {shape} is too large to trace")
    g = _Converter(net, gm, probe).run()
    g.train(net.training)
    return g


def _guess_shape(net: nn.Module) -> tuple[int, ...]:
    shape = getattr(net, "nnmend_input_shape", None)
    if shape:
        return tuple(shape)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            break
    raise ModelError(f"graph: the input shape of {type(net).__name__} is unknown; pass input_shape=(…) "
                     "or set net.nnmend_input_shape")
