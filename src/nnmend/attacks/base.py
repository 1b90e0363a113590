"""What all attacks share: eval mode, input checks, batching, clipping and success decided here."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_inputs, check_labels, check_positive


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore every sub-module's training flag afterwards (``train(was)`` on
    the root alone would switch a wrapped eval-mode network's batch norms to training mode)."""
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in was:
            m.training = flag


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample max wrong logit minus true logit (C&W style); > 0 means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(1).values - true


def attack_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "ce":
        return lambda logits, y: F.cross_entropy(logits, y, reduction="none")
    if name == "margin":
        return margin_loss
    raise ValueError(f"loss={name!r} is not one of 'ce', 'margin'")


def prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    check_inputs(x)
    check_positive("eps", eps)
    y = check_labels(y, x.shape[0])
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None else x.dtype
    return x.detach().to(dtype), y


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else x.clone()


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Project onto the L∞ ball of radius ``eps`` around ``x`` intersected with [lo, hi]."""
    return torch.max(torch.min(x_adv, x + eps), x - eps).clamp(lo, hi)
