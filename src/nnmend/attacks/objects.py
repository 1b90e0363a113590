"""The torchattacks-style object form of the attacks: build once with the model and options, call on
``(x, y)``. Thin classes over :func:`fgsm`, :func:`pgd`, :func:`autoattack` and :func:`square` (no second implementation);
defaults follow torchattacks' (``eps=8/255``; PGD ``alpha=2/255, steps=10, random_start=True``).

Example::

    atk = PGD(net, eps=0.1, alpha=0.01, steps=40)
    x_adv = atk(x, y)                         # same shape as x, within eps of x, clipped to [0, 1]
"""
from __future__ import annotations

import torch
from torch import nn

from .autoattack import autoattack, square
from .fgsm import fgsm
from .pgd import pgd


class Attack:
    """Base: stores the model and options; ``atk(x, y)`` returns adversarial inputs (the model's
    training flag is restored afterwards, as every nnmend attack does)."""

    def __init__(self, model: nn.Module, **options):
        if not isinstance(model, nn.Module):
            raise TypeError(f"{type(self).__name__} takes an nn.Module, got {type(model).__name__}")
        self.model, self.options = model, options

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward(x, y)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({type(self.model).__name__}, {args})"


class FGSM(Attack):
    """FGSM (Goodfellow et al., ICLR 2015), L∞: :func:`nnmend.attacks.fgsm` as an object.

    Args: eps (8/255), loss (``"ce"`` | ``"margin"``), targeted (``y`` are target labels), batch_size.
    Shapes: x (N, ...) in [0, 1], y (N,) → (N, ...).

    Example::

        x_adv = FGSM(net, eps=0.15)(x, y)
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, *, loss: str = "ce", targeted: bool = False,
                 batch_size: int = 1024):
        super().__init__(model, eps=eps, loss=loss, targeted=targeted, batch_size=batch_size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fgsm(self.model, x, y, **self.options)


class PGD(Attack):
    """PGD (Madry et al., ICLR 2018), L∞: :func:`nnmend.attacks.pgd` as an object.

    Args: eps (8/255), alpha step size (2/255), steps (10), random_start (True), restarts (1), loss
    (``"ce"`` | ``"margin"``), targeted, seed (0; the random starts), batch_size.
    Shapes: x (N, ...) in [0, 1], y (N,) → (N, ...), the strongest restart per sample.

    Example::

        x_adv = PGD(net, eps=0.1, alpha=0.01, steps=40, random_start=True)(x, y)
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 random_start: bool = True, *, restarts: int = 1, loss: str = "ce", targeted: bool = False,
                 seed: int = 0, batch_size: int = 1024):
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, restarts=restarts,
                         loss=loss, targeted=targeted, seed=seed, batch_size=batch_size)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd(self.model, x, y, **self.options)


class AutoAttack(Attack):
    """Standard AutoAttack (Croce & Hein, ICML 2020), L∞, through torchattacks (install it with
    ``pip install --no-deps torchattacks==3.5.1``): :func:`nnmend.attacks.autoattack` as an object.

    Example::

        x_adv = AutoAttack(net, eps=0.1, n_classes=10)(x, y)
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, *, version: str = "standard", n_classes: int = 10,
                 seed: int = 0):
        super().__init__(model, eps=eps, version=version, n_classes=n_classes, seed=seed)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return autoattack(self.model, x, y, **self.options)


class Square(Attack):
    """Square attack (Andriushchenko et al., ECCV 2020), L∞, gradient-free, through torchattacks (install it with
    ``pip install --no-deps torchattacks==3.5.1``): :func:`nnmend.attacks.square` as an object. It needs no
    gradients, so it sees through networks that mask them (box indicators, patches).

    Example::

        x_adv = Square(net, eps=0.1, n_queries=1000)(x, y)
    """

    def __init__(self, model: nn.Module, eps: float = 8 / 255, *, n_queries: int = 5000, seed: int = 0):
        super().__init__(model, eps=eps, n_queries=n_queries, seed=seed)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return square(self.model, x, y, **self.options)
