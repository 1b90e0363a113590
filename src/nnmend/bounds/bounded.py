"""An auto_LiRPA-style entry: one object built from a network and its input shape, bounds on demand.

Thin over :mod:`nnmend.bounds.api`: the constructor compiles the network's relaxation graph once, so an
unsupported layer is refused (naming it) before any box is given, and :meth:`BoundedNetwork.compute_bounds`
calls :func:`nnmend.bounds.api.bound` on the network as it is at that moment (weights changed since are
seen; nothing is copied).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import DataError
from .api import METHODS, bound
from .graph import compile_network

# auto_LiRPA's spellings of the same algorithms
_ALIASES = {"ibp": "ibp", "crown": "crown", "backward": "crown", "alpha-crown": "alpha-crown",
            "crown-optimized": "alpha-crown", "alpha_crown": "alpha-crown"}


class BoundedNetwork:
    """Sound bounds on ``C · model(x)`` for ``x`` in boxes, by IBP, CROWN or alpha-CROWN.

    Args:
        model: any network :mod:`nnmend.bounds` supports (``nn.Sequential``, a ``GraphNetwork``, any module
            ``torch.fx`` traces); bounded in eval mode.
        input_shape: one sample's shape, e.g. ``784`` or ``(1, 28, 28)``; or an example batch
            ``(B, *shape)`` as auto_LiRPA's ``BoundedModule(model, dummy_input)`` takes.

    Example::

        bnet = BoundedNetwork(net, (784,))
        lb, ub = bnet.compute_bounds(x - 0.01, x + 0.01, method="crown")        # each (B, 10)
        lb, ub = bnet.compute_bounds(x=x, eps=0.01, C=C, method="alpha-crown", iters=30)
    """

    def __init__(self, model: nn.Module, input_shape: int | Sequence[int] | torch.Tensor):
        if isinstance(input_shape, torch.Tensor):
            if input_shape.dim() < 2:
                raise DataError(f"BoundedNetwork: an example input needs a batch dimension, got shape "
                                f"{tuple(input_shape.shape)}")
            input_shape = tuple(input_shape.shape[1:])
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        try:
            shape = tuple(int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise DataError(f"BoundedNetwork: input_shape {input_shape!r} is not a shape like (1, 28, 28)") from None
        if not shape or min(shape) < 1:
            raise DataError(f"BoundedNetwork: input_shape {shape} must be one sample's positive sizes")
        self.model, self.input_shape = model, shape
        self.graph = compile_network(model, input_shape=shape)   # refuses unsupported nodes now, naming them

    def compute_bounds(self, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None,
                       C: torch.Tensor | None = None, method: str = "crown", *, x: torch.Tensor | None = None,
                       eps: float | None = None, **options) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds, each (B, m), on ``C · model(x)`` over each box.

        Args:
            lo, hi: box corners (B, *input_shape); or give ``x`` and ``eps`` for the L∞ ball ``[x-eps, x+eps]``.
            C: specification (m, n_out) or (B, m, n_out); default the identity (bounds on the outputs).
            method: ``"ibp"``, ``"crown"`` (default) or ``"alpha-crown"`` (auto_LiRPA's ``"IBP"``,
                ``"CROWN"``, ``"CROWN-Optimized"`` too, any case).
            options: passed to the method (``intermediate=``; ``iters=``, ``lr=`` for alpha-CROWN).
        """
        name = _ALIASES.get(str(method).lower())
        if name is None:
            raise DataError(f"compute_bounds: method={method!r} is not one of {', '.join(map(repr, METHODS))}")
        if x is not None or eps is not None:
            if lo is not None or hi is not None or x is None or eps is None:
                raise DataError("compute_bounds: give either lo and hi, or x and eps")
            if not isinstance(x, torch.Tensor):
                raise DataError(f"compute_bounds: x must be a tensor, got {type(x).__name__}")
            lo, hi = x - eps, x + eps
        if lo is None or hi is None:
            raise DataError("compute_bounds: give the box as lo and hi (or x and eps)")
        for label, t in (("lo", lo), ("hi", hi)):
            if isinstance(t, torch.Tensor) and tuple(t.shape[1:]) != self.input_shape:
                raise DataError(f"compute_bounds: {label} has shape {tuple(t.shape)}, expected "
                                f"(B, {', '.join(map(str, self.input_shape))})")
        return bound(self.model, lo, hi, C, method=name, **options)

    def __repr__(self) -> str:
        return f"BoundedNetwork({type(self.model).__name__}, input_shape={self.input_shape}, nodes={len(self.graph)})"
