"""Repair · ProRepair: point-wise provable repair by proxy boxes in feature space — each wrongly
classified input gets a box of features the frozen head provably maps to its label, and the
feature extractor is edited until the input's features lie in it (Ma et al., CCS 2025; paper 003)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("ProRepair", section="Repair", order=45, icon=":material/select_all:",
                requires=("nnmend.repair.prorepair",), summary="proxy-box repair of misclassified inputs (ProRepair)")
TITLE = "ProRepair"


def render() -> None:
    import torch

    from nnmend.repair import prorepair, run

    wb = workbench()
    st.title("Repair · ProRepair")
    st.caption(" ".join(__doc__.split(":", 1)[1].split()))
    w.need_model(wb)
    label, net = w.network_select(wb, "network to repair", "prorepair_network")
    n_pool = st.number_input("repair pool: first N training images (misclassified ones are repaired, "
                             "correct ones preserved)", 100, 60000, 2000, step=500, key="prorepair_n")
    names = [n for n, _ in net.named_children()] if isinstance(net, torch.nn.Sequential) else []
    cfg = w.config_form(prorepair.ProRepairConfig, "prorepair",
                        ("split_layer", "lr", "steps", "max_rounds", "preserve_weight", "preserve", "proxy_margin", "seed"),
                        choices={"split_layer": [None] + names[1:], "preserve": ["decisions", "labels"]},
                        tips={"split_layer": "first layer of the frozen head g; empty = the last Linear (closed-form boxes)",
                              "preserve": "decisions: keep the original's decisions; labels: cross-entropy on true labels"})
    if st.button("Repair", key="prorepair_run", type="primary", disabled=w.busy("prorepair")):
        with w.guard("ProRepair"):
            pool = wb.train_data().subset(int(n_pool))
            with torch.no_grad():
                wrong = net.eval()(pool.x).argmax(1) != pool.y
            problem = prorepair.PointProblem(pool.x[wrong], pool.y[wrong], pool.x[~wrong][:1000], pool.y[~wrong][:1000])
            w.start_repair(wb, "prorepair", TITLE, label, net, lambda: run("prorepair", net, problem, cfg),
                           note=f"{int(wrong.sum())} misclassified of the first {int(n_pool)} training images")
    rec = w.collect_repair(wb, "prorepair", TITLE)
    if rec is not None:
        _verdict(rec.result)
        w.show_repair(rec, wb.n_eval)


def _verdict(result) -> None:
    """The harness's verdict first (nnmend.repair.run decides success, not the method)."""
    if result.verdict:
        (st.success if result.success else st.warning)(result.verdict)


if __name__ == "__main__":
    render()
