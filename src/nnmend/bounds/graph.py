"""Turn an ``nn.Module`` into the tree of relaxations the bound algorithms walk.

A graph is a list of nodes; a node is a :class:`BoundOp` (one layer) or a :class:`SumNode` whose
branches (lists of nodes) all read the same input and whose outputs are added
(:class:`nnmend.layers.SumOfNetworks`). Nested ``nn.Sequential`` containers are flattened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch
from torch import nn

from ..errors import ModelError
from ..layers import SumOfNetworks
from .operators import OPERATORS, BoundOp


@dataclass(eq=False)
class SumNode:
    """``sum_i branch_i(x)``; bounded by back-substituting through every branch and adding the forms."""

    branches: list[list["Node"]]
    path: str
    in_shape: tuple[int, ...] = field(default=())


Node = Union[BoundOp, SumNode]


def compile_network(net: nn.Module, path: str = "") -> list[Node]:
    """The node list for ``net``; raises :class:`ModelError` naming any module that cannot be bounded."""
    if isinstance(net, nn.Sequential):
        nodes: list[Node] = []
        for name, child in net.named_children():
            nodes += compile_network(child, f"{path}.{name}" if path else name)
        return nodes
    if isinstance(net, SumOfNetworks):
        return [SumNode([compile_network(b, f"{path}.branches.{i}" if path else f"branches.{i}")
                         for i, b in enumerate(net.branches)], path)]
    op = OPERATORS.get(type(net))
    if op is None:
        supported = ", ".join(sorted({t.__name__ for t in OPERATORS} | {"Sequential", "SumOfNetworks"}))
        raise ModelError(f"bounds: module {path or '<root>'} of type {type(net).__name__} is not supported "
                         f"(supported: {supported})")
    if isinstance(net, nn.Flatten) and (net.start_dim != 1 or net.end_dim != -1):
        raise ModelError(f"bounds: {path} Flatten(start_dim={net.start_dim}, end_dim={net.end_dim}) is not supported; "
                         "only Flatten(1, -1)")
    return [op(net, path)]


def relu_ops(nodes: list[Node]) -> list[BoundOp]:
    """Every ReLU in the tree, in forward order (branches in order)."""
    out: list[BoundOp] = []
    for n in nodes:
        if isinstance(n, SumNode):
            for b in n.branches:
                out += relu_ops(b)
        elif n.is_relu:
            out.append(n)
    return out


def forward(nodes: list[Node], x: torch.Tensor) -> torch.Tensor:
    """Concrete forward pass through the tree (equals the network's own forward)."""
    for n in nodes:
        if isinstance(n, SumNode):
            outs = [forward(b, x) for b in n.branches]
            x = outs[0]
            for o in outs[1:]:
                x = x + o
        else:
            x = n.forward(x)
    return x
