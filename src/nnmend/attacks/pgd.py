"""PGD (Madry et al., ICLR 2018), L∞, with or without random start."""
from __future__ import annotations

import torch
from torch import nn

from .base import attack_loss, batched, eval_mode, margin_loss, prepare, project


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, alpha: float | None = None,
        steps: int = 30, random_start: bool = True, restarts: int = 1, loss: str = "ce",
        targeted: bool = False, seed: int = 0, batch_size: int = 1024) -> torch.Tensor:
    """Projected signed-gradient ascent in the L∞ ball, clipped to [0, 1].

    Args:
        eps: L∞ radius. alpha: step size (default ``2.5 * eps / steps``). steps: iterations.
        random_start: start from a uniform point in the ball (Madry); SHNN's code starts at ``x``.
        restarts: keep, per sample, the restart with the highest loss margin (random starts differ).
        loss: ``"ce"`` or ``"margin"`` (C&W). targeted: ``y`` are target labels.
    Returns:
        adversarial inputs, same shape as ``x``; the strongest found per sample.

    Example::

        x_adv = pgd(net, x, y, eps=0.2, alpha=0.01, steps=30, random_start=False)   # SHNN's setting
    """
    x, y = prepare(model, x, y, eps)
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else alpha
    lf = attack_loss(loss)
    sign = -1.0 if targeted else 1.0
    gen = torch.Generator(device=x.device).manual_seed(seed)

    def one(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        best, best_score = xb.clone(), torch.full((len(xb),), -float("inf"), device=xb.device, dtype=xb.dtype)
        for _ in range(max(restarts, 1)):
            xa = xb.clone()
            if random_start:
                noise = torch.rand(xb.shape, generator=gen, device=xb.device, dtype=xb.dtype)
                xa = project(xb + (2 * noise - 1) * eps, xb, eps)
            for _ in range(steps):
                xa.requires_grad_(True)
                grad, = torch.autograd.grad(lf(model(xa), yb).sum(), xa)
                xa = project(xa.detach() + sign * alpha * grad.sign(), xb, eps)
            with torch.no_grad():
                score = sign * margin_loss(model(xa), yb)
            better = score > best_score
            best[better], best_score[better] = xa[better], score[better]
        return best.detach()

    with eval_mode(model):
        return batched(one, x, y, batch_size)
