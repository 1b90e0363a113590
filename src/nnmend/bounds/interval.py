"""Interval bound propagation (IBP; Gowal et al., 2018; Mirman et al., 2018).

Each layer maps a box to the smallest box containing its image *of the box* (affine layers through the
centre/radius form ``W c + b ± |W| r``). Cheap and loose; it also records every layer's shape and every
ReLU's pre-activation box, which the back-substitution algorithms reuse.
"""
from __future__ import annotations

import torch

from .graph import Node, SumNode

Bounds = tuple[torch.Tensor, torch.Tensor]


def interval_pass(nodes: list[Node], lo: torch.Tensor, hi: torch.Tensor,
                  pre: dict | None = None, record: dict | None = None) -> Bounds:
    """Propagate the box ``[lo, hi]`` (B, *in_shape) through ``nodes``.

    Sets each node's ``in_shape``/``out_shape``. If ``record`` is given it receives every ReLU's
    pre-activation box (keyed by the op). If ``pre`` holds tighter pre-activation boxes (from CROWN)
    for a ReLU, they are intersected with the interval ones before the ReLU is applied.
    """
    for n in nodes:
        n.in_shape = tuple(lo.shape[1:])
        if isinstance(n, SumNode):
            parts = [interval_pass(b, lo, hi, pre, record) for b in n.branches]
            lo = sum(p[0] for p in parts[1:]) + parts[0][0] if len(parts) > 1 else parts[0][0]
            hi = sum(p[1] for p in parts[1:]) + parts[0][1] if len(parts) > 1 else parts[0][1]
            continue
        if n.is_relu:
            if pre is not None and n in pre:
                lo, hi = torch.max(lo, pre[n][0]), torch.min(hi, pre[n][1])
            if record is not None:
                record[n] = (lo, hi)
        lo, hi = n.interval(lo, hi)
        n.out_shape = tuple(lo.shape[1:])
    return lo, hi
