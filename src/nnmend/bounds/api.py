"""The entry points: bounds on ``C · f(x)`` for a batch of input boxes, by one of three algorithms."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .._validation import check_choice
from ..errors import DataError, ModelError
from .backward import backsub, concretize, crown_lower, intermediate_bounds, spec_matrix
from .graph import BoundGraph, compile_network
from .interval import interval_pass
from .optimized import AlphaConfig, alpha_config, alpha_crown_lower

METHODS = ("ibp", "crown", "alpha-crown")
INTERMEDIATE = ("crown", "forward", "ibp")


def _prepare(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor) -> tuple[BoundGraph, torch.Tensor, torch.Tensor]:
    if net.training:
        raise ModelError("bounds: the network is in training mode; call net.eval() (bounds describe the deployed network)")
    for name, t in (("lo", lo), ("hi", hi)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise DataError(f"bounds: {name} must be a floating-point tensor")
    if lo.shape != hi.shape or lo.dim() < 2:
        raise DataError(f"bounds: lo and hi must have the same shape (B, *in_shape); got {tuple(lo.shape)} and {tuple(hi.shape)}")
    nodes = compile_network(net, input_shape=tuple(lo.shape[1:]))
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise DataError("bounds: lo/hi contain NaN or Inf")
    if (lo > hi).any():
        raise DataError("bounds: lo > hi in some coordinate (empty box)")
    # the first floating-point tensor (an integer buffer, e.g. Gather's indices, would truncate the boxes)
    p = next((t for t in (*net.parameters(), *net.buffers()) if t.is_floating_point()), None)
    if p is not None:  # boxes follow the network's dtype and device: bound a .double() copy for float64
        lo, hi = lo.to(device=p.device, dtype=p.dtype), hi.to(device=p.device, dtype=p.dtype)
    return nodes, lo, hi


def _both(nodes: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None, pre: dict,
          lower_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds by ``lower_fn``, never looser than interval bounds on the same case."""
    B = lo.shape[0]
    out_lo, _ = interval_pass(nodes, lo, hi)             # also fills every node's shapes
    A = spec_matrix(C, B, tuple(out_lo.shape[1:]), lo)
    m = A.shape[1]
    lb = lower_fn(nodes, lo, hi, torch.cat([A, -A], 1), pre)[0]
    il, iu = _interval(nodes, lo, hi, A)
    return torch.max(lb[:, :m], il), torch.min(-lb[:, m:], iu)


def _interval(nodes: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bounds of ``A · f(x)``, ``A`` (B, m, *out_shape)."""
    vals: dict = {}
    interval_pass(nodes, lo, hi, all_bounds=vals)
    last = nodes[-1]
    if not last.nonlinear and len(last.inputs) == 1:
        # fold A into the last linear node (as auto_LiRPA does): A·(W z + b) = (A W) z + A b, tighter
        # than applying A to the output interval; z's interval is the last node's input interval.
        olo, ohi = vals[last.inputs[0]]
        A, const = last.backward(A)
    else:
        (olo, ohi), const = vals[len(nodes) - 1], 0.0
    if not torch.is_tensor(const):
        const = A.new_zeros(A.shape[:2])
    return concretize(A, const, olo, ohi), -concretize(-A, -const, olo, ohi)


def interval_bounds(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bound propagation (IBP) of ``C · net(x)`` for ``x`` in each box.

    Args:
        net: an ``nn.Module`` of supported layers, in eval mode.
        lo, hi: input boxes, (B, *in_shape).
        C: specification (m, n_out) or (B, m, n_out); default the identity (bounds on the outputs).
    Returns:
        ``(lb, ub)``, each (B, m).

    Example::

        lb, ub = interval_bounds(net, x - 0.01, x + 0.01)
    """
    nodes, lo, hi = _prepare(net, lo, hi)
    olo, ohi = interval_pass(nodes, lo, hi)
    if C is None:
        return olo.flatten(1), ohi.flatten(1)
    return _interval(nodes, lo, hi, spec_matrix(C, lo.shape[0], tuple(olo.shape[1:]), lo))


def crown_bounds(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None, *,
                 intermediate: str = "crown", differentiable: bool | None = None,
                 memory_budget: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN / DeepPoly back-substitution bounds of ``C · net(x)`` (Zhang et al. 2018; Singh et al. 2019).

    Args:
        net, lo, hi, C: as in :func:`interval_bounds`.
        intermediate: ``"crown"`` (default) bounds every ReLU's input by back-substitution too (full
            CROWN/DeepPoly, intersected with IBP); ``"forward"`` forward symbolic bounds (cheap when
            the input is small, e.g. ACAS Xu); ``"ibp"`` interval bounds (cheapest).
        differentiable: keep the autograd graph (``None``: when autograd is on and a parameter or the box
            requires grad; ``False`` computes the same bounds in bounded memory).
        memory_budget: bytes for the rows back-substituted at once (default 512 MiB).
    Returns:
        ``(lb, ub)``, each (B, m); differentiable with respect to the network's parameters unless
        ``differentiable=False`` (or autograd is off).

    Example::

        C = torch.eye(10)[y] - torch.eye(10)        # rows e_y - e_j: lb > 0 on every j != y proves robustness
        lb, ub = crown_bounds(net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1), C)
    """
    check_choice("intermediate", intermediate, INTERMEDIATE)
    nodes, lo, hi = _prepare(net, lo, hi)
    with _grad_mode(net, lo, hi, differentiable):
        pre = intermediate_bounds(nodes, lo, hi, intermediate, memory_budget=memory_budget)
        return _both(nodes, lo, hi, C, pre, crown_lower)


def _grad_mode(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, differentiable: bool | None):
    """``torch.no_grad()`` unless the bounds must be differentiable: ``differentiable=None`` means "if autograd
    is on and a parameter or the box requires grad". Without a graph, only one chunk of rows is ever alive."""
    if differentiable is None:
        differentiable = torch.is_grad_enabled() and (lo.requires_grad or hi.requires_grad
                                                      or any(p.requires_grad for p in net.parameters()))
    return contextlib.nullcontext() if differentiable else torch.no_grad()


def alpha_crown_bounds(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None, *,
                       preset: str | AlphaConfig = "fast", iters: int | None = None, lr: float | None = None,
                       intermediate: str = "crown") -> tuple[torch.Tensor, torch.Tensor]:
    """alpha-CROWN (Xu et al., ICLR 2021): CROWN with per-neuron lower slopes optimised by Adam.

    Args:
        net, lo, hi, C, intermediate: as in :func:`crown_bounds`.
        preset: the tightness/time dial: ``"fast"`` (default; output slopes only, 20 steps of 0.1),
            ``"tight"`` (the intermediate bounds' slopes too, up to 100 decaying steps of 0.5 with an early
            stop; auto_LiRPA's width) or an :class:`~nnmend.bounds.optimized.AlphaConfig`.
        iters, lr: override the preset's Adam steps and step size.
    Returns:
        ``(lb, ub)``, each (B, m), never looser than :func:`crown_bounds` on the same case.

    Example::

        lb, ub = alpha_crown_bounds(net, lo, hi, C, preset="tight")
    """
    check_choice("intermediate", intermediate, INTERMEDIATE)
    cfg = alpha_config(preset, iters=iters, lr=lr)
    nodes, lo, hi = _prepare(net, lo, hi)
    pre = intermediate_bounds(nodes, lo, hi, intermediate)
    return _both(nodes, lo, hi, C, pre, lambda *a: alpha_crown_lower(*a, config=cfg))


def crown_linear_form(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None, *,
                      intermediate: str = "crown") -> tuple[torch.Tensor, torch.Tensor]:
    """The CROWN lower linear form of ``C · net(x)`` on each box, before concretisation.

    ``C · net(x) >= A_in · x + const`` for every ``x`` in ``[lo, hi]``. Methods that add their own exact
    or relaxed linear forms of other branches (PatchPro adds its patches' forms) combine them with this
    one and concretise the sum with :func:`nnmend.bounds.backward.concretize`, which keeps the
    correlation that adding intervals would lose.

    Args:
        net, lo, hi, C, intermediate: as in :func:`crown_bounds`.
    Returns:
        ``(A_in (B, m, *in_shape), const (B, m))``; differentiable with respect to the parameters.

    Example::

        A, c = crown_linear_form(base, lo, hi, C)
        lb = concretize(A + A_patch, c + c_patch, lo, hi)     # == crown_bounds of base + patch
    """
    check_choice("intermediate", intermediate, INTERMEDIATE)
    nodes, lo, hi = _prepare(net, lo, hi)
    pre = intermediate_bounds(nodes, lo, hi, intermediate)
    out_lo, _ = interval_pass(nodes, lo, hi)             # fills every node's shapes
    A = spec_matrix(C, lo.shape[0], tuple(out_lo.shape[1:]), lo)
    return backsub(A, nodes, len(nodes) - 1, pre)


def bound(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor | None = None, *,
          method: str = "crown", **options) -> tuple[torch.Tensor, torch.Tensor]:
    """One entry point: ``method`` in ``"ibp"``, ``"crown"``, ``"alpha-crown"``; options go to that method.

    Example::

        lb, ub = bound(net, lo, hi, C, method="alpha-crown", preset="tight")
    """
    check_choice("method", method, METHODS)
    fn = {"ibp": interval_bounds, "crown": crown_bounds, "alpha-crown": alpha_crown_bounds}[method]
    return fn(net, lo, hi, C, **options)
