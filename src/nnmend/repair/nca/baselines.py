"""What NCA weight repair must beat (research notes §2.4.7), on the same corruptions.

Every function takes the tampered ``(out, in)`` weight and returns a repaired copy. ``mask`` is the
bool *corrupted* mask (True = bad). The inpainting baselines need it — in the benchmark they get the
true mask, i.e. they run *informed*; a blind NCA competing with them is at a disadvantage, which the
report states beside the numbers.

* :func:`mean_fill` — corrupted entries ← mean of the trusted ones.
* :func:`biharmonic_fill` — minimise ‖Δw‖² (discrete biharmonic equation) over the corrupted cells
  of the layout's grid(s), trusted cells fixed; a fixed, hand-written "CA", the "is learning worth it?"
  control. Exact sparse solve per grid.
* :func:`soft_impute` — low-rank matrix completion (Mazumder, Hastie, Tibshirani 2010): iterated SVD
  soft-thresholding, λ picked on 5 % held-out trusted entries.
* :func:`masked_finetune` — the data-driven reference: only the corrupted entries are trained
  (from zero) on ``n_images`` labelled training images through :func:`nnmend.train.fit`.
* :func:`replica` / :func:`replica_repair` — replication at equal storage: a trusted copy of W that
  costs as many bytes as the NCA rule — uniformly quantised at ``⌊8·budget/n⌋`` bits when that is
  ≥ 2 bits, else a truncated SVD of rank ``⌊budget / (4·(out+in))⌋``. Informed: corrupted entries ←
  copy; blind: entries deviating from the copy by more than 3× the copy's own RMS error ← copy.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import nn

from ...data import Dataset
from ...nets import clone, get_layer
from ...train import fit
from .layout import Layout


def mean_fill(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    good = w[~mask & torch.isfinite(w)]
    fill = good.mean() if good.numel() else torch.zeros(())
    return torch.where(mask | ~torch.isfinite(w), fill, w)


def _laplacian(h: int, w: int) -> sp.csr_matrix:
    """5-point graph Laplacian of an h × w grid (Neumann border)."""
    def path(n: int) -> sp.csr_matrix:
        if n == 1:
            return sp.csr_matrix((1, 1))
        d = np.ones(n - 1)
        a = sp.diags([d, d], [-1, 1], shape=(n, n))
        return (sp.diags(np.asarray(a.sum(1)).ravel()) - a).tocsr()
    return (sp.kron(path(h), sp.eye(w)) + sp.kron(sp.eye(h), path(w))).tocsr()


def biharmonic_fill(w: torch.Tensor, mask: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Biharmonic inpainting of the corrupted cells on ``layout``'s grid(s)."""
    grid = layout.to_grid(torch.where(torch.isfinite(w), w, torch.zeros(()))).double().numpy()
    bad = layout.to_grid(mask | ~torch.isfinite(w)).numpy()
    n, _, h, wd = grid.shape
    lap = _laplacian(h, wd)
    bih = (lap.T @ lap).tocsr()
    out = grid.copy()
    known_all = grid[~bad]
    mean = float(known_all.mean()) if known_all.size else 0.0
    for g in range(n):
        u = bad[g, 0].ravel()
        if not u.any():
            continue
        x = grid[g, 0].ravel() - mean
        a = bih[u][:, u] + 1e-8 * sp.eye(int(u.sum()))
        rhs = -(bih[u][:, ~u] @ x[~u]) if (~u).any() else np.zeros(int(u.sum()))
        x[u] = spla.spsolve(a.tocsc(), rhs)
        out[g, 0] = (x + mean).reshape(h, wd)
    return layout.from_grid(torch.from_numpy(out).float())


def _svt_complete(x: torch.Tensor, known: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    z = torch.where(known, x, torch.zeros(()))
    for _ in range(iters):
        u, s, v = torch.linalg.svd(torch.where(known, x, z), full_matrices=False)
        z = (u * (s - lam).clamp_min(0)) @ v
    return z


def soft_impute(w: torch.Tensor, mask: torch.Tensor, *, iters: int = 60, seed: int = 0,
                lambdas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)) -> torch.Tensor:
    """Low-rank completion; λ (relative to the top singular value) chosen on held-out trusted entries."""
    w = w.double()
    known = ~mask & torch.isfinite(w)
    if not known.any():
        return torch.zeros_like(w).float()
    mean = w[known].mean()
    x = torch.where(known, w - mean, torch.zeros((), dtype=w.dtype))
    top = float(torch.linalg.matrix_norm(x, ord=2))
    gen = torch.Generator().manual_seed(seed)
    held = known & (torch.rand(w.shape, generator=gen) < 0.05)
    fit_known = known & ~held
    best, best_err = lambdas[0], math.inf
    if held.any() and fit_known.any():
        for lam in lambdas:
            z = _svt_complete(x, fit_known, lam * top, iters // 2)
            err = float(((z - x)[held] ** 2).mean())
            if err < best_err:
                best, best_err = lam, err
    z = _svt_complete(x, known, best * top, iters)
    return torch.where(known, w, z + mean).float()


def masked_finetune(network: nn.Module, layer: str, mask: torch.Tensor, data: Dataset, *, n_images: int = 1000,
                    steps: int = 300, batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> torch.Tensor:
    """Retrain only the corrupted entries (reset to 0) of ``layer`` on the first ``n_images`` images."""
    net = clone(network)
    for p in net.parameters():
        p.requires_grad_(False)
    weight = get_layer(net, layer).weight
    mask = mask.reshape(weight.shape)              # a conv's (out, fan-in) mask as its kernel's shape
    keep = (~mask).to(weight.dtype)
    with torch.no_grad():
        weight.copy_(torch.where(mask | ~torch.isfinite(weight), torch.zeros(()), weight))
    weight.requires_grad_(True)
    weight.register_hook(lambda g: g * (1 - keep))
    n = min(n_images, len(data.y))
    sub = (data.x[:n], data.y[:n])
    epochs = max(1, math.ceil(steps * batch_size / n))
    fit(net, sub, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress_bar=False)
    return weight.detach().clone()


def replica(w_clean: torch.Tensor, budget_bytes: int) -> tuple[torch.Tensor, dict]:
    """A trusted copy of ``w_clean`` that fits in ``budget_bytes`` (see module docstring)."""
    r, c = w_clean.shape
    bits = int(8 * budget_bytes // (r * c))
    if bits >= 2:
        bits = min(bits, 32)
        if bits >= 32:
            return w_clean.clone(), {"kind": "exact", "bits": 32, "rms_error": 0.0}
        lo, hi = w_clean.min(), w_clean.max()
        levels = 2**bits - 1
        q = torch.round((w_clean - lo) / (hi - lo).clamp_min(1e-12) * levels) / levels * (hi - lo) + lo
        info = {"kind": "quantised", "bits": bits}
    else:
        rank = int(budget_bytes // (4 * (r + c)))
        u, s, v = torch.linalg.svd(w_clean.double(), full_matrices=False)
        q = ((u[:, :rank] * s[:rank]) @ v[:rank]).float() if rank else torch.full_like(w_clean, float(w_clean.mean()))
        info = {"kind": "low_rank", "rank": rank}
    info["rms_error"] = float(((q - w_clean) ** 2).mean().sqrt())
    return q, info


def replica_repair(w: torch.Tensor, copy: torch.Tensor, rms_error: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Informed (``mask`` given): corrupted ← copy. Blind: cells far from the copy ← copy."""
    if mask is None:
        mask = ~torch.isfinite(w) | ((w - copy).abs() > 3 * max(rms_error, 1e-12))
    return torch.where(mask | ~torch.isfinite(w), copy, w)
