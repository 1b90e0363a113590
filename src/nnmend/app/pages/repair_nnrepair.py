"""Repair · NNrepair: per-label experts that localise faulty neurons by activation patterns and solve
linear repair constraints on their weights with HiGHS (Usman et al., CAV 2021; paper 004)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("NNrepair", section="Repair", order=43, icon=":material/function:", requires=("nnmend.repair.constraint",),
                summary="constraint-based repair with activation patterns (NNrepair)")
TITLE = "NNrepair"


def render() -> None:
    from nnmend.nets import named_layers
    from nnmend.repair import constraint, run

    wb = workbench()
    st.title("Repair · NNrepair")
    st.caption(" ".join(__doc__.split(":", 1)[1].split()))
    w.need_model(wb)
    label, net = w.network_select(wb, "network to repair", "nnrepair_network")
    n_pool = st.number_input("repair pool: first N training images (true labels)", 100, 60000, 10000, step=1000,
                             key="nnrepair_n")
    cfg = w.config_form(
        constraint.NNRepairConfig, "nnrepair",
        ("layer", "mode", "objective", "strategy", "edge_fraction", "passing_extra", "time_limit", "seed"),
        choices={"layer": ["intermediate", "last"] + list(named_layers(net)),
                 "mode": constraint.config.MODES, "objective": constraint.config.OBJECTIVES,
                 "strategy": constraint.config.STRATEGIES},
        tips={"layer": "intermediate: the weight layer before the last (the paper's choice)",
              "mode": "auto: hard LP on an intermediate layer, MaxSAT (MILP) on the last"})
    if st.button("Repair", key="nnrepair_run", type="primary", disabled=w.busy("nnrepair")):
        with w.guard("NNrepair"):
            pool = wb.train_data().subset(int(n_pool))
            problem = constraint.RepairProblem(pool.x, pool.y)
            w.start_repair(wb, "nnrepair", TITLE, label, net, lambda: run("nnrepair", net, problem, cfg, test=wb.test_data()),
                           note=f"repair pool: first {int(n_pool)} training images")
    rec = w.collect_repair(wb, "nnrepair", TITLE)
    if rec is not None:
        _verdict(rec.result)
        w.show_repair(rec, wb.n_eval)


def _verdict(result) -> None:
    """The harness's verdict first (nnmend.repair.run decides success, not the method)."""
    if result.verdict:
        (st.success if result.success else st.warning)(result.verdict)


if __name__ == "__main__":
    render()
