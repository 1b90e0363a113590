"""Graph operators for ONNX arithmetic beyond affine maps (the VNN-LIB conformance operator set).

Like :mod:`nnmend.layers`' graph operators, each works on a batch ``(B, *shape)`` with *per-sample* axes,
saves in checkpoints and has a sound relaxation in :mod:`nnmend.bounds.operators`:

* linear: :class:`Reduce` (ReduceSum / ReduceMean), :class:`Expand` (broadcast), :class:`ConstConcat`
  (concatenation with constants), :class:`ConstantOutput` (an output that does not depend on the input);
* non-linear, element-wise: :class:`Power` (``x ** p`` or ``c ** x`` with constants), :class:`Step`
  (comparisons with a constant as 0/1, ``Cast`` to bool), :class:`Rounding` (``Cast`` to an integer type),
  :class:`Sign` (ONNX ``Sign``: -1 / 0 / 1, the activation of binarised networks);
* non-linear, bilinear: :class:`Product` (``x[:, 0] * x[:, 1]`` of a stacked pair: ``Mul`` of two data
  tensors; one input, so the bound algorithms' single-input relaxation interface serves it).
"""
from __future__ import annotations

import torch
from torch import nn

from .io.checkpoint import serializable


def _batch_axes(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a + 1 for a in axes)


@serializable
class Reduce(nn.Module):
    """Sum (or mean) over the per-sample ``axes`` (non-negative), keeping them as size 1 if ``keepdims``."""

    def __init__(self, axes: tuple[int, ...], keepdims: bool = True, mean: bool = False):
        super().__init__()
        self.axes, self.keepdims, self.mean = tuple(int(a) for a in axes), bool(keepdims), bool(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = _batch_axes(self.axes)
        return x.mean(dims, keepdim=self.keepdims) if self.mean else x.sum(dims, keepdim=self.keepdims)

    def spec_args(self) -> dict:
        return {"axes": list(self.axes), "keepdims": self.keepdims, "mean": self.mean}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Reduce":
        return cls(tuple(args["axes"]), args["keepdims"], args["mean"])


@serializable
class Expand(nn.Module):
    """Broadcast each sample to ``shape`` (same rank; axes of size 1 are repeated)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(x.shape[0], *self.shape)

    def spec_args(self) -> dict:
        return {"shape": list(self.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Expand":
        return cls(tuple(args["shape"]))


@serializable
class ConstConcat(nn.Module):
    """``cat([before, x, after], axis)`` per sample, with ``before`` / ``after`` constant (possibly empty)."""

    def __init__(self, axis: int, before: torch.Tensor, after: torch.Tensor):
        super().__init__()
        self.axis = int(axis)
        self.register_buffer("before", torch.as_tensor(before, dtype=torch.float32).clone())
        self.register_buffer("after", torch.as_tensor(after, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [c.to(x.dtype).unsqueeze(0).expand(x.shape[0], *c.shape) for c in (self.before, self.after)]
        return torch.cat([parts[0], x, parts[1]], self.axis + 1)

    def spec_args(self) -> dict:
        return {"axis": self.axis, "before": list(self.before.shape), "after": list(self.after.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "ConstConcat":
        return cls(args["axis"], torch.zeros(args["before"]), torch.zeros(args["after"]))


@serializable
class ConstantOutput(nn.Module):
    """The constant ``value`` for every sample, whatever the input (an ONNX output computed from shapes)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", torch.as_tensor(value, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = 0 * x.flatten(1)[:, :1].reshape(x.shape[0], *([1] * self.value.dim()))   # zero gradient, not none
        return self.value.to(x.dtype).unsqueeze(0) + zero

    def spec_args(self) -> dict:
        return {"shape": list(self.value.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "ConstantOutput":
        return cls(torch.zeros(args["shape"]))


@serializable
class Power(nn.Module):
    """``x ** exponent`` (``base=False``) or ``exponent ** x`` (``base=True``, the constant is the base);
    the constant broadcasts against one sample's shape."""

    def __init__(self, exponent: torch.Tensor, base: bool = False):
        super().__init__()
        self.base = bool(base)
        self.register_buffer("exponent", torch.as_tensor(exponent, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.exponent.to(x.dtype)
        return torch.pow(c, x) if self.base else torch.pow(x, c)

    def spec_args(self) -> dict:
        return {"shape": list(self.exponent.shape), "base": self.base}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Power":
        return cls(torch.zeros(args["shape"]), args["base"])


STEP_KINDS = ("gt", "ge", "lt", "le", "eq", "ne")


@serializable
class Step(nn.Module):
    """``1.0`` where ``x <kind> threshold`` else ``0.0`` (kind one of :data:`STEP_KINDS`); ``Cast`` to bool
    is ``ne`` 0."""

    def __init__(self, kind: str, threshold: torch.Tensor):
        super().__init__()
        if kind not in STEP_KINDS:
            raise ValueError(f"Step: kind {kind!r} is not one of {STEP_KINDS}")
        self.kind = kind
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.threshold.to(x.dtype)
        out = {"gt": torch.gt, "ge": torch.ge, "lt": torch.lt, "le": torch.le, "eq": torch.eq, "ne": torch.ne}[self.kind](x, t)
        return out.to(x.dtype) + 0 * x             # zero gradient rather than none (attacks differentiate)

    def spec_args(self) -> dict:
        return {"kind": self.kind, "shape": list(self.threshold.shape)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Step":
        return cls(args["kind"], torch.zeros(args["shape"]))


ROUNDING_MODES = ("trunc", "floor", "ceil", "round")


@serializable
class Rounding(nn.Module):
    """Rounding to integers (``trunc``: ONNX ``Cast`` from float to an integer type; ``round``: half to even)."""

    def __init__(self, mode: str = "trunc"):
        super().__init__()
        if mode not in ROUNDING_MODES:
            raise ValueError(f"Rounding: mode {mode!r} is not one of {ROUNDING_MODES}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "trunc":      # as ONNX Cast to an integer (torch.trunc has no ONNX export); zero gradient
            return x.to(torch.int64).to(x.dtype) + 0 * x
        return getattr(torch, self.mode)(x)

    def spec_args(self) -> dict:
        return {"mode": self.mode}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Rounding":
        return cls(args["mode"])


@serializable
class Sign(nn.Module):
    """ONNX ``Sign``: ``-1``, ``0`` or ``1`` by the sign of ``x``. The values are exact; the gradient is the
    straight-through estimator's (identity), as binarised networks are trained: a step's true gradient is zero
    everywhere, which would leave every gradient attack on them standing still (its points are still judged by
    the exact values)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sign(x)
        if not x.requires_grad or torch.onnx.is_in_onnx_export():
            return s
        return s + (x - x.detach())                # + exactly 0 for finite x; gradient 1

    def spec_args(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Sign":
        return cls()


@serializable
class Product(nn.Module):
    """``x[:, 0] * x[:, 1]`` for a stacked pair ``x`` of per-sample shape ``(2, *s)``; output ``(B, *s)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] * x[:, 1]

    def spec_args(self) -> dict:
        return {}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "Product":
        return cls()
