"""Counterexample search on one input box for the branch and bound: signed-gradient descent on the violation.

The unsafe set is a disjunction; each item of the batch descends on one disjunct's ``max_i (C_i y - d_i)``
(a targeted attack: the disjuncts closest to a violation at the box's centre) or on the violation ``v(y)``
itself, from

* the given seeds (the branch and bound passes, per specification row, the box corner that minimises the
  row's linear lower bound: where the relaxation says a violation is likeliest), then the centre;
* uniform points of the box, alternating with random vertices (ReLU networks' violations often sit at
  vertices; on MNIST 256x2 prop 9 no interior start of 2,000 found one that every corner seed found).

Each round runs ``steps`` steps whose size follows a cosine from ``a0`` (a share of the box width: 1 lets the
first steps jump between vertices) down to ``1e-3``; every iterate is screened, and a point is reported only
after the float64 network confirms it. A final ``Softmax`` is left out of the objective where every
specification row compares two outputs (``a (y_i - y_j) <= 0``): the comparison's sign is the logits', and a
saturated softmax has no gradient. Binarised networks (``Sign``) get the straight-through gradient of
:class:`nnmend.layers_math.Sign`.
"""
from __future__ import annotations

import math
import time

import torch
from torch import nn

from .bab import _confirm, group_max


def objective_net(net: nn.Module, C: torch.Tensor, d: torch.Tensor) -> nn.Module:
    """``net`` without a final ``Softmax`` over the outputs when every row of ``C y <= d`` compares two outputs
    (one entry ``a > 0``, one ``-a``, ``d = 0``), whose sign softmax keeps; else ``net``."""
    if not isinstance(net, nn.Sequential) or not len(net) or not isinstance(net[-1], nn.Softmax):
        return net
    if net[-1].dim not in (1, -1) or bool((d != 0).any()):
        return net
    nz = C != 0
    pairs = (nz.sum(1) == 2) & (C.sum(1).abs() <= 1e-12 * C.abs().sum(1))
    return net[:-1] if bool(pairs.all()) else net


def _objective(y: torch.Tensor, spec: tuple, target: torch.Tensor) -> torch.Tensor:
    """Per item: its disjunct's ``max_i (C_i y - d_i)``, or ``v(y)`` where ``target == k``."""
    C, d, groups, k = spec
    per = group_max(y.flatten(1) @ C.T - d, groups, k)                                  # (n, k)
    per = torch.cat([per, per.min(1, keepdim=True).values], 1)
    return per.gather(1, target[:, None]).squeeze(1)


def falsify(net: nn.Module, net64: nn.Module, lo: torch.Tensor, hi: torch.Tensor, spec: tuple, spec64: tuple, *,
            deadline: float, budget_s: float, seeds: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0,
            steps: int = 40, max_items: int = 64, targets: int = 8, rounds: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A confirmed counterexample ``(x, y)`` (float64) in the box ``lo, hi`` (1, *shape), or ``None``.

    Args:
        net: the network the gradients are taken on (float32 is enough); net64: the float64 judge.
        spec, spec64: ``(C, d, groups, k)`` in ``net``'s and in float64 arithmetic.
        deadline, budget_s: stop at ``deadline`` or ``budget_s`` seconds from now, whichever comes first.
        seeds: ``(x (S, *shape), disjunct (S,))`` starting points, each attacking its disjunct, run first.
        steps: steps per round; max_items: points per round; targets: disjuncts attacked one by one (the
        closest at the centre), the rest through ``v``; rounds: at most this many rounds (default: until time).
    """
    end = min(deadline, time.monotonic() + max(0.0, budget_s))
    C, d, groups, k = spec
    obj_net = objective_net(net, C, d)
    dt = next((p.dtype for p in net.parameters()), lo.dtype)
    lo, hi = lo.to(dt), hi.to(dt)
    spec = (C.to(dt), d.to(dt), groups, k)
    width = hi - lo
    gen = torch.Generator().manual_seed(seed)
    centre = (lo + hi) / 2
    with torch.no_grad():
        cex = _confirm(net64, centre, lo, hi, spec64)
        if cex is not None:
            return cex
        per = group_max(net(centre).flatten(1) @ spec[0].T - spec[1], groups, k)[0]
    order = per.argsort()[:targets]
    cycle = torch.cat([order, torch.tensor([k])]) if k > 1 else torch.tensor([k])
    n_round = 0
    while time.monotonic() < end and (rounds is None or n_round < rounds):
        if n_round == 0 and seeds is not None and len(seeds[0]):
            x0, tgt = seeds[0][:max_items].to(dt), seeds[1][:max_items]
            a0 = 0.25
        else:
            n = max(1, min(max_items, 4 * len(cycle)))
            u = torch.rand((n, *lo.shape[1:]), generator=gen, dtype=dt)
            if n_round % 2 == 0:
                u = u.round()                                          # vertices
            x0 = lo + u * width
            x0[0] = centre[0] if n_round == 1 else x0[0]
            tgt = cycle[torch.arange(n) % len(cycle)]
            a0 = 1.0 if n_round % 2 == 0 else 0.5
        cex = _descend(obj_net, net64, x0, tgt, lo, hi, spec, spec64, steps, a0, end)
        if cex is not None:
            return cex
        n_round += 1
    return None


def _descend(net: nn.Module, net64: nn.Module, x: torch.Tensor, tgt: torch.Tensor, lo: torch.Tensor,
             hi: torch.Tensor, spec: tuple, spec64: tuple, steps: int, a0: float, end: float
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
    width = hi - lo
    u = ((x - lo) / torch.where(width > 0, width, torch.ones_like(width))).clamp(0, 1)
    for s in range(steps + 1):
        u.requires_grad_(True)
        with torch.enable_grad():
            y = net(lo + u * width)
            val = _objective(y, spec, tgt)
            grad, = torch.autograd.grad(val.sum(), u) if s < steps else (None,)
        with torch.no_grad():
            near = val <= 1e-3 + 1e-5 * y.flatten(1).abs().amax(1)       # the working dtype's rounding
            if bool(near.any()):
                cand = (lo + u * width)[near]
                cex = _confirm(net64, cand, lo.expand_as(cand), hi.expand_as(cand), spec64)
                if cex is not None:
                    return cex
            if s == steps or time.monotonic() > end:
                return None
            step = a0 * 0.5 * (1 + math.cos(math.pi * s / steps)) + 1e-3
            u = (u.detach() - step * grad.sign()).clamp(0, 1)
    return None


__all__ = ["falsify", "objective_net"]
