"""alpha-CROWN (Xu et al., "Fast and Complete", ICLR 2021, Sec. 3.1): optimise the lower slopes of ReLU / LeakyReLU.

Any lower slope ``a`` in [s, 1] (``s`` the negative side's slope) gives a sound relaxation, so every ``a`` gives a sound bound; we run
projected Adam on one slope per (box, specification row, unstable neuron) to maximise the lower bound
and keep, per row, the best slopes seen. Starting from CROWN's adaptive slopes, the result is never
looser than CROWN. Pre-activation bounds of intermediate layers stay those of CROWN (auto_LiRPA also
optimises those; we do not, which is cheaper and still sound).
"""
from __future__ import annotations

import time

import torch

from .backward import crown_lower
from .graph import BoundGraph, relu_ops


def _adam_step(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int, lr: float,
               b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
    """One Adam step (Kingma & Ba, 2015) in place; written out because ``torch.optim``'s first use imports
    ``torch._dynamo`` (3-15 s on a busy machine) inside every verification process."""
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    step = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
    p.addcdiv_(m, v.sqrt().add_(eps * (1 - b2 ** t) ** 0.5), value=-step)


def alpha_crown_lower(nodes: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict, *,
                      iters: int = 20, lr: float = 0.1, deadline: float | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`crown_lower` with optimised slopes; ``(lb (B, m), A_in)``, differentiable w.r.t. the
    network's parameters through the final pass (the slopes themselves are treated as constants)."""
    B, m = A.shape[:2]
    pre_d = {k: (v[0].detach(), v[1].detach()) for k, v in pre.items()}
    alphas = {r: r.initial_alpha(*pre_d[r]).unsqueeze(1).expand(B, m, *r.in_shape).clone().requires_grad_(True)
              for r in relu_ops(nodes)}
    best = {r: a.detach().clone() for r, a in alphas.items()}
    best_lb = torch.full((B, m), -float("inf"), dtype=lo.dtype, device=lo.device)
    if alphas and iters > 0:
        A_d = A.detach()
        moments = {r: (torch.zeros_like(a), torch.zeros_like(a)) for r, a in alphas.items()}
        for step in range(1, iters + 2):
            with torch.enable_grad():
                lb, _ = crown_lower(nodes, lo.detach(), hi.detach(), A_d, pre_d, alphas)
                grads = torch.autograd.grad(-lb.sum(), list(alphas.values()), allow_unused=True)
            lb = lb.detach()
            better = lb > best_lb
            best_lb = torch.where(better, lb, best_lb)
            for r, a in alphas.items():
                best[r][better] = a.detach()[better]
            if deadline is not None and time.monotonic() > deadline:
                break
            with torch.no_grad():
                for (r, a), g in zip(alphas.items(), grads):
                    if g is not None:
                        _adam_step(a, g, *moments[r], step, lr)
                    a.clamp_(*r.alpha_range())
    return crown_lower(nodes, lo, hi, A, pre, best)
