"""Repair · PatchPro: one patch per adversarial neighbourhood, trained with a sound CROWN safety distance
until every neighbourhood is proved, routed by an exact box indicator (Chi et al., ICSE 2025; paper 002)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("PatchPro", section="Repair", order=44, icon=":material/healing:", requires=("nnmend.repair.patchpro",),
                summary="provable patches for local robustness (PatchPro / AdvRepair)")
TITLE = "PatchPro"


def render() -> None:
    from nnmend.repair import patchpro, run
    from nnmend.repair.repair_sets import build_repair_set

    wb = workbench()
    st.title("Repair · PatchPro")
    st.caption(" ".join(__doc__.split(":", 1)[1].split()))
    w.need_model(wb)
    label, net = w.network_select(wb, "network to repair", "patchpro_network")
    c1, c2 = st.columns(2)
    n = c1.number_input("neighbourhoods to repair (n)", 1, 1000, 20, key="patchpro_n")
    radius = c2.selectbox("L∞ radius r", [0.05, 0.1, 0.3], index=1, key="patchpro_r")
    cfg = w.config_form(patchpro.PatchProConfig, "patchpro", ("lr", "max_epochs", "allocation", "feature_box", "seed"),
                        choices={"allocation": ["top2", "none"], "feature_box": ["bounds", "empirical"]},
                        tips={"allocation": "how inputs outside every repaired ball pick patches (paper: top2)",
                              "feature_box": "only used in feature-space mode; 'empirical' is NOT a proof"})
    if st.button("Repair", key="patchpro_run", type="primary", disabled=w.busy("patchpro")):
        with w.guard("PatchPro"):
            pool = wb.train_data()

            def call():
                rs = build_repair_set(net, pool, n=int(n), radius=float(radius), start=0, seed=cfg.seed,
                                      chunk=min(500, max(32, 4 * int(n))))
                return run("patchpro", net, rs, cfg)      # the harness proves, attacks and measures RSR / RGR / DSR

            w.start_repair(wb, "patchpro", TITLE, label, net, call,
                           note=f"{int(n)} PGD neighbourhoods of radius {radius} from the session's training data "
                                "(10 held-out adversarial samples each for RGR)")
    rec = w.collect_repair(wb, "patchpro", TITLE)
    if rec is not None:
        _verdict(rec.result)
        w.show_repair(rec, wb.n_eval)


def _verdict(result) -> None:
    """The harness's verdict first (nnmend.repair.run decides success, not the method)."""
    if result.verdict:
        (st.success if result.success else st.warning)(result.verdict)


if __name__ == "__main__":
    render()
