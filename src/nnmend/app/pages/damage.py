"""Damage: corrupt one layer (kind, fraction, pattern, seed) and compare its weights before and after."""
from __future__ import annotations

import streamlit as st

from nnmend.app import charts
from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("Damage", section="Network", order=20, icon=":material/broken_image:", summary="structural damage to one layer")


def render() -> None:
    from nnmend.corruption import KINDS, PATTERNS
    from nnmend.faults import damage
    from nnmend.nets import get_layer

    wb = workbench()
    st.title("Damage")
    w.need_model(wb)
    w.acts_on(f"original ({wb.model_label}); the damaged copy becomes the session's damaged network", "damages")
    c = st.columns(3)
    with c[0]:
        layer = w.layer_select(wb.model, "layer", "damage_layer",
                               default=wb.fault.layer if wb.fault is not None else None)
    kind = c[1].selectbox("kind", list(KINDS) + ["prune"], key="damage_kind",
                          help="SHNN: zero (weights and bias) or gaussian re-initialisation with σ = 0.1")
    fraction = c[2].slider("fraction of the layer's weights", 0.0, 1.0, 1.0, 0.01, key="damage_fraction")
    c = st.columns(3)
    pattern = c[0].selectbox("pattern", ["default"] + list(PATTERNS), key="damage_pattern",
                             help="default: all for fraction 1, scatter otherwise (magnitude for prune)")
    sigma = c[1].number_input("σ (gaussian)", 0.0, 10.0, 0.1, format="%.3f", key="damage_sigma")
    seed = c[2].number_input("seed", 0, 10**6, 0, key="damage_seed")
    if st.button("Damage", key="damage_run", type="primary"):
        with w.guard(f"Damaging {layer}"):
            net, fault = damage(wb.model, layer, kind, fraction=float(fraction),
                                pattern=None if pattern == "default" else pattern, sigma=float(sigma), seed=int(seed))
            wb.set_damaged(net, fault)

    if wb.damaged is None:
        return
    f = wb.fault
    c = st.columns(3)
    c[0].metric("clean accuracy", f"{100 * wb.clean_accuracy:.2f}%")
    c[1].metric("damaged accuracy", f"{100 * wb.damaged_accuracy:.2f}%",
                delta=f"{100 * (wb.damaged_accuracy - wb.clean_accuracy):+.2f} pts")
    c[2].metric("values changed", f"{f.n_changed} / {f.n_total}")
    st.caption(f"{f.kind} damage to **{f.layer}** (pattern {f.pattern}, fraction {f.fraction:g}, seed {f.seed}, "
               f"bias {'included' if f.include_bias else 'kept'})")
    st.altair_chart(charts.weight_histograms({"healthy": get_layer(wb.model, f.layer).weight,
                                              "damaged": get_layer(wb.damaged, f.layer).weight}))
    with st.expander("fault record"):
        st.json(f.to_dict())


if __name__ == "__main__":
    render()
