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
