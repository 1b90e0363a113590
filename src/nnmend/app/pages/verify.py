"""Verify: read a VNN-LIB property (bundled ACAS Xu or uploaded) or pose local robustness, and check
it on a network; the verdict comes from :func:`nnmend.properties.check` (sound bounds + search)."""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import probe, workbench

PAGE = PageSpec("Verify", section="Evaluate", order=61, icon=":material/verified:", summary="property checks: verdict and counterexample")
SOURCES = ("ACAS Xu network (bundled)", "session network")


def _checker_available() -> bool:
    return importlib.util.find_spec("nnmend.properties") is not None


def _read_upload(name: str, data: bytes, n_inputs: int | None, n_outputs: int | None):
    from nnmend.io.vnnlib import read_vnnlib

    from nnmend.errors import NnmendError

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(name).name
        path.write_bytes(data)
        try:
            return read_vnnlib(path, n_inputs=n_inputs, n_outputs=n_outputs)
        except NnmendError as exc:  # name the upload, not the temporary copy
            raise type(exc)(str(exc).replace(str(path), path.name)) from None


def _summary(spec) -> None:
    """What the property says: its input boxes and unsafe output sets."""
    st.caption(f"{len(spec.regions)} input region(s), {spec.n_inputs} inputs, {spec.n_outputs} outputs; "
               "the property is violated iff some input in a region reaches its unsafe output set")
    r = spec.regions[0]
    if spec.n_inputs <= 20:
        st.dataframe([{"input": f"X_{i}", "lower": float(r.lo[i]), "upper": float(r.hi[i])} for i in range(spec.n_inputs)],
                     hide_index=True, key="verify_box")
    for A, b in r.unsafe[:4]:
        rows = [" + ".join(f"{float(a):g}·Y_{j}" for j, a in enumerate(row) if float(a) != 0) + f" ≤ {float(c):g}"
                for row, c in zip(A, b)]
        st.code(" and ".join(rows) or "true", language=None)
    if len(r.unsafe) > 4:
        st.caption(f"… {len(r.unsafe) - 4} more unsafe disjunct(s)")


def render() -> None:
    wb = workbench()
    st.title("Verify")
    src = st.radio("network", SOURCES, horizontal=True, key="verify_source")
    prop, prop_label = None, ""
    if src == SOURCES[0]:
        from nnmend.acasxu import acasxu, acasxu_properties

        c = st.columns(3)
        i = c[0].selectbox("previous advisory i", [1, 2, 3, 4, 5], key="verify_i")
        j = c[1].selectbox("τ index j", list(range(1, 10)), key="verify_j")
        props = acasxu_properties()
        choice = c[2].selectbox("property", [f"prop_{k}" for k in props] + ["upload"], key="verify_prop")
        label, net = f"ACAS Xu {i}_{j}", None
        with w.guard(f"Loading ACAS Xu {i}_{j}"):
            net = acasxu(int(i), int(j))
        w.acts_on(label, "checks")
        n_in, n_out = 5, 5
    else:
        w.need_model(wb)
        label, net = w.network_select(wb, "session network", "verify_network", prefer="latest")
        choice = st.selectbox("property", ["local robustness", "upload"], key="verify_prop_session")
        n_in, n_out = None, None
    if choice == "upload":
        up = st.file_uploader("VNN-LIB property", type=["vnnlib"], key="verify_upload")
        if up is None:
            st.stop()
        with w.guard(f"Reading {up.name}"):
            spec = _read_upload(up.name, up.getvalue(), n_in, n_out)
            _summary(spec)
            prop = ("vnnlib", spec)
            prop_label = up.name
    elif choice == "local robustness":
        c = st.columns(2)
        idx = c[0].number_input("test input #", 0, 9999, 0, key="verify_input")
        eps = c[1].number_input("ε (L∞)", 0.0, 1.0, 0.01, format="%.4f", key="verify_eps")
        x, y = probe(wb, int(idx) + 1)
        prop = ("robustness", (x[int(idx)], float(eps), int(y[int(idx)])))
        prop_label = f"ε = {float(eps):g} around test input #{int(idx)} (label {int(y[int(idx)])})"
        st.caption(f"every input within ε = {float(eps):g} of test input #{int(idx)} must keep label {int(y[int(idx)])}")
    else:
        from nnmend.acasxu import acasxu_property_path
        from nnmend.io.vnnlib import read_vnnlib

        with w.guard(f"Reading {choice}"):
            spec = read_vnnlib(acasxu_property_path(int(choice.split("_")[1])), n_inputs=5, n_outputs=5)
            _summary(spec)
            prop = ("vnnlib", spec)
            prop_label = choice
    if prop is None or net is None:
        return
    if not _checker_available():
        st.info("Property checking arrives with `nnmend.properties` (bounds); this build can only read properties.")
        return
    from nnmend import properties

    kind, data = prop
    p = properties.SafetyProperty(list(data.regions), data.source) if kind == "vnnlib" else properties.LocalRobustness(*data)
    if src == SOURCES[1]:     # the session's property: the generic repair page poses problems from it
        wb.prop = {"kind": "region" if kind == "vnnlib" else "robustness", "label": prop_label, "property": p}
        st.caption(f"session property: **{prop_label}** (the Repair page can repair towards it)")
    timeout = st.number_input("timeout (s)", 1.0, 600.0, 30.0, key="verify_timeout")
    if st.button("Check", key="verify_run", type="primary", disabled=w.busy("verify")):
        with w.guard("Property check"):
            w.start_job("verify", f"check on {label}", properties.check, net, p, float(timeout))
    job = w.job_panel("verify")
    if job is not None:
        wb.verify = {"network": label, "result": job.value}
        wb.events.append(f"verify: {label}: {job.value.status} in {job.value.seconds:.1f} s")
    if wb.verify is None:
        return
    r = wb.verify["result"]
    text = f"verdict on {wb.verify['network']}: **{r.status}** ({r.seconds:.1f} s)"
    {"verified": st.success, "falsified": st.warning}.get(r.status, st.info)(text)
    if r.counterexample is not None:
        x, y = r.counterexample
        st.caption("counterexample (input, output)")
        st.dataframe([{"input": [round(float(v), 6) for v in x.flatten()[:20]],
                       "output": [round(float(v), 6) for v in y.flatten()]}], hide_index=True)
    with st.expander("search statistics"):
        st.json(r.stats, expanded=False)


if __name__ == "__main__":
    render()
