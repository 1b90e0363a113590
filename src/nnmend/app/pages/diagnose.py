"""Diagnose: per-layer MAD / MSE against the healthy network, the localised layer, activation heat-maps."""
from __future__ import annotations

import streamlit as st

from nnmend.app import charts
from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import probe, workbench

PAGE = PageSpec("Diagnose", section="Network", order=30, icon=":material/troubleshoot:", summary="where is the network hurt?")
MODES = ("structural: original vs damaged network", "adversarial: clean vs attacked inputs")


def render() -> None:
    from nnmend.diagnose import RULES, diagnose, trace

    wb = workbench()
    st.title("Diagnose")
    w.need_model(wb)
    mode = st.radio("what to diagnose", MODES, index=0 if wb.damaged is not None else 1, key="diag_mode")
    structural = mode == MODES[0]
    if structural and wb.damaged is None:
        st.info("Nothing is damaged yet: damage a layer on the **Damage** page, or diagnose adversarial inputs.")
        st.stop()
    w.acts_on(f"original ({wb.model_label}) vs damaged ({wb.fault.kind} {wb.fault.layer})" if structural
              else f"original ({wb.model_label}), clean vs attacked inputs", "compares")
    c = st.columns(4)
    n = c[0].number_input("probe inputs (first N test images)", 1, 10000, 100, key="diag_n",
                          help="SHNN localises on the first 100 test images")
    metric = c[1].selectbox("metric", ["mad", "mse"], index=0 if structural else 1, key=f"diag_metric_{int(structural)}")
    rule = c[2].selectbox("rule", RULES, index=RULES.index("first" if structural else "peak"), key=f"diag_rule_{int(structural)}")
    threshold = c[3].number_input("threshold", 0.0, 100.0, 0.1, format="%.3f", key="diag_threshold")
    spec = None if structural else w.attack_options("diag", detailed=False)
    if st.button("Diagnose", key="diag_run", type="primary"):
        with w.guard("Diagnosis"):
            x, y = probe(wb, int(n))
            if structural:
                d, adv = diagnose(wb.model, wb.damaged, x, metric=metric, rule=rule, threshold=float(threshold)), None
            else:
                adv = spec.run(wb.model, x, y)
                d = diagnose(wb.model, wb.model, x, x_other=adv, metric=metric, rule=rule, threshold=float(threshold))
            wb.diagnosis, wb.diagnosis_mode, wb.probe_adv = d, "structural" if structural else "adversarial", adv
            wb.events.append(f"diagnose ({wb.diagnosis_mode}, {metric}, rule {rule}): localised {d.localized}")

    d = wb.diagnosis
    if d is None:
        return
    true_layer = wb.fault.layer if wb.diagnosis_mode == "structural" and wb.fault is not None else None
    if d.localized is None:
        st.warning(f"no layer exceeds the threshold ({d.metric.upper()} > {d.threshold:g}): nothing localised")
    else:
        score = (d.mad if d.metric == "mad" else d.mse)[d.localized]
        st.success(f"localised layer: **{d.localized}** ({d.metric.upper()} {score:.4f}; {wb.diagnosis_mode}, rule {d.rule}, "
                   f"threshold {d.threshold:g}, {d.n_samples} probe inputs)" + (f"; damaged layer: {true_layer}" if true_layer else ""))
    c = st.columns(2)
    for col, name, scores in ((c[0], "mad", d.mad), (c[1], "mse", d.mse)):
        col.altair_chart(charts.layer_bars(scores, metric=name, localized=d.localized,
                                           threshold=d.threshold if name == d.metric else None, true_layer=true_layer))
    st.dataframe([{"layer": n, "MAD": d.mad[n], "MSE": d.mse[n], "localised": n == d.localized} for n in d.mad],
                 hide_index=True, key="diag_table")

    st.subheader("Activations for one input")
    idx = st.number_input("test input #", 0, d.n_samples - 1, 0, key="diag_input")
    x, y = probe(wb, d.n_samples)
    xi = x[int(idx): int(idx) + 1]
    traces = {}
    with w.guard("Tracing activations"):
        if wb.diagnosis_mode == "structural":
            traces["original"] = trace(wb.model, xi)
            traces["damaged"] = trace(wb.damaged, xi)
            for title, rec in wb.repairs.items():
                if rec.source.startswith("damaged"):
                    traces[f"repaired: {title}"] = trace(rec.result.network, xi)
        else:
            xa = wb.probe_adv[int(idx): int(idx) + 1]
            traces["original, clean input"] = trace(wb.model, xi)
            traces["original, adversarial input"] = trace(wb.model, xa)
            for title, rec in wb.repairs.items():
                if rec.source == "original":
                    traces[f"repaired: {title}, adversarial input"] = trace(rec.result.network, xa)
        c = st.columns([1, 5])
        images = charts.image_grid(xi)
        c[0].image(images[0], caption=f"input #{int(idx)} (label {int(y[int(idx)])})", width=120, clamp=True)
        if wb.diagnosis_mode == "adversarial":
            c[0].image(charts.image_grid(xa)[0], caption="adversarial", width=120, clamp=True)
        traces = {k: {layer: a[0] for layer, a in v.items()} for k, v in traces.items()}
        c[1].altair_chart(charts.activation_heatmaps(traces))


if __name__ == "__main__":
    render()
