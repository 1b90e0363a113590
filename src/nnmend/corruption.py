"""One corruption sampler for weight tensors, shared by :mod:`nnmend.faults` and the NCA repair.

A corruption is a *mask* (which entries) and a *value rule* (what they become). Both are vectorised over
any leading batch dimensions, so NCA training can corrupt a whole pool of matrices in one call.

Masks (``pattern``), each choosing exactly ``round(fraction · size)`` entries per matrix where the shape
allows (rows/cols/patch round to whole rows, columns or rectangles):

* ``"all"`` every entry; ``"scatter"`` uniformly random entries; ``"patch"`` one random rectangle with
  the matrix's aspect ratio; ``"rows"`` / ``"cols"`` whole random rows / columns;
  ``"magnitude"`` the smallest-|w| entries (pruning).

Values (``kind``): ``"zero"``; ``"gaussian"`` N(0, σ²) re-initialisation (SHNN: σ = 0.1);
``"uniform"`` U(−b, b) with PyTorch's default bound b = 1/√fan_in; ``"shuffle"`` the corrupted entries
permuted among themselves; ``"sign"`` sign flips; ``"bitflip"`` one bit of each float32 flipped (``bit``
fixed, or random per entry); ``"quantize"`` rounding to ``bits``-bit uniform levels over the matrix's range.
"""
from __future__ import annotations

import math

import torch

from ._validation import check_choice, check_fraction
from .errors import NnmendError

PATTERNS = ("all", "scatter", "patch", "rows", "cols", "magnitude")
KINDS = ("zero", "gaussian", "uniform", "shuffle", "sign", "bitflip", "quantize")


def _rand(shape, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest scores along the last dim (per batch row)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return mask


def corruption_mask(w: torch.Tensor, pattern: str, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A boolean mask over ``w`` (..., R, C) — or (..., N) for vectors — selecting the entries to corrupt."""
    check_choice("pattern", pattern, PATTERNS)
    fraction = check_fraction("fraction", fraction)
    if pattern == "all":
        return torch.ones_like(w, dtype=torch.bool)
    if w.dim() == 1 and pattern in ("patch", "rows", "cols"):
        pattern = "scatter"
    batch = w.shape[:-2] if w.dim() >= 2 else ()
    flat = w.reshape(*batch, -1) if w.dim() >= 2 else w.reshape(-1)
    n = flat.shape[-1]
    if pattern == "scatter":
        return _topk_mask(_rand(flat.shape, gen, w.device), round(fraction * n)).reshape(w.shape)
    if pattern == "magnitude":
        return _topk_mask(-flat.abs() + 1e-12 * _rand(flat.shape, gen, w.device), round(fraction * n)).reshape(w.shape)
    R, C = w.shape[-2], w.shape[-1]
    if pattern == "rows":
        rows = _topk_mask(_rand((*batch, R), gen, w.device), round(fraction * R))
        return rows[..., :, None].expand(w.shape).clone()
    if pattern == "cols":
        cols = _topk_mask(_rand((*batch, C), gen, w.device), round(fraction * C))
        return cols[..., None, :].expand(w.shape).clone()
    # patch: an h × w rectangle with area ≈ fraction · R · C, at a random position per matrix
    h = min(R, max(0, round(R * math.sqrt(fraction))))
    wd = min(C, round(fraction * R * C / h)) if h else 0
    if h == 0 or wd == 0:
        return torch.zeros_like(w, dtype=torch.bool)
    r0 = (_rand(batch, gen, w.device) * (R - h + 1)).long()
    c0 = (_rand(batch, gen, w.device) * (C - wd + 1)).long()
    ri = torch.arange(R, device=w.device)
    ci = torch.arange(C, device=w.device)
    in_r = (ri >= r0[..., None]) & (ri < (r0 + h)[..., None])
    in_c = (ci >= c0[..., None]) & (ci < (c0 + wd)[..., None])
    return in_r[..., :, None] & in_c[..., None, :]


def corrupt_values(w: torch.Tensor, mask: torch.Tensor, kind: str, gen: torch.Generator, *, sigma: float = 0.1,
                   bit: int | None = None, bits: int = 4, fan_in: int | None = None) -> torch.Tensor:
    """Return a copy of ``w`` whose masked entries are replaced according to ``kind``."""
    check_choice("kind", kind, KINDS)
    if mask.shape != w.shape:
        raise NnmendError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(w.shape)}")
    out = w.detach().clone()
    if kind == "zero":
        new = torch.zeros_like(out)
    elif kind == "gaussian":
        new = torch.randn(out.shape, generator=gen, device=out.device, dtype=out.dtype) * sigma
    elif kind == "uniform":
        b = 1.0 / math.sqrt(fan_in or out.shape[-1])
        new = (torch.rand(out.shape, generator=gen, device=out.device, dtype=out.dtype) * 2 - 1) * b
    elif kind == "sign":
        new = -out
    elif kind == "quantize":
        lo = out.amin(dim=tuple(range(-min(2, out.dim()), 0)), keepdim=True)
        hi = out.amax(dim=tuple(range(-min(2, out.dim()), 0)), keepdim=True)
        step = (hi - lo).clamp_min(1e-12) / (2**bits - 1)
        new = torch.round((out - lo) / step) * step + lo
    elif kind == "bitflip":
        if out.dtype != torch.float32:
            raise NnmendError(f"bitflip needs float32 weights, got {out.dtype}")
        if bit is not None and not 0 <= bit <= 31:
            raise NnmendError(f"bit={bit} must be in 0..31")
        ints = out.view(torch.int32)
        b = (torch.full(out.shape, bit, device=out.device) if bit is not None
             else torch.randint(0, 32, out.shape, generator=gen, device=out.device))
        flip = torch.where(b == 31, torch.tensor(-2**31, dtype=torch.int32, device=out.device),
                           (1 << b.clamp(max=30)).to(torch.int32))
        new = (ints ^ flip).view(torch.float32)
    else:  # shuffle: permute masked entries among themselves, per matrix
        return _shuffle(out, mask, gen)
    return torch.where(mask, new, out)


def _shuffle(out: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    batch = out.shape[:-2] if out.dim() >= 2 else ()
    flat = out.reshape(-1, math.prod(out.shape[len(batch):])) if batch else out.reshape(1, -1)
    m = mask.reshape(flat.shape)
    counts = m.sum(1)
    if len(counts) and not (counts == counts[0]).all():
        raise NnmendError("shuffle needs the same number of corrupted entries in every matrix")
    k = int(counts[0]) if len(counts) else 0
    if k < 2:
        return out
    # positions of masked entries per row (sorted), and a random permutation of them
    pos = torch.where(m, torch.arange(flat.shape[1], device=out.device), flat.shape[1]).sort(1).values[:, :k]
    perm = torch.rand(pos.shape, generator=gen, device=out.device).argsort(1)
    res = flat.clone()
    res.scatter_(1, pos, flat.gather(1, pos.gather(1, perm)))
    return res.reshape(out.shape)
