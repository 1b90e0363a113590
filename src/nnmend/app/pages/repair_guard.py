"""Repair · Output guard: make a region property of a bundled ACAS Xu network hold by construction — one
output is lowered just enough inside the property's box, the network is bit-identical outside it — and
prove it on the saved network (not a method of the papers: the baseline the provable repairs must beat)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec

PAGE = PageSpec("Output guard", section="Repair", order=47, icon=":material/shield:",
                requires=("nnmend.repair.guard",), summary="provable output guard for ACAS Xu region properties")
KEY = "guard"


def _run(i: int, j: int, k: int, margin: float, timeout: float) -> dict:
    """Guard network i_j for property k, then measure it on the saved network (the page shows this record)."""
    import torch

    from nnmend.acasxu import acasxu, acasxu_property_path
    from nnmend.properties import nnet_domain, read_property
    from nnmend.repair import run
    from nnmend.repair.guard import GuardConfig, GuardProblem

    net, prop = acasxu(i, j), read_property(acasxu_property_path(k))
    res = run("guard", net, GuardProblem(prop), GuardConfig(margin=margin, certify_timeout=timeout, check_first=0),
              precheck_timeout=min(timeout, 30.0), attack=False)
    lo, hi = nnet_domain(net)
    x = (lo + torch.rand(5000, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * (hi - lo)).float()
    box = prop.boxes(5)[0]
    with torch.no_grad():
        same = (net(x) == res.network(x)).all(1)
    far = ((box.lo.float() - x).clamp_min(0) + (x - box.hi.float()).clamp_min(0)).sum(1) > res.details["band"]
    return {"network": f"ACAS Xu {i}_{j}", "property": f"prop_{k}", "before": res.before["status"], "result": res,
            "exact_outside": float(same[far].float().mean()) if far.any() else float("nan"), "far_points": int(far.sum())}


def render() -> None:
    st.title("Repair · Output guard")
    st.caption(" ".join(__doc__.split(":", 1)[1].split()))
    from nnmend.acasxu import acasxu_properties

    c = st.columns(3)
    i = c[0].selectbox("previous advisory i", [1, 2, 3, 4, 5], index=1, key="guard_i")
    j = c[1].selectbox("τ index j", list(range(1, 10)), index=8, key="guard_j")
    k = c[2].selectbox("property", sorted(acasxu_properties()), index=sorted(acasxu_properties()).index(8), key="guard_prop")
    c2 = st.columns(2)
    margin = c2[0].number_input("margin ε (output units)", 1e-6, 1.0, 1e-4, format="%.6f", key="guard_margin")
    timeout = c2[1].number_input("proof timeout (s)", 5.0, 600.0, 60.0, key="guard_timeout")
    if st.button("Guard and prove", key="guard_run", type="primary", disabled=w.busy(KEY)):
        w.start_job(KEY, f"guard ACAS Xu {i}_{j} prop_{k}", _run, int(i), int(j), int(k), float(margin), float(timeout))
    job = w.job_panel(KEY)
    if job is not None:
        st.session_state["guard_record"] = job.value
    rec = st.session_state.get("guard_record")
    if rec is None:
        return
    res = rec["result"]
    st.subheader(f"Result: {rec['network']}, {rec['property']}")
    st.caption(f"original network: {rec['before']} (the property's verdict before the guard)")
    cols = st.columns(3)
    cols[0].metric("fidelity drawdown", f"{res.metrics['fdd']:.2f}%", help="advisories (argmin) changed on uniform "
                   "domain samples where the original satisfies the property (nnmend.metrics.property_fdd)")
    cols[1].metric("bit-identical outside the box", f"{100 * rec['exact_outside']:.2f}%",
                   help=f"of the {rec['far_points']} samples farther than the band from the property's box")
    cols[2].metric("parameters added", f"{res.details['parameters_added']}")
    (st.success if res.success else st.warning)(res.verdict)
    w.certificate(res.verified)
    with st.expander("details"):
        st.json({"seconds": round(res.seconds, 3), "targets": res.details["targets"],
                 "certificate": res.certificate, "metrics": res.metrics, "margin": res.details["margin"], "band": res.details["band"]},
                expanded=False)


if __name__ == "__main__":
    render()
