"""Training and evaluation loops shared by every method.

``fit`` trains whichever parameters have ``requires_grad`` (freeze with ``requires_grad_(False)`` on
modules, by name), with a seeded shuffle, Adam by default, and an optional custom loss so repair
methods (patch layers, adversarial healing, experts) reuse the same loop. An optional ``augment`` hook
transforms each input batch (seeded; :func:`crop_flip` is the CIFAR-style random crop + horizontal flip).

Example::

    net = shnn_mlp()
    fit(net, load_dataset("mnist", "train"), epochs=10, seed=0)
    accuracy(net, load_dataset("mnist", "test"))      # ≈ 0.98
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._progress import progress
from ._validation import check_input_fits, check_labels
from .data import Dataset, loader
from .errors import DataError, NnmendError

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
SCHEDULES = ("constant", "cosine")


@dataclass
class FitHistory:
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def fit(
    model: nn.Module,
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    loss_fn: LossFn = cross_entropy_loss,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    augment: Augment | None = None,
    progress_bar: bool | None = None,
    desc: str = "train",
) -> FitHistory:
    """Train ``model``'s trainable parameters in place on ``data`` and return the loss history.

    Args:
        data: a :class:`Dataset` or an ``(x, y)`` pair (``y`` may be any target ``loss_fn`` accepts).
        loss_fn: ``loss_fn(model, x, y) -> scalar``; cross-entropy by default.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        schedule: ``"constant"`` or ``"cosine"`` (learning rate annealed to 0 over all steps).
        augment: ``augment(x_batch, generator) -> x_batch`` applied to every training batch (labels kept);
            the generator is seeded from ``seed``, so augmented runs are reproducible.
    """
    if isinstance(data, tuple):
        data = Dataset(data[0], data[1], "tensors", "train")
    _check_fit_args(model, data, epochs, batch_size, loss_fn)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NnmendError("fit: the model has no trainable parameters (all frozen)")
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise NnmendError(f"optimizer={optimizer!r} is not one of 'adam', 'sgd'")
    if schedule not in SCHEDULES:
        raise NnmendError(f"schedule={schedule!r} is not one of {', '.join(map(repr, SCHEDULES))}")
    n = len(data.y)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if schedule == "cosine" else None
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed) if augment is not None else None
    hist = FitHistory()
    t0 = time.perf_counter()
    _train_mode(model)
    bar = progress(range(epochs), desc=desc, enabled=progress_bar, leave=False)
    for epoch in bar:
        total, count = 0.0, 0
        for xb, yb in loader(data, batch_size, shuffle=True, seed=seed * 1000 + epoch):
            if augment is not None:
                xb = augment(xb, gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, xb, yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(xb)
            count += len(xb)
        hist.loss.append(total / max(count, 1))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist.loss[-1]:.4f}")
    model.eval()
    hist.seconds = time.perf_counter() - t0
    return hist


def crop_flip(pad: int = 4) -> Augment:
    """Random ``pad``-pixel-shift crop (zero padding) and random horizontal flip of (N, C, H, W) batches,
    each image drawn independently; pure tensor ops, for :func:`fit`'s ``augment``."""
    if pad < 0:
        raise NnmendError(f"crop_flip: pad={pad} must be >= 0")

    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError(f"crop_flip: expects (N, C, H, W) images, got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        dy, dx, flip = (torch.randint(0, 2 * pad + 1, (b,), generator=gen),
                        torch.randint(0, 2 * pad + 1, (b,), generator=gen),
                        torch.rand(b, generator=gen) < 0.5)
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h))[:, :, None]            # (B, H, 1)
        cols = dx[:, None] + torch.arange(w)                          # (B, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (B, 1, W)
        return padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()

    return apply


def _train_mode(model: nn.Module) -> None:
    """Training mode, except for batch norms whose parameters are all frozen: a frozen layer keeps its
    running statistics too (fine-tuning one layer of a CNN must not move the others' normalisation)."""
    model.train()
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()


def _check_fit_args(model: nn.Module, data: Dataset, epochs: int, batch_size: int, loss_fn: LossFn) -> None:
    """Refuse before training: no samples, a non-positive batch size or negative epochs, and (for the
    default cross-entropy) inputs the model cannot take or labels beyond its outputs."""
    if len(data.y) == 0 or len(data.x) == 0:
        raise DataError(f"fit: the training data {data.name!r} ({data.split}) holds no samples")
    if len(data.x) != len(data.y):
        raise DataError(f"fit: {len(data.x)} inputs but {len(data.y)} labels in {data.name!r}")
    if int(batch_size) < 1 or int(epochs) < 0:
        raise NnmendError(f"fit: batch_size={batch_size} must be >= 1 and epochs={epochs} >= 0")
    if loss_fn is cross_entropy_loss and data.y.dim() == 1 and not data.y.is_floating_point():
        was_training = model.training
        out = check_input_fits(model.eval(), data.x)  # eval: one sample through BatchNorm
        model.train(was_training)
        if out.dim() == 2:
            check_labels(data.y, len(data.y), out.shape[1], name=f"labels of {data.name!r}")


@torch.no_grad()
def accuracy(model: nn.Module, data: Dataset | tuple[torch.Tensor, torch.Tensor], batch_size: int = 4096) -> float:
    """Fraction of correctly classified samples (model put in eval mode)."""
    x, y = (data.x, data.y) if isinstance(data, Dataset) else data
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(y)


def freeze(model: nn.Module, *, except_: tuple[str, ...] = ()) -> nn.Module:
    """Freeze every parameter except those under the named sub-modules; returns ``model``."""
    for name, p in model.named_parameters():
        p.requires_grad_(any(name == e or name.startswith(e + ".") for e in except_))
    return model
