"""PNG figures for reports (matplotlib, Agg backend, atomic writes)."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .io.atomic import atomic_path  # noqa: E402


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def layer_bars(scores: dict[str, float], path: str | os.PathLike, *, localized: str | None = None,
               true_layer: str | None = None, threshold: float | None = None, title: str = "", ylabel: str = "MAD") -> None:
    """Per-layer deviation bars; the localised layer in red, the truly damaged one hatched."""
    names, vals = list(scores), list(scores.values())
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 3.2))
    colors = ["tab:red" if n == localized else "tab:blue" for n in names]
    bars = ax.bar(names, vals, color=colors)
    for b, n in zip(bars, names):
        if n == true_layer:
            b.set_hatch("//")
            b.set_edgecolor("black")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="gray", lw=1, label=f"threshold {threshold:g}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"localised: {localized}", fontsize=9)
    _save(fig, path)


def weight_histograms(before: torch.Tensor, damaged: torch.Tensor, after: torch.Tensor, path: str | os.PathLike,
                      *, title: str = "") -> None:
    """Histograms of one layer's weights: healthy, damaged, healed."""
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), sharey=True)
    for ax, w, name in zip(axes, (before, damaged, after), ("healthy", "damaged", "healed")):
        v = w.detach().flatten().float()
        v = v[torch.isfinite(v)]
        ax.hist(v.numpy(), bins=60, color="tab:blue")
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def image_pairs(x: torch.Tensor, x_adv: torch.Tensor, pred: Sequence[int], pred_adv: Sequence[int],
                path: str | os.PathLike, *, n: int = 6, title: str = "") -> None:
    """Clean vs adversarial images with their predictions (first ``n``)."""
    n = min(n, len(x))
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.3))
    for i in range(n):
        for r, (img, p) in enumerate(((x[i], pred[i]), (x_adv[i], pred_adv[i]))):
            ax = axes[r, i] if n > 1 else axes[r]
            ax.imshow(img.reshape(-1, img.shape[-1]).numpy() if img.dim() > 1 else img.reshape(28, 28).numpy(),
                      cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{'clean' if r == 0 else 'adv'}: {int(p)}", fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def accuracy_bars(rows: list[dict], path: str | os.PathLike, *, keys: Sequence[str] = ("clean_accuracy", "damaged_accuracy", "healed_accuracy"),
                  label_key: str = "scenario", title: str = "") -> None:
    """Grouped bars of accuracies per scenario."""
    import numpy as np

    labels = [r[label_key] for r in rows]
    xs = np.arange(len(rows))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 3.4))
    for i, k in enumerate(keys):
        vals = [100 * r[k] if r.get(k) is not None else 0 for r in rows]
        ax.bar(xs + (i - (len(keys) - 1) / 2) * width, vals, width, label=k.replace("_accuracy", "").replace("_", " "))
    ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
              xlabel: str = "", ylabel: str = "", title: str = "") -> None:
    """Several named (x, y) curves in one plot."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, (xv, yv) in series.items():
        ax.plot(xv, yv, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def pareto_scatter(points: Sequence[dict], path: str | os.PathLike, *, x: str, y: str, size: str, label: str = "label",
                   xlabel: str = "", ylabel: str = "", size_label: str = "", title: str = "") -> None:
    """One labelled point per dict (``x``, ``y``, marker area ∝ ``size``); points no other point beats on both
    axes (lower ``x``, higher ``y``) are ringed: the Pareto front."""
    pts = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    top = max((float(p.get(size) or 0) for p in pts), default=0) or 1.0
    for p in pts:
        front = not any(q[x] <= p[x] and q[y] >= p[y] and (q[x], q[y]) != (p[x], p[y]) for q in pts)
        area = 40 + 400 * float(p.get(size) or 0) / top
        ax.scatter(p[x], p[y], s=area, alpha=0.6, edgecolors="black" if front else "none", linewidths=1.5)
        ax.annotate(f"{p[label]} ({p.get(size) or 0:.3g}{size_label})", (p[x], p[y]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title or f"ringed: Pareto front; marker area ∝ {size_label or size}", fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)
