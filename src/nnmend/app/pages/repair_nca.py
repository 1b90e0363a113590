"""Repair · NCA: a neural cellular automaton trained on a layer's clean weights regenerates the
tampered weight grid, blind or with a trusted mask (Paladini, Tuba, Mariot; paper 001).

Kept beside the generic Repair page because the method needs a step that page cannot take: training
the rule on the clean layer (the rule then also serves the generic page), and it shows the layer's
weights before and after. The repair itself runs through the harness (:func:`nnmend.repair.run`)."""
from __future__ import annotations

import streamlit as st
from torch import nn

from nnmend.app import charts
from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("NCA", section="Repair", order=44, icon=":material/grid_on:", requires=("nnmend.repair.nca",),
                summary="regenerate tampered weights with a neural cellular automaton")
TITLE = "NCA"
MODES = ("blind", "informed (oracle mask from the recorded fault)")


def render() -> None:
    from nnmend.nets import get_layer, named_layers
    from nnmend.repair import nca, run

    wb = workbench()
    st.title("Repair · NCA")
    st.caption(" ".join(__doc__.split("\n\n")[0].split(":", 1)[1].split()))
    w.need_model(wb)
    rules = wb.artefacts.setdefault("nca_rules", {})

    st.subheader("1 · Train a rule on a clean layer")
    w.acts_on(f"original ({wb.model_label})", "trains the rule on")
    dense = [n for n, m in named_layers(wb.model).items() if isinstance(m, nn.Linear)]
    default = wb.fault.layer if wb.fault is not None and wb.fault.layer in dense else dense[0]
    layer = st.selectbox("layer", dense, index=dense.index(default), key="nca_layer")
    tcfg = w.config_form(nca.NCATrainConfig, "nca_train", ("iterations", "hidden_channels", "width", "seed"))
    if st.button("Train rule", key="nca_train_run", disabled=w.busy("nca_train")):
        with w.guard("NCA rule training"):
            net = wb.model
            images = wb.train_data().x[: tcfg.function_samples]  # for the function-space loss (default rule)
            w.start_job("nca_train", f"NCA rule for {layer}",
                        lambda: (layer, nca.train_rule(net, layer, tcfg, data=images)))
    job = w.job_panel("nca_train")
    if job is not None:
        trained_layer, (rule, hist) = job.value
        rules[trained_layer] = rule
        wb.events.append(f"NCA rule for {trained_layer}: {len(hist.loss)} iterations in {job.seconds:.0f} s")
    if rules:
        sizes = {n: nca.storage_bytes(r) for n, r in rules.items()}
        st.caption("trained rules: " + ", ".join(f"**{n}** ({s['rule_bytes']} bytes, {100 * s['overhead_fraction']:.1f}% "
                                                  "of the layer's weights)" for n, s in sizes.items()))

    st.subheader("2 · Repair the damaged network")
    w.need_damaged(wb)
    w.acts_on(f"damaged ({wb.fault.kind} {wb.fault.layer})", "repairs")
    if layer not in rules:
        st.info(f"No rule for {layer} yet: train one above.")
        return
    mode = st.radio("mode", MODES, horizontal=True, key="nca_mode",
                    help="blind: the rule must find the bad cells itself; informed: cells the fault left unchanged "
                         "are trusted (known here from the recorded fault; a deployment would use checksums)")
    rcfg = w.config_form(nca.NCARepairConfig, "nca_repair", ("steps", "average_last", "blind_strategy", "detect_threshold", "shrink",
                                                                    "seed"),
                         choices={"blind_strategy": ("cross_check", "rule", "none")})
    if st.button("Repair", key="nca_run", type="primary", disabled=w.busy("nca")):
        with w.guard("NCA repair"):
            mask = None
            if mode != MODES[0]:
                mask = get_layer(wb.damaged, layer).weight.detach() == get_layer(wb.model, layer).weight.detach()
            problem = nca.NCAProblem(layer, rules[layer], mask)
            damaged, test = wb.damaged, wb.test_data()
            w.start_repair(wb, "nca", TITLE, f"damaged ({wb.fault.kind} {wb.fault.layer})", damaged,
                           lambda: run("nca", damaged, problem, rcfg, test=test), note=f"mode: {mode}")
    rec = w.collect_repair(wb, "nca", TITLE)
    if rec is None:
        return
    w.show_repair(rec, wb.n_eval, key="nca")
    st.altair_chart(charts.weight_histograms({"healthy": get_layer(wb.model, layer).weight,
                                              "damaged": get_layer(wb.damaged, layer).weight,
                                              "repaired": get_layer(rec.result.network, layer).weight}))


if __name__ == "__main__":
    render()
