"""Small modules that nnmend's formats and methods share; all save in checkpoints and are boundable.

* :class:`ElementwiseAffine` — ``x * scale + shift`` with fixed tensors (input normalisation, ONNX
  ``Sub``/``Add``/``Mul``/``Div`` by constants).
* :class:`SumOfNetworks` — ``sum_i net_i(x)``: a frozen base network plus additive patches, bounded
  symbolically (linear forms combined before concretisation), not by adding intervals.
"""
from __future__ import annotations

import torch
from torch import nn

from .io.checkpoint import serializable


@serializable
class ElementwiseAffine(nn.Module):
    """``y = x * scale + shift``; ``scale`` and ``shift`` broadcast against one sample's shape."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def spec_args(self) -> dict:
        return {"scale_shape": list(self.scale.shape), "shift_shape": list(self.shift.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "ElementwiseAffine":
        return cls(torch.zeros(args["scale_shape"]), torch.zeros(args["shift_shape"]))


@serializable
class SumOfNetworks(nn.Module):
    """``y = sum_i branches[i](x)``: every branch sees the same input, outputs are added."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out

    def spec_args(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "SumOfNetworks":
        return cls(*children["branches"])


# -- graph operators ------------------------------------------------------------------------------------
# Small modules for the operators of a general network graph (ONNX files, traced ``nn.Module``s): every
# one works on a batch ``(B, *shape)`` and takes its axes *per sample* (axis 0 is one sample's first
# axis), so the batch dimension never moves.


def _sample_axis(axis: int, rank: int) -> int:
    """A per-sample axis (negative allowed) as a batched tensor's axis."""
    return (axis % rank) + 1


@serializable
class Add(nn.Module):
    """``x_1 + x_2 + …`` of tensors with broadcastable shapes (a residual connection)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def spec_args(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Add":
        return cls()


@serializable
class Sub(nn.Module):
    """``x_1 - x_2``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b

    def spec_args(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Sub":
        return cls()


@serializable
class Concat(nn.Module):
    """Concatenation along the per-sample axis ``axis``."""

    def __init__(self, axis: int):
        super().__init__()
        self.axis = int(axis)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, _sample_axis(self.axis, xs[0].dim() - 1))

    def spec_args(self) -> dict:
        return {"axis": self.axis}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Concat":
        return cls(args["axis"])


@serializable
class Reshape(nn.Module):
    """Reshape each sample to ``shape`` (``-1`` allowed once)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def spec_args(self) -> dict:
        return {"shape": list(self.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Reshape":
        return cls(tuple(args["shape"]))


@serializable
class Transpose(nn.Module):
    """Permute each sample's axes by ``perm`` (a permutation of ``range(rank)``)."""

    def __init__(self, perm: tuple[int, ...]):
        super().__init__()
        self.perm = tuple(int(p) for p in perm)
        if sorted(self.perm) != list(range(len(self.perm))):
            raise ValueError(f"Transpose: {self.perm} is not a permutation")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *(p + 1 for p in self.perm))

    def spec_args(self) -> dict:
        return {"perm": list(self.perm)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Transpose":
        return cls(tuple(args["perm"]))


PAD_MODES = ("constant", "reflect", "replicate", "circular")


@serializable
class Pad(nn.Module):
    """``F.pad`` of each sample: ``pads`` as torch orders them (last axis first: left, right, …)."""

    def __init__(self, pads: tuple[int, ...], mode: str = "constant", value: float = 0.0):
        super().__init__()
        if mode not in PAD_MODES:
            raise ValueError(f"Pad: mode {mode!r} is not one of {PAD_MODES}")
        self.pads, self.mode, self.value = tuple(int(p) for p in pads), mode, float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "constant":
            return torch.nn.functional.pad(x, self.pads, "constant", self.value)
        return torch.nn.functional.pad(x, self.pads, self.mode)

    def spec_args(self) -> dict:
        return {"pads": list(self.pads), "mode": self.mode, "value": self.value}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Pad":
        return cls(tuple(args["pads"]), args["mode"], args["value"])


@serializable
class Slice(nn.Module):
    """``x[..., start:end:step, ...]`` along the per-sample axis ``axis`` (step > 0)."""

    def __init__(self, axis: int, start: int, end: int, step: int = 1):
        super().__init__()
        if step <= 0:
            raise ValueError("Slice: only positive steps are supported")
        self.axis, self.start, self.end, self.step = int(axis), int(start), int(end), int(step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ax = _sample_axis(self.axis, x.dim() - 1)
        idx = [slice(None)] * x.dim()
        idx[ax] = slice(self.start, self.end, self.step)
        return x[tuple(idx)]

    def spec_args(self) -> dict:
        return {"axis": self.axis, "start": self.start, "end": self.end, "step": self.step}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Slice":
        return cls(args["axis"], args["start"], args["end"], args["step"])


@serializable
class Gather(nn.Module):
    """``index_select`` of constant ``indices`` along the per-sample axis ``axis`` (scalar index drops the axis)."""

    def __init__(self, axis: int, indices: torch.Tensor, scalar: bool = False):
        super().__init__()
        self.axis, self.scalar = int(axis), bool(scalar)
        self.register_buffer("indices", torch.as_tensor(indices, dtype=torch.long).reshape(-1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ax = _sample_axis(self.axis, x.dim() - 1)
        out = x.index_select(ax, self.indices)
        return out.squeeze(ax) if self.scalar else out

    def spec_args(self) -> dict:
        return {"axis": self.axis, "n": int(self.indices.numel()), "scalar": self.scalar}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Gather":
        return cls(args["axis"], torch.zeros(args["n"], dtype=torch.long), args["scalar"])


@serializable
class ConstMatMul(nn.Module):
    """``W @ x`` (constant on the left, ``right=False``) or ``x @ W`` (``right=True``) per sample, with
    ``W`` a constant matrix; the general form of ONNX ``MatMul`` with one constant operand."""

    def __init__(self, weight: torch.Tensor, right: bool = True):
        super().__init__()
        self.right = bool(right)
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight if self.right else self.weight @ x

    def spec_args(self) -> dict:
        return {"shape": list(self.weight.shape), "right": self.right}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "ConstMatMul":
        return cls(torch.zeros(args["shape"]), args["right"])


# -- input normalisation --------------------------------------------------------------------------------


def normalization(mean, std) -> ElementwiseAffine:
    """``(x - mean) / std`` per channel, as an :class:`ElementwiseAffine` (bounded like any other layer).

    Prepend it to a network trained on normalised data so that the network takes pixels in [0, 1] and
    bounds, attacks and repair sets work in pixel space. ``mean`` and ``std`` have one value per channel
    (shape ``(C,)``, broadcast over ``(C, H, W)``) or one value for all.

    Example::

        net = nn.Sequential(normalization(CIFAR10_MEAN, CIFAR10_STD), body)   # body trained on normalised x
    """
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
    if mean.shape != std.shape or mean.numel() == 0:
        raise ValueError(f"normalization: mean {tuple(mean.shape)} and std {tuple(std.shape)} must have one value per channel")
    if not (torch.isfinite(std).all() and (std > 0).all() and torch.isfinite(mean).all()):
        raise ValueError("normalization: std must be positive and mean and std finite")
    shape = (-1, 1, 1) if mean.numel() > 1 else ()
    return ElementwiseAffine((1.0 / std).reshape(shape), (-mean / std).reshape(shape))
