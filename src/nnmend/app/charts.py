"""Interactive charts for the pages (Altair, shipped with Streamlit). Presentation only: every number
shown comes from an API call; report figures (PNG) come from :mod:`nnmend.plots`."""
from __future__ import annotations

from typing import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd
import torch

LOCALISED, OTHER = "#d62728", "#1f77b4"


def layer_bars(scores: Mapping[str, float], *, metric: str, localized: str | None, threshold: float | None = None,
               true_layer: str | None = None) -> alt.Chart:
    """Per-layer deviation bars; the localised layer in red, the damaged one outlined."""
    names = list(scores)
    df = pd.DataFrame({"layer": names, metric: [float(scores[n]) for n in names],
                       "localised": [n == localized for n in names], "damaged": [n == true_layer for n in names]})
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("layer:N", sort=names, title="layer"),
        y=alt.Y(f"{metric}:Q", title=metric.upper()),
        color=alt.condition("datum.localised", alt.value(LOCALISED), alt.value(OTHER)),
        stroke=alt.condition("datum.damaged", alt.value("black"), alt.value(None)),
        strokeWidth=alt.value(2),
        tooltip=["layer", alt.Tooltip(f"{metric}:Q", format=".4f"), "localised", "damaged"],
    )
    chart = bars
    if threshold is not None and metric == "mad":
        rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="threshold:Q")
        chart = bars + rule
    return chart.properties(height=260)


def activation_heatmaps(traces: Mapping[str, Mapping[str, torch.Tensor]]) -> alt.Chart:
    """One heat-map row per network for each layer: ``traces[network][layer]`` is a (features,) vector."""
    rows = []
    for net_name, per_layer in traces.items():
        for layer, act in per_layer.items():
            v = act.detach().flatten().float().numpy()
            rows.append(pd.DataFrame({"network": net_name, "layer": layer, "unit": np.arange(len(v)), "activation": v}))
    df = pd.concat(rows, ignore_index=True)
    order = list(traces)
    layers = list(next(iter(traces.values())))
    base = alt.Chart(df).mark_rect().encode(
        x=alt.X("unit:O", axis=alt.Axis(labels=False, ticks=False), title="unit"),
        y=alt.Y("network:N", sort=order, title=None),
        color=alt.Color("activation:Q", scale=alt.Scale(scheme="viridis")),
        tooltip=["network", "layer", "unit", alt.Tooltip("activation:Q", format=".3f")],
    ).properties(height=22 * len(order), width=620)
    return base.facet(row=alt.Row("layer:N", sort=layers, title=None)).resolve_scale(x="independent", color="independent")


def weight_histograms(weights: Mapping[str, torch.Tensor], bins: int = 60) -> alt.Chart:
    """Histograms of one layer's weights in several networks, side by side with a shared x range."""
    finite = {k: v.detach().flatten().float()[torch.isfinite(v.detach().flatten().float())].numpy() for k, v in weights.items()}
    allv = np.concatenate([v for v in finite.values() if v.size] or [np.zeros(1)])
    lo, hi = float(allv.min()), float(allv.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    frames = []
    for name, v in finite.items():
        counts, _ = np.histogram(v, bins=edges)
        frames.append(pd.DataFrame({"network": name, "from": edges[:-1], "to": edges[1:], "count": counts}))
    df = pd.concat(frames, ignore_index=True)
    # independent y scales: a zeroed layer puts every weight in one bin and would flatten the others
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("from:Q", bin="binned", title="weight"), x2="to:Q", y=alt.Y("count:Q"),
        tooltip=["network", alt.Tooltip("from:Q", format=".3f"), alt.Tooltip("to:Q", format=".3f"), "count"],
    ).properties(width=230, height=180).facet(column=alt.Column("network:N", sort=list(weights), title=None)).resolve_scale(y="independent")


def image_grid(x: torch.Tensor) -> list[np.ndarray]:
    """Images in [0, 1] as 2-D arrays for ``st.image`` (first channel; flat 784 vectors become 28×28)."""
    out = []
    for img in x:
        a = img.detach().float()
        a = a[0] if a.dim() == 3 else a
        if a.dim() == 1:
            side = int(round(a.numel() ** 0.5))
            a = a.reshape(side, -1) if side * side == a.numel() else a.reshape(1, -1)
        out.append(a.clamp(0, 1).numpy())
    return out


def accuracy_table(rows: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
