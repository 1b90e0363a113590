"""Relaxations of convolutions (exact: they are affine).

``Conv1d`` / ``Conv2d`` map ``A`` back by their transposed convolution, applied to all ``B * m`` rows of
``A`` at once. Every padding the layer can do is modelled exactly: zero padding inside the convolution;
``padding_mode`` reflect / replicate / circular and string padding (``"same"``, possibly asymmetric) as an
explicit ``F.pad`` before an unpadded convolution, whose transpose is taken through the pad (each padded
cell is a copy of an input cell, so its coefficient is added back onto that cell).
``ConvTranspose2d`` maps ``A`` back by the forward convolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BoundOp


def _pad_transpose(A: torch.Tensor, pads: tuple[int, ...], mode: str, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Adjoint of ``F.pad(x, pads, mode)`` applied to the rows ``A`` (N, *padded_shape) -> (N, *in_shape)."""
    with torch.enable_grad():
        x = torch.zeros((A.shape[0], *in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
        y = F.pad(x, pads) if mode == "zeros" else F.pad(x, pads, mode)
        g, = torch.autograd.grad(y, x, A, create_graph=A.requires_grad)
    return g


# Below this many weights per output channel (in_channels/groups * kernel size) the transpose is one matrix
# product and a ``fold`` (a scatter-add); above it torch's transposed convolution is faster. Measured on
# CPU: 1-channel 4x4 (MNIST CNN) and 3-channel 3x3 (CIFAR stem) 2x faster by fold, 16-channel 3x3 2-4x slower.
_FOLD_MAX = 32


def _fold_transpose(rows: torch.Tensor, weight: torch.Tensor, in_sp: list[int], stride, padding, dilation,
                    groups: int) -> torch.Tensor:
    """Adjoint of a convolution (no bias) applied to ``rows`` (N, C_out, *out_sp): columns ``Wᵀ A`` folded back
    onto the (padded) input grid; (N, C_in, *in_sp). 1-D convolutions are folded as height-1 images."""
    N, co = rows.shape[:2]
    k = tuple(weight.shape[2:])
    two = (lambda v, fill=1: (fill, v[0])) if len(k) == 1 else (lambda v, fill=1: tuple(v))
    w = weight.reshape(groups, co // groups, -1)                        # (g, co/g, ci/g * kk)
    cols = torch.einsum("gok,ngol->ngkl", w, rows.reshape(N, groups, co // groups, -1))
    full = F.fold(cols.reshape(N, -1, cols.shape[-1]), two(in_sp), two(k), dilation=two(dilation),
                  padding=two(padding, 0), stride=two(stride))
    return full.reshape(N, -1, *in_sp)


class BoundConv(BoundOp):
    types = (nn.Conv1d, nn.Conv2d)

    def check(self) -> None:
        c = self.module
        if c.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise self.refuse(f"padding_mode={c.padding_mode!r}")

    @property
    def weight_layers(self) -> int:  # type: ignore[override]
        # a non-zero padding mode copies input cells, so one output can see a cell twice: not exact
        return 1 if self.module.padding_mode == "zeros" else 2

    @property
    def _explicit(self) -> tuple[int, ...] | None:
        """Torch-ordered pads applied by ``F.pad`` before an unpadded convolution, or None (zero padding
        inside the convolution)."""
        c = self.module
        if c.padding_mode == "zeros" and not isinstance(c.padding, str):
            return None
        return tuple(c._reversed_padding_repeated_twice)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        c = self.module
        fn = F.conv1d if isinstance(c, nn.Conv1d) else F.conv2d
        pads = self._explicit
        if pads is None:
            return fn(x, weight, None, c.stride, c.padding, c.dilation, c.groups)
        if any(pads):
            x = F.pad(x, pads) if c.padding_mode == "zeros" else F.pad(x, pads, c.padding_mode)
        return fn(x, weight, None, c.stride, 0, c.dilation, c.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.module.weight)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        # every padded cell copies one input cell (or is zero), so |W P| r <= |W| (P r): sound
        return self._conv(r, self.module.weight.abs())

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        c = self.module
        B, m = A.shape[:2]
        spatial = len(self.in_shape) - 1
        pads = self._explicit
        in_sp = list(self.in_shape[1:])
        if pads is None:
            padding = tuple(c.padding)
        else:
            padding = (0,) * spatial
            in_sp = [n + pads[2 * (spatial - 1 - i)] + pads[2 * (spatial - 1 - i) + 1] for i, n in enumerate(in_sp)]
        out_sp = self.out_shape[1:]
        # output_padding recovers input rows/cols that the forward stride dropped
        op = tuple(n_in - ((n_out - 1) * s - 2 * p + d * (k - 1) + 1)
                   for n_in, n_out, s, p, d, k in zip(in_sp, out_sp, c.stride, padding, c.dilation, c.kernel_size))
        rows = A.reshape(B * m, *self.out_shape)
        if c.weight[0].numel() <= _FOLD_MAX:
            rows = _fold_transpose(rows, c.weight, in_sp, c.stride, padding, c.dilation, c.groups)
        else:
            fn = F.conv_transpose1d if spatial == 1 else F.conv_transpose2d
            rows = fn(rows, c.weight, None, c.stride, padding, op, c.groups, c.dilation)
        if pads is not None:
            rows = _pad_transpose(rows, pads, c.padding_mode, self.in_shape)
        const = (A.flatten(3).sum(-1) @ c.bias) if c.bias is not None else 0.0
        return rows.reshape(B, m, *self.in_shape), const


class BoundConvTranspose2d(BoundOp):
    types = (nn.ConvTranspose2d,)

    def check(self) -> None:
        c = self.module
        if c.padding_mode != "zeros":
            raise self.refuse(f"padding_mode={c.padding_mode!r}")

    def _convt(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        c = self.module
        return F.conv_transpose2d(x, weight, None, c.stride, c.padding, c.output_padding, c.groups, c.dilation)

    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._convt(x, self.module.weight)

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        return self._convt(r, self.module.weight.abs())

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        c = self.module
        B, m = A.shape[:2]
        rows = A.reshape(B * m, *self.out_shape)
        # the adjoint of a transposed convolution is the convolution with the same weight
        full = F.conv2d(rows, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        full = full[..., :self.in_shape[1], :self.in_shape[2]]
        const = (A.flatten(3).sum(-1) @ c.bias) if c.bias is not None else 0.0
        return full.reshape(B, m, *self.in_shape), const
