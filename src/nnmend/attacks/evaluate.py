"""Robust accuracy of any network (repaired ones included) under the shared attacks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..train import accuracy
from .fgsm import fgsm
from .pgd import pgd


@dataclass(frozen=True)
class AttackSpec:
    """A named attack and its settings; ``run`` crafts adversarial inputs on ``model``."""

    kind: Literal["fgsm", "pgd"] = "pgd"
    eps: float = 0.1
    alpha: float | None = None
    steps: int = 30
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    seed: int = 0

    def run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "fgsm":
            return fgsm(model, x, y, self.eps, loss=self.loss)
        if self.kind == "pgd":
            return pgd(model, x, y, self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start,
                       restarts=self.restarts, loss=self.loss, seed=self.seed)
        raise ValueError(f"unknown attack kind {self.kind!r} (fgsm, pgd)")

    def describe(self) -> str:
        if self.kind == "fgsm":
            return f"FGSM eps={self.eps}"
        a = f"{self.alpha:g}" if self.alpha is not None else "2.5eps/steps"
        rs = "random start" if self.random_start else "no random start"
        return f"PGD eps={self.eps} alpha={a} steps={self.steps} {rs} restarts={self.restarts}"


# The attack settings of the SHNN code (research notes §3.1).
SHNN_FGSM = AttackSpec("fgsm", eps=0.15)
SHNN_PGD = AttackSpec("pgd", eps=0.2, alpha=0.01, steps=30, random_start=False)


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: AttackSpec) -> float:
    """Accuracy on adversarial inputs crafted white-box against ``model`` itself."""
    return accuracy(model, (attack.run(model, x, y), y))
