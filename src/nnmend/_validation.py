"""Validation at the edge: turn bad tensors, names and options into clear :mod:`nnmend.errors`.

The numeric core trusts its inputs; everything a user hands in passes through these helpers first.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import DataError, ModelError, NnmendError


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise NnmendError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def check_fraction(name: str, value: float, *, allow_zero: bool = True) -> float:
    v = float(value)
    lo_ok = v >= 0.0 if allow_zero else v > 0.0
    if not (lo_ok and v <= 1.0):
        raise NnmendError(f"{name}={value} must lie in {'[0' if allow_zero else '(0'}, 1]")
    return v


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise NnmendError(f"{name}={value} must be positive")
    return value


def check_inputs(x: torch.Tensor, *, name: str = "inputs", unit_range: bool = True) -> torch.Tensor:
    """Inputs must be a floating tensor with a batch dimension, finite, and (by default) in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DataError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.dim() < 2:
        raise DataError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{name} contains NaN or Inf values")
    if unit_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{name} must lie in [0, 1] (got min {x.min().item():.4g}, max {x.max().item():.4g})")
    return x


def check_labels(y: torch.Tensor, n: int, num_classes: int | None = None, *, name: str = "labels") -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise DataError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError(f"{name} must be integers")
    y = y.long()
    if y.numel() and y.min() < 0:
        raise DataError(f"{name} contain a negative label ({y.min().item()})")
    if num_classes is not None and y.numel() and y.max() >= num_classes:
        raise DataError(f"{name} contain label {y.max().item()} but the model has {num_classes} classes")
    return y


def check_finite_params(model: nn.Module, *, what: str = "model") -> None:
    """Raise :class:`ModelError` naming the first parameter holding NaN or Inf."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ModelError(f"{what} parameter {name!r} (shape {tuple(p.shape)}) contains NaN or Inf")


def check_input_fits(model: nn.Module, example: torch.Tensor, *, what: str = "model") -> torch.Tensor:
    """Run one example through ``model``; a shape mismatch becomes a ModelError naming both shapes."""
    try:
        with torch.no_grad():
            return model(example[:1])
    except RuntimeError as exc:  # torch shape errors
        raise ModelError(
            f"{what} cannot take inputs of shape {tuple(example.shape[1:])}: {str(exc).splitlines()[0]}"
        ) from None


def check_same_length(**tensors: Sequence) -> int:
    lengths = {k: len(v) for k, v in tensors.items()}
    if len(set(lengths.values())) > 1:
        raise DataError("length mismatch: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    return next(iter(lengths.values()))
