"""AutoAttack (Croce & Hein, ICML 2020) through torchattacks, on any network.

torchattacks' APGD expects 4-D image inputs, so flat inputs are viewed as (N, 1, 1, D) and reshaped
back inside a wrapper; the whole network (patches, indicators, experts) is what is attacked.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import NnmendError
from .base import eval_mode, prepare


class _Reshape(nn.Module):
    def __init__(self, model: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.model, self.shape = model, shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.shape[0], *self.shape))


def _via_torchattacks(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      make: Callable[[Any, nn.Module], Any]) -> torch.Tensor:
    """Run the torchattacks attack ``make(torchattacks, wrapped_model)`` on ``(x, y)`` in any input shape (it sees
    4-D images; the model sees its own shape) and return the adversarial inputs in ``x``'s shape."""
    try:
        import torchattacks
    except ImportError as exc:  # pragma: no cover - installed by the Makefile
        raise NnmendError(f"{name} needs torchattacks (pip install --no-deps torchattacks==3.5.1)") from exc
    x, y = prepare(model, x, y, eps)
    x4 = x if x.dim() == 4 else x.reshape(x.shape[0], 1, 1, -1)
    with eval_mode(model):
        adv = make(torchattacks, _Reshape(model, tuple(x.shape[1:])).eval())(x4, y)
    return adv.reshape(x.shape).detach()


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, version: str = "standard",
               seed: int = 0, n_classes: int = 10) -> torch.Tensor:
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), L∞, via torchattacks."""
    return _via_torchattacks("autoattack", model, x, y, eps, lambda ta, m: ta.AutoAttack(
        m, norm="Linf", eps=eps, version=version, n_classes=n_classes, seed=seed))


def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, n_queries: int = 1000, seed: int = 0
           ) -> torch.Tensor:
    """Square attack (Andriushchenko et al., ECCV 2020; AutoAttack's gradient-free member), L∞, via
    torchattacks: it needs no gradients, so it sees through networks that mask them (box indicators)."""
    return _via_torchattacks("square", model, x, y, eps, lambda ta, m: ta.Square(
        m, norm="Linf", eps=eps, n_queries=n_queries, seed=seed))
