"""Repair · Output guard: make a region property of any network hold by construction — one output is
lowered just enough inside the property's box, the network is bit-identical outside it — and prove it
on the saved network (not a method of the papers: the baseline the provable repairs must beat).

Kept beside the generic Repair page because it shows what that page cannot: how much of the input
domain away from the box the guarded network leaves bit-identical, and it takes networks the session
does not hold (a bundled ACAS Xu network or an uploaded .onnx / .nnet without a data set). The repair
itself runs through the harness (:func:`nnmend.repair.run`)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st
import torch

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("Output guard", section="Repair", order=47, icon=":material/shield:",
                requires=("nnmend.repair.guard",), summary="provable output guard for any network and region property")
KEY = "guard"
NETWORKS = ("ACAS Xu network (bundled)", "session network", "upload (.onnx / .nnet)")
PROPERTIES = ("ACAS Xu property (bundled)", "session property", "upload (.vnnlib)")


def _run(net, label: str, prop, prop_label: str, domain, shape: tuple[int, ...], margin: float, timeout: float) -> dict:
    """Guard ``net`` for ``prop``, then measure it on the saved network (the page shows this record)."""
    from nnmend.repair import run
    from nnmend.repair.guard import GuardConfig, GuardProblem

    res = run("guard", net, GuardProblem(prop, domain=domain), GuardConfig(margin=margin, certify_timeout=timeout, check_first=0),
              precheck_timeout=min(timeout, 30.0), attack=False)
    lo, hi = domain if domain is not None else _nnet_domain(net)
    n = lo.numel()
    x = (lo + torch.rand(5000, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * (hi - lo)).float()
    box = prop.boxes(res.network(x[:1].reshape(1, *shape)).shape[-1])[0]
    with torch.no_grad():
        same = (net(x.reshape(-1, *shape)) == res.network(x.reshape(-1, *shape))).all(1)
    far = ((box.lo.float() - x).clamp_min(0) + (x - box.hi.float()).clamp_min(0)).sum(1) > res.details.get("band", 0.0)
    return {"network": label, "property": prop_label, "before": res.before.get("status"), "result": res,
            "exact_outside": float(same[far].float().mean()) if far.any() else float("nan"), "far_points": int(far.sum())}


def _nnet_domain(net):
    from nnmend.properties import nnet_domain

    return nnet_domain(net)


def _upload(up, read):
    """Read an uploaded file through ``read(path)``, naming the upload (not the temporary copy) in errors."""
    from nnmend.errors import NnmendError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(up.name).name
        path.write_bytes(up.getvalue())
        try:
            return read(path)
        except NnmendError as exc:
            raise type(exc)(str(exc).replace(str(path), path.name)) from None


def _network(wb):
    """``(label, network, input shape)`` from the chosen source, or None (the page says why)."""
    src = st.radio("network", NETWORKS, horizontal=True, key="guard_source")
    if src == NETWORKS[0]:
        from nnmend.acasxu import acasxu

        c = st.columns(2)
        i = c[0].selectbox("previous advisory i", [1, 2, 3, 4, 5], index=1, key="guard_i")
        j = c[1].selectbox("τ index j", list(range(1, 10)), index=8, key="guard_j")
        w.acts_on(f"ACAS Xu {i}_{j}", "guards")
        return f"ACAS Xu {i}_{j}", acasxu(int(i), int(j)), (5,)
    if src == NETWORKS[1]:
        w.need_model(wb)
        label, net = w.network_select(wb, "session network", "guard_network", prefer="latest")
        return label, net, wb.input_shape()
    up = st.file_uploader("network file", type=["onnx", "nnet"], key="guard_upload")
    if up is None:
        return None
    from nnmend.io import load_network

    net = _upload(up, load_network)
    shape = tuple((getattr(net, "nnmend_meta", {}) or {}).get("input_shape") or ())
    w.acts_on(up.name, "guards")
    return up.name, net, shape


def _property(wb, n_inputs: int):
    """``(label, SafetyProperty)`` from the chosen source, or None (the page says why)."""
    from nnmend.properties import read_property

    src = st.radio("property", PROPERTIES, horizontal=True, key="guard_prop_source")
    if src == PROPERTIES[0]:
        from nnmend.acasxu import acasxu_properties

        ks = sorted(acasxu_properties())
        k = st.selectbox("property", ks, index=ks.index(8), key="guard_prop", format_func=lambda k: f"prop_{k}")
        return f"prop_{k}", read_property(acasxu_properties()[k], n_inputs=n_inputs)
    if src == PROPERTIES[1]:
        if wb.prop is None or wb.prop["kind"] != "region":
            st.info("No session property: read a VNN-LIB property for a session network on the **Verify** page.")
            return None
        return wb.prop["label"], wb.prop["property"]
    up = st.file_uploader("VNN-LIB property", type=["vnnlib"], key="guard_prop_upload")
    if up is None:
        return None
    return up.name, _upload(up, lambda p: read_property(p, n_inputs=n_inputs))


def render() -> None:
    import math

    wb = workbench()
    st.title("Repair · Output guard")
    st.caption(" ".join(__doc__.split("\n\n")[0].split(":", 1)[1].split()))
    with w.guard("Loading the network"):
        got = _network(wb)
    if not got:
        return
    label, net, shape = got
    if not shape:
        st.warning(f"{label} records no input shape; upload it as ONNX with a fixed input shape")
        return
    n_inputs = math.prod(shape)
    with w.guard("Reading the property"):
        prop = _property(wb, n_inputs)
    if not prop:
        return
    prop_label, spec = prop
    domain = None
    if _nnet_domain(net) is None:
        c = st.columns(2)
        lo = c[0].number_input("input domain: lower bound of every input", value=0.0, format="%.6g", key="guard_lo")
        hi = c[1].number_input("input domain: upper bound of every input", value=1.0, format="%.6g", key="guard_hi")
        st.caption("outside the property's box and inside this domain the guarded network equals the original exactly "
                   "(an .nnet header gives ACAS Xu's domain)")
        domain = tuple(torch.full((n_inputs,), float(v), dtype=torch.float64) for v in (lo, hi))
    c2 = st.columns(2)
    margin = c2[0].number_input("margin ε (output units)", 1e-6, 1.0, 1e-4, format="%.6f", key="guard_margin")
    timeout = c2[1].number_input("proof timeout (s)", 5.0, 600.0, 60.0, key="guard_timeout")
    if st.button("Guard and prove", key="guard_run", type="primary", disabled=w.busy(KEY)):
        w.start_job(KEY, f"guard {label} {prop_label}", _run, net, label, spec, prop_label, domain, shape,
                    float(margin), float(timeout))
    job = w.job_panel(KEY)
    if job is not None:
        st.session_state["guard_record"] = job.value
    rec = st.session_state.get("guard_record")
    if rec is None:
        return
    res = rec["result"]
    st.subheader(f"Result: {rec['network']}, {rec['property']}")
    w.verdict(res)
    st.caption(f"original network: {rec['before']} (the property's verdict before the guard)")
    cols = st.columns(3)
    cols[0].metric("fidelity drawdown", f"{res.metrics['fdd']:.2f}%", help="advisories (argmin) changed on uniform "
                   "domain samples where the original satisfies the property (nnmend.metrics.property_fdd)")
    cols[1].metric("bit-identical outside the box", f"{100 * rec['exact_outside']:.2f}%",
                   help=f"of the {rec['far_points']} samples farther than the band from the property's box")
    cols[2].metric("parameters added", f"{res.details['parameters_added']}")
    w.certificate(res.verified)
    with st.expander("details"):
        st.json({"seconds": round(res.seconds, 3), "targets": res.details["targets"],
                 "certificate": res.certificate, "metrics": res.metrics, "margin": res.details["margin"],
                 "band": res.details["band"]},
                expanded=False)


if __name__ == "__main__":
    render()
