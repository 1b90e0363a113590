"""Split a network at the repaired layer and record what the constraints need.

NNrepair makes only one layer's weights symbolic, so everything before it is concrete and each
pre-activation is affine in the weight deltas: ``z_N(X) + Σ_i δ_{N,i} a_i(X)`` with ``a`` the layer's
recorded input. Recording ``a``, ``z`` and the logits once replaces SPF's concolic execution.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from ...errors import RepairError
from ...nets import WEIGHT_LAYERS, splittable

# Modules that may sit between the repaired ReLU and the final Linear without changing values at eval.
_PASS_THROUGH = (nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class Split:
    """``network == nn.Sequential(*trunk, *head)``; ``head[0]`` is the repaired ``nn.Linear``."""

    trunk: nn.Sequential
    head: nn.Sequential
    layer: str
    last: bool

    @property
    def linear(self) -> nn.Linear:
        return self.head[0]

    def readout(self) -> nn.Linear | None:
        """The final Linear right after the repaired layer's ReLU (needed for exact decision rows)."""
        rest = [m for m in list(self.head)[2:] if not isinstance(m, _PASS_THROUGH)]
        return rest[0] if len(rest) == 1 and isinstance(rest[0], nn.Linear) else None


def split_network(network: nn.Module, layer: str) -> Split:
    """Split ``network`` before the Linear named ``layer`` ("last"/"intermediate" allowed): a top-level
    layer of an ``nn.Sequential``, or a node of any other network's graph that every path passes through
    (:func:`nnmend.nets.sequential_view`; ``"block.fc"`` and the node name ``"block_fc"`` both work)."""
    network = splittable(network, None if layer in ("last", "intermediate") else layer)
    children = list(network.named_children())
    if layer not in ("last", "intermediate") and layer not in dict(children) and layer.replace(".", "_") in dict(children):
        layer = layer.replace(".", "_")
    weights = [n for n, m in children if isinstance(m, WEIGHT_LAYERS)]
    if not weights:
        raise RepairError("the network has no Linear or Conv2d layer at its top level")
    name = {"last": weights[-1], "intermediate": weights[-2] if len(weights) > 1 else None}.get(layer, layer)
    if name is None:
        raise RepairError("layer='intermediate' needs at least two weight layers")
    names = [n for n, _ in children]
    if name not in names:
        nested = [n for n, m in network.named_modules() if isinstance(m, WEIGHT_LAYERS)]
        raise RepairError(f"layer {name!r} is not a top-level layer of the network; repairable layers: "
                          f"{', '.join(n for n, m in children if isinstance(m, nn.Linear)) or '(none)'}"
                          + (f" (nested layers {', '.join(nested)} cannot be split at)" if nested != weights else ""))
    i = names.index(name)
    module = children[i][1]
    if not isinstance(module, nn.Linear):
        raise RepairError(f"layer {name!r} is a {type(module).__name__}; NNrepair repairs dense (nn.Linear) layers")
    last = name == weights[-1]
    if not last:
        nxt = [m for _, m in children[i + 1:] if not isinstance(m, _PASS_THROUGH)][:1]
        if not nxt or not isinstance(nxt[0], nn.ReLU):
            found = type(nxt[0]).__name__ if nxt else "nothing"
            raise RepairError(f"layer {name!r} is followed by {found}, not a ReLU: activation patterns "
                              "(on/off neurons) need a ReLU layer; choose the last layer or a Linear+ReLU layer")
    trunk = nn.Sequential(*[m for _, m in children[:i]])
    head = nn.Sequential(*[m for _, m in children[i:]])
    return Split(trunk, head, name, last)


@dataclass(frozen=True)
class Record:
    """Per input: the layer's input ``a`` (N, in), its pre-activation ``z`` (N, out), logits (N, C)."""

    a: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor

    @property
    def pred(self) -> torch.Tensor:
        return self.logits.argmax(1)

    @cached_property
    def signature(self) -> torch.Tensor:
        """On/off activation signature of the layer's neurons (z > 0), shape (N, out)."""
        return self.z > 0

    def take(self, idx: torch.Tensor) -> "Record":
        return Record(self.a[idx], self.z[idx], self.logits[idx])


@torch.no_grad()
def record(split: Split, x: torch.Tensor, batch_size: int = 4096) -> Record:
    """Run ``x`` through the split network once, keeping ``a``, ``z`` and the logits."""
    split.trunk.eval(), split.head.eval()
    parts = []
    for i in range(0, len(x), batch_size):
        a = split.trunk(x[i:i + batch_size]).flatten(1)
        z = split.linear(a)
        logits = split.head[1:](z) if len(split.head) > 1 else z
        parts.append((a, z, logits))
    if not parts:
        raise RepairError("no inputs to record")
    return Record(*(torch.cat(p) for p in zip(*parts)))
