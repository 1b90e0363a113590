"""Turn an ``nn.Module`` into the graph of relaxations the bound algorithms walk.

A :class:`BoundGraph` is a list of :class:`BoundOp` nodes in topological order; each node reads the
outputs of the nodes listed in its ``inputs`` (``-1`` is the network input) and the last node is the
network's output. Nodes with several consumers and branches that merge (residual blocks,
:class:`nnmend.layers.SumOfNetworks`, concatenations) are ordinary nodes of the graph.

``nn.Sequential``, ``SumOfNetworks`` and :class:`nnmend.graph.GraphNetwork` are read directly (node paths
are the modules' qualified names, e.g. ``fc1`` or ``branches.0.fc2``); any other module is first traced
by :func:`nnmend.graph.from_module` (``torch.fx``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ModelError
from ..layers import Add, SumOfNetworks
from .operators import OPERATORS, BoundOp


@dataclass(eq=False)
class BoundGraph:
    """Relaxation nodes in topological order; the output is ``nodes[-1]``."""

    nodes: list[BoundOp] = field(default_factory=list)

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> BoundOp:
        return self.nodes[i]

    def add(self, op: BoundOp, inputs: list[int]) -> int:
        op.inputs = list(inputs)
        self.nodes.append(op)
        return len(self.nodes) - 1

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out.setdefault(j, []).append(i)
        return out


Node = BoundOp


def _op_for(module: nn.Module, path: str) -> BoundOp:
    op = OPERATORS.get(type(module))
    if op is None:
        supported = ", ".join(sorted({t.__name__ for t in OPERATORS} | {"Sequential", "SumOfNetworks", "GraphNetwork"}))
        raise ModelError(f"bounds: module {path or '<root>'} of type {type(module).__name__} is not supported "
                         f"(supported: {supported})")
    return op(module, path)


class _NeedsTrace(Exception):
    """A module that is neither a known operator nor a container: the whole network is traced instead."""


def _emit(g: BoundGraph, net: nn.Module, inp: int, path: str) -> int:
    """Append ``net``'s relaxation reading node ``inp``; returns the index of its output node."""
    from ..graph import GraphNetwork

    join = (lambda name: f"{path}.{name}" if path else name)
    if isinstance(net, nn.Sequential):
        for name, child in net.named_children():
            inp = _emit(g, child, inp, join(name))
        return inp
    if isinstance(net, SumOfNetworks):
        outs = [_emit(g, b, inp, join(f"branches.{i}")) for i, b in enumerate(net.branches)]
        return outs[0] if len(outs) == 1 else g.add(_op_for(Add(), path or "sum"), outs)
    if isinstance(net, GraphNetwork):
        where = {net.INPUT: inp}
        for node in net.nodes:
            module = net.ops[node.name]
            ins = [where[i] for i in node.inputs]
            if isinstance(module, (nn.Sequential, SumOfNetworks, GraphNetwork)):
                if len(ins) != 1:
                    raise ModelError(f"bounds: node {join(node.name)} reads {len(ins)} inputs but is a container")
                where[node.name] = _emit(g, module, ins[0], join(f"ops.{node.name}"))
            elif type(module) in OPERATORS:
                where[node.name] = g.add(_op_for(module, join(f"ops.{node.name}")), ins)
            else:
                raise ModelError(f"bounds: node {join(node.name)} ({type(module).__name__}) is not supported")
        return where[net.output]
    if type(net) in OPERATORS:
        return g.add(_op_for(net, path), [inp])
    if type(net).__module__.startswith("torch."):
        _op_for(net, path)                 # a torch layer without a relaxation: refused, naming it
    raise _NeedsTrace(path)


def compile_network(net: nn.Module, path: str = "", input_shape: tuple[int, ...] | None = None) -> BoundGraph:
    """The relaxation graph of ``net``; raises :class:`ModelError` naming any node that cannot be bounded.

    ``input_shape`` (one sample's) is needed only for a network that must be traced (see the module doc).
    """
    from ..graph import from_module

    g = BoundGraph()
    try:
        out = _emit(g, net, -1, path)
    except _NeedsTrace:
        g = BoundGraph()
        out = _emit(g, from_module(net, input_shape), -1, path)
    if out == -1 or out != len(g.nodes) - 1:
        # the output is the input itself, or not the last node: make it last
        g.add(_op_for(nn.Identity(), path or "output"), [out])
    return g


def relu_ops(graph: BoundGraph) -> list[BoundOp]:
    """Every node with a lower slope that alpha-CROWN optimises, in topological order."""
    return [n for n in graph if n.optimizable]


def forward(graph: BoundGraph, x: torch.Tensor) -> torch.Tensor:
    """Concrete forward pass through the graph (equals the network's own forward)."""
    vals: dict[int, torch.Tensor] = {-1: x}
    for i, n in enumerate(graph):
        vals[i] = n.forward(*(vals[j] for j in n.inputs))
    return vals[len(graph) - 1]
