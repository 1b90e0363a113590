"""Shared base of the per-operator relaxations (auto_LiRPA's ``operators/base.py`` idea).

Every operator works on a batch of ``B`` boxes and a specification of ``m`` rows. Shapes:

* a concrete or interval tensor: ``(B, *shape)`` (``shape`` is one sample's shape);
* a linear form on the operator's output: ``A`` of shape ``(B, m, *out_shape)`` meaning ``sum(A * y)``.

Back-substitution only ever computes *lower* bounds of ``A · y`` (an upper bound is minus the lower
bound of ``-A · y``). A linear operator maps ``A`` on its output to one form per input plus a constant
``(B, m)`` (an equality); a non-linear one (``nonlinear = True``, always one input) is relaxed given
bounds on its input: ``A · y >= A' · x + const`` for every ``x`` in those bounds.

An operator reads the outputs of the graph nodes listed in ``inputs`` (``-1`` is the network input).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import ModelError


class BoundOp:
    """Relaxation of one operator. Subclasses set ``types`` (the ``nn.Module`` classes they handle)."""

    types: tuple[type, ...] = ()
    nonlinear: bool = False        # relaxed with bounds on its (single) input
    optimizable: bool = False      # has a lower slope alpha-CROWN optimises (ReLU, LeakyReLU)
    exact_interval: bool = False   # maps a box to exactly a box (shape and selection operators)
    weight_layers: int = 1         # weight layers it counts as (interval bounds are exact after at most one)

    def __init__(self, module: nn.Module, path: str):
        self.module = module
        self.path = path
        self.inputs: list[int] = [-1]
        self.in_shapes: list[tuple[int, ...]] = []
        self.out_shape: tuple[int, ...] = ()
        self.check()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path or '<root>'})"

    def refuse(self, attribute: str) -> ModelError:
        """The one-line error for an attribute this relaxation does not model."""
        return ModelError(f"bounds: node {self.path or '<root>'} ({type(self.module).__name__}): {attribute} "
                          "is not supported by the bounds (refused rather than approximated)")

    def check(self) -> None:
        """Raise :meth:`refuse` for any attribute the relaxation does not model exactly."""

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.in_shapes[0] if self.in_shapes else ()

    @in_shape.setter
    def in_shape(self, shape: tuple[int, ...]) -> None:
        self.in_shapes = [tuple(shape)]

    # -- concrete and interval --------------------------------------------------------------------
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.module(*xs)

    def interval(self, *bounds: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Interval (IBP) image of the input boxes; single-input affine layers use the centre/radius form."""
        (lo, hi), = bounds
        mid, rad = (hi + lo) / 2, (hi - lo) / 2
        mid, rad = self.forward(mid), self.abs_map(rad)
        return mid - rad, mid + rad

    # -- single-input affine layers ---------------------------------------------------------------
    def linear_map(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` (the affine layer without its constant term)."""
        return self.forward(x) - self.forward(torch.zeros_like(x[:1]))

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        """``|W| r`` for an affine layer ``x -> W x + b`` (used for interval radii)."""
        raise NotImplementedError

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """Map ``A`` (B, m, *out_shape) to ``(A', const)`` with ``A'`` of shape (B, m, *in_shape)."""
        raise NotImplementedError

    def backward_inputs(self, A: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | float]:
        """One form per input (linear operators with several inputs override this)."""
        A_in, c = self.backward(A)
        return [A_in], c

    # -- non-linear operators ---------------------------------------------------------------------
    def backward_relaxed(self, A: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                         alpha: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower bound of ``A · op(x)`` by a linear function of ``x`` for ``x`` in ``[lo, hi]``."""
        raise NotImplementedError

    def needs_bounds(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Which input neurons (flat, (B, n)) a tighter input bound could help (ReLU: the unstable ones)."""
        return (hi > lo).flatten(1)


class VjpLinear(BoundOp):
    """A linear operator whose transpose is taken by automatic differentiation of its own forward.

    For ``y = W x + c`` the form ``A · y`` equals ``(Wᵀ A) · x + A · c``; ``Wᵀ A`` is the vector-Jacobian
    product of the forward at any point, computed for all ``B * m`` rows at once. Exact for any attribute
    the forward honours (padding modes, strides, ceil mode…). Subclasses whose coefficients are all
    non-negative (selections, averages) set ``monotone = True`` and get the exact interval image for free.
    """

    monotone: bool = False

    def abs_map(self, r: torch.Tensor) -> torch.Tensor:
        if self.monotone:
            return self.linear_map(r)
        raise NotImplementedError

    def interval(self, *bounds):
        if self.monotone and len(bounds) == 1:
            (lo, hi), = bounds
            return self.forward(lo), self.forward(hi)
        return super().interval(*bounds)

    def transpose(self, A: torch.Tensor) -> torch.Tensor:
        B, m = A.shape[:2]
        rows = A.reshape(B * m, *self.out_shape)
        with torch.enable_grad():
            x = torch.zeros((B * m, *self.in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
            y = self.linear_map(x)
            g, = torch.autograd.grad(y, x, rows, create_graph=A.requires_grad)
        return g.reshape(B, m, *self.in_shape)

    def constant(self, like: torch.Tensor) -> torch.Tensor:
        return self.forward(torch.zeros((1, *self.in_shape), dtype=like.dtype, device=like.device))

    def backward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        c = self.constant(A)
        const = (A * c.unsqueeze(1)).flatten(2).sum(-1) if bool((c != 0).any()) else 0.0
        return self.transpose(A), const
