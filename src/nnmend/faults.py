"""Structural damage to one named layer; the input network is never changed.

SHNN (paper 000, Sec. III-A) damages a layer by zeroing it (weights and bias) or re-initialising it
with Gaussian noise (σ = 0.1). nnmend adds localised and scattered tampering, bit flips, pruning,
quantisation noise, sign flips and shuffles, each with a fraction and a seed (see :mod:`corruption`).

Example::

    damaged, fault = damage(net, "fc2", "gaussian", seed=1)          # SHNN's random re-init
    damaged, fault = damage(net, "fc1", "zero", fraction=0.3, pattern="patch", seed=0)
    fault.n_changed, fault.to_dict()
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .corruption import KINDS, PATTERNS, corrupt_values, corruption_mask
from .nets import clone, get_layer


@dataclass(frozen=True)
class Fault:
    """What was done to which layer. ``n_changed`` counts weight+bias entries whose value changed."""

    layer: str
    kind: str
    pattern: str
    fraction: float
    seed: int
    sigma: float
    include_bias: bool
    n_selected: int
    n_changed: int
    n_total: int

    def to_dict(self) -> dict:
        return asdict(self)


def damage(model: nn.Module, layer: str, kind: str = "zero", *, fraction: float = 1.0, pattern: str | None = None,
           sigma: float = 0.1, bit: int | None = None, bits: int = 4, include_bias: bool | None = None,
           seed: int = 0) -> tuple[nn.Module, Fault]:
    """Return ``(damaged copy, Fault)`` with ``layer``'s parameters corrupted.

    Args:
        layer: a name from :func:`nnmend.nets.named_layers`.
        kind: one of ``zero, gaussian, uniform, shuffle, sign, bitflip, quantize, prune``.
        fraction: share of the weight entries to corrupt (1.0 = the whole layer, as in SHNN).
        pattern: ``all, scatter, patch, rows, cols, magnitude``; default ``all`` when ``fraction == 1``,
            else ``scatter`` (``magnitude`` for ``prune``).
        include_bias: corrupt the bias with the same rule (default: only when the whole layer is hit).
        sigma: std of the Gaussian re-initialisation. bit/bits: for bit flips / quantisation.
    """
    if kind == "prune":
        kind, pattern = "zero", pattern or "magnitude"
    if kind not in KINDS:
        from .errors import NnmendError

        raise NnmendError(f"kind={kind!r} is not one of {', '.join(KINDS + ('prune',))}")
    pattern = pattern or ("all" if fraction >= 1.0 else "scatter")
    if pattern not in PATTERNS:
        from .errors import NnmendError

        raise NnmendError(f"pattern={pattern!r} is not one of {', '.join(PATTERNS)}")
    include_bias = (pattern == "all") if include_bias is None else include_bias
    out = clone(model)
    mod = get_layer(out, layer)
    gen = torch.Generator().manual_seed(seed)
    n_sel = n_changed = n_total = 0
    with torch.no_grad():
        targets = [("weight", mod.weight)] + ([("bias", mod.bias)] if include_bias and mod.bias is not None else [])
        for name, p in targets:
            w = p.detach().reshape(p.shape[0], -1) if p.dim() > 2 else p.detach()
            mask = corruption_mask(w, pattern, fraction, gen)
            new = corrupt_values(w, mask, kind, gen, sigma=sigma, bit=bit, bits=bits, fan_in=w.shape[-1] if w.dim() > 1 else None)
            n_sel += int(mask.sum())
            n_changed += int((~torch.eq(new, w)).sum())  # NaN != NaN counts as changed
            n_total += w.numel()
            p.copy_(new.reshape(p.shape))
    fault = Fault(layer, kind, pattern, float(fraction), seed, sigma, include_bias, n_sel, n_changed, n_total)
    return out, fault
