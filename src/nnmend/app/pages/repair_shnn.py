"""Repair · SHNN patch: replace the damaged layer by a fresh patch trained to reproduce the healthy
layer's activations (or the task labels), everything else frozen (paper 000, Sec. III-C).

Kept beside the generic Repair page because it shows what that page cannot: the healed layer's weights
next to the healthy and damaged ones. It runs through the same harness (:func:`nnmend.repair.run`)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import charts
from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("SHNN patch", section="Repair", order=40, icon=":material/healing:", requires=("nnmend.repair.patch_layer",),
                summary="heal a damaged layer with a trained patch (SHNN)")
TITLE = "SHNN patch"


def render() -> None:
    from nnmend.nets import get_layer
    from nnmend.repair import run
    from nnmend.repair.adapters import StructuralProblem
    from nnmend.repair.patch_layer import PatchConfig

    wb = workbench()
    st.title("Repair · SHNN patch")
    st.caption(" ".join(__doc__.split("\n\n")[0].split(":", 1)[1].split()))
    w.need_damaged(wb)
    w.acts_on(f"damaged ({wb.fault.kind} {wb.fault.layer})", "repairs")
    default = wb.diagnosis.localized if wb.diagnosis_mode == "structural" and wb.diagnosis is not None else None
    base = PatchConfig()
    c = st.columns(3)
    with c[0]:
        layer = w.layer_select(wb.damaged, "layer to patch", "shnn_layer", default=default or wb.fault.layer)
    target = c[1].selectbox("target", ["activation", "task"], key="shnn_target",
                            help="activation: match the healthy layer's activations (the paper); task: cross-entropy")
    init = c[2].selectbox("initialisation", ["lstsq", "random"], key="shnn_init")
    c = st.columns(4)
    n_samples = c[0].number_input("training samples", 100, 60000, base.n_samples, step=1000, key="shnn_n")
    epochs = c[1].number_input("epochs", 1, 200, base.epochs, key="shnn_epochs")
    lr = c[2].number_input("learning rate", 1e-5, 1.0, base.lr, format="%.5f", key="shnn_lr")
    seed = c[3].number_input("seed", 0, 10**6, base.seed, key="shnn_seed")
    st.caption(f"localised layer: {default or '(not diagnosed)'}; damaged layer: {wb.fault.layer}")
    if st.button("Heal", key="shnn_run", type="primary", disabled=w.busy("shnn")):
        with w.guard("SHNN patch"):
            cfg = PatchConfig(target=target, init=init, n_samples=int(n_samples), epochs=int(epochs), lr=float(lr), seed=int(seed))
            damaged, train, reference, test = wb.damaged, wb.train_data(), wb.model, wb.test_data()
            w.start_repair(wb, "shnn", TITLE, f"damaged ({wb.fault.kind} {wb.fault.layer})", damaged,
                           lambda: run("shnn", damaged, StructuralProblem(layer, train, reference), cfg, test=test))
    rec = w.collect_repair(wb, "shnn", TITLE)
    if rec is None:
        return
    w.show_repair(rec, wb.n_eval, key="shnn")
    healed_layer = rec.result.details.get("layer")
    st.caption(f"clean accuracy {100 * wb.clean_accuracy:.2f}% · patched layer **{healed_layer}**")
    if healed_layer:
        st.altair_chart(charts.weight_histograms({"healthy": get_layer(wb.model, healed_layer).weight,
                                                  "damaged": get_layer(wb.damaged, healed_layer).weight,
                                                  "healed": get_layer(rec.result.network, healed_layer).weight}))


if __name__ == "__main__":
    render()
