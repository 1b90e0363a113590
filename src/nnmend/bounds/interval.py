"""Interval bound propagation (IBP; Gowal et al., 2018; Mirman et al., 2018).

Each node maps its input boxes to the smallest box containing its image *of the boxes* (affine layers
through the centre/radius form ``W c + b ± |W| r``). Cheap and loose; it also records every node's shape
and every non-linear node's input box, which the back-substitution algorithms reuse.
"""
from __future__ import annotations

import torch

from .graph import BoundGraph

Bounds = tuple[torch.Tensor, torch.Tensor]


def interval_pass(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor,
                  pre: dict | None = None, record: dict | None = None, upto: int | None = None,
                  all_bounds: dict | None = None) -> Bounds:
    """Propagate the box ``[lo, hi]`` (B, *in_shape) through the graph (up to node ``upto``, default all).

    Sets each node's ``in_shapes``/``out_shape``. If ``record`` is given it receives every non-linear
    node's input box (keyed by the node). If ``pre`` holds tighter input boxes for a non-linear node
    (from CROWN) they are intersected with the interval ones before the node is applied. ``all_bounds``,
    if given, receives every node's output box by index.
    """
    vals: dict[int, Bounds] = {-1: (lo, hi)} if all_bounds is None else all_bounds
    vals[-1] = (lo, hi)
    last = len(graph) - 1 if upto is None else upto
    for i, n in enumerate(graph.nodes[:last + 1]):
        ins = [vals[j] for j in n.inputs]
        n.in_shapes = [tuple(b[0].shape[1:]) for b in ins]
        if n.nonlinear:
            l, u = ins[0]
            if pre is not None and n in pre:
                l, u = torch.max(l, pre[n][0]), torch.min(u, pre[n][1])
            if record is not None:
                record[n] = (l, u)
            ins = [(l, u)]
        vals[i] = n.interval(*ins)
        n.out_shape = tuple(vals[i][0].shape[1:])
    return vals[last]
