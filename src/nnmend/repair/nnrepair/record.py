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

from ..._validation import check_alloc
from ...errors import RepairError
from ...layers import Reshape
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


def split_network(network: nn.Module, layer: str, example: torch.Tensor | None = None) -> Split:
    """Split ``network`` before the weight layer named ``layer`` ("last"/"intermediate" allowed): a top-level
    layer of an ``nn.Sequential``, or a node of any other network's graph that every path passes through
    (:func:`nnmend.nets.sequential_view`; ``"block.fc"`` and the node name ``"block_fc"`` both work).

    A Conv layer (with the batch norm that directly follows it, if any) is repaired as its exact dense
    equivalent, an ``nn.Linear`` over the flattened input followed by a reshape: the constraints are linear
    in one dense matrix's entries, so the repaired layer no longer shares its kernel across positions.
    That needs ``example`` (one input or more) to learn the layer's input shape.
    """
    network = splittable(network, None if layer in ("last", "intermediate") else layer,
                         input_shape=None if example is None else tuple(example.shape[1:]))
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
    if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise RepairError(f"layer {name!r} is a {type(module).__name__}; NNrepair repairs Linear and Conv layers")
    mods = [m for _, m in children]
    j = i + 1                                    # a conv's own batch norm goes into its dense equivalent
    if not isinstance(module, nn.Linear) and j < len(mods) and isinstance(mods[j], (nn.BatchNorm1d, nn.BatchNorm2d)):
        j += 1
    last = name == weights[-1]
    if not last:
        nxt = [m for m in mods[j:] if not isinstance(m, _PASS_THROUGH)][:1]
        if not nxt or not isinstance(nxt[0], nn.ReLU):
            found = type(nxt[0]).__name__ if nxt else "nothing"
            raise RepairError(f"layer {name!r} is followed by {found}, not a ReLU: activation patterns "
                              "(on/off neurons) need a ReLU layer; choose the last layer or a Linear+ReLU layer")
    trunk = nn.Sequential(*mods[:i])
    if isinstance(module, nn.Linear):
        return Split(trunk, nn.Sequential(*mods[i:]), name, last)
    if example is None:
        raise RepairError(f"layer {name!r} is a {type(module).__name__}: give an example input to learn its shape")
    dense, out_shape = _dense_equivalent(nn.Sequential(*mods[i:j]), trunk, example, name)
    return Split(trunk, nn.Sequential(dense, Reshape(out_shape), *mods[j:]), name, last)


@torch.no_grad()
def _dense_equivalent(block: nn.Module, trunk: nn.Module, example: torch.Tensor, name: str
                      ) -> tuple[nn.Linear, tuple[int, ...]]:
    """The affine ``block`` (a conv, maybe with its batch norm, in eval mode) as an exact ``nn.Linear`` over
    its flattened input, read off the images of the unit vectors; and the block's per-sample output shape."""
    block.eval()
    a = trunk.eval()(example[:1])
    in_shape, n_in = tuple(a.shape[1:]), a[0].numel()
    zero = block(torch.zeros_like(a)).reshape(-1)
    out_shape = tuple(block(a).shape[1:])
    check_alloc(f"NNrepair: layer {name!r} as a dense {zero.numel()}×{n_in} matrix", 4 * zero.numel() * n_in,
                error=RepairError)
    weight = torch.empty(zero.numel(), n_in, dtype=zero.dtype)
    eye = torch.eye(n_in, dtype=a.dtype)
    for k in range(0, n_in, 256):
        weight[:, k:k + 256] = (block(eye[k:k + 256].reshape(-1, *in_shape)).reshape(-1, zero.numel()) - zero).T
    dense = nn.Linear(n_in, zero.numel())
    dense.weight.copy_(weight)
    dense.bias.copy_(zero)
    return dense.eval(), out_shape


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
