"""FGSM (Goodfellow, Shlens, Szegedy, ICLR 2015), L∞."""
from __future__ import annotations

import torch
from torch import nn

from .base import attack_loss, batched, eval_mode, prepare


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, loss: str = "ce",
         targeted: bool = False, batch_size: int = 1024) -> torch.Tensor:
    """One signed-gradient step of size ``eps``, clipped to [0, 1].

    Args:
        model: any module taking inputs in [0, 1]; left in its original training mode.
        x: inputs (N, ...); y: labels (N,) — the target labels when ``targeted``.
        eps: L∞ radius. SHNN uses 0.15, NNrepair 0.05.
    Returns:
        adversarial inputs, same shape as ``x``.

    Example::

        x_adv = fgsm(net, x, y, eps=0.15)
    """
    x, y = prepare(model, x, y, eps)
    lf = attack_loss(loss)
    sign = -1.0 if targeted else 1.0

    def one(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        xb = xb.clone().requires_grad_(True)
        grad, = torch.autograd.grad(lf(model(xb), yb).sum(), xb)
        return (xb + sign * eps * grad.sign()).clamp(0, 1).detach()

    with eval_mode(model):
        return batched(one, x, y, batch_size)
