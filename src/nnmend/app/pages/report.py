"""Report: download a network (checkpoint, ONNX) and the session's report (JSON, Markdown)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import Workbench, workbench

PAGE = PageSpec("Report", section="Evaluate", order=90, icon=":material/description:", summary="downloads: network and report")
FILES_KEY = "nnmend_downloads"


def session_report(wb: Workbench):
    """The session as an :class:`nnmend.report.Report`: one row per network, the log as notes."""
    from nnmend.report import Report

    rep = Report(f"nnmend workbench: {wb.model_label} on {wb.dataset}",
                 columns=["network", "step", "accuracy", "before", "seconds", "verified"])
    rep.add_row({"network": "original", "step": "load", "accuracy": wb.clean_accuracy})
    if wb.damaged is not None:
        rep.add_row({"network": "damaged", "step": "damage", "accuracy": wb.damaged_accuracy, "before": wb.clean_accuracy,
                     "fault": wb.fault.to_dict()})
    for title, rec in wb.repairs.items():
        rep.add_row({"network": f"repaired: {title}", "step": f"repair ({rec.result.method}) of {rec.source}",
                     "accuracy": rec.after["accuracy"], "before": rec.before["accuracy"], "seconds": round(rec.result.seconds, 2),
                     "verified": rec.result.verified, "figures_before": rec.before, "figures_after": rec.after,
                     "details": rec.result.details, "note": rec.note})
    if wb.diagnosis is not None:
        rep.extra["diagnosis"] = {"mode": wb.diagnosis_mode, **wb.diagnosis.to_dict()}
    if wb.attack is not None:
        rep.extra["attack"] = {k: wb.attack[k] for k in ("network", "attack", "n", "clean", "adversarial", "linf")}
    if wb.verify is not None:
        r = wb.verify["result"]
        rep.extra["verify"] = {"network": wb.verify["network"], "status": r.status, "seconds": r.seconds}
    rep.extra["evaluation_samples"] = wb.n_eval
    rep.notes = list(wb.events)
    return rep


def network_files(net, stem: str, input_shape: tuple[int, ...]) -> dict[str, bytes]:
    """The network as a weights-only checkpoint and as ONNX (checked against onnxruntime on export)."""
    from nnmend.io import save_network
    from nnmend.io.onnx import save_onnx

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_network(net, Path(tmp) / f"{stem}.pt")
        save_onnx(net, Path(tmp) / f"{stem}.onnx", input_shape=input_shape)
        for suffix in ("pt", "onnx"):
            out[f"{stem}.{suffix}"] = (Path(tmp) / f"{stem}.{suffix}").read_bytes()
    return out


def render() -> None:
    wb = workbench()
    st.title("Report")
    w.need_model(wb)
    label, net = w.network_select(wb, "network to download", "report_network")
    rep = session_report(wb)
    st.dataframe([{k: r.get(k) for k in rep.columns} for r in rep.rows], hide_index=True, key="report_table")
    if st.button("Prepare downloads", key="report_prepare", type="primary"):
        files = {}
        stem = label.replace("repaired: ", "repaired_").split(" (")[0].replace(" ", "_").lower()
        with w.guard(f"Saving {label}"):
            files.update(network_files(net, stem, wb.input_shape()))
        files["report.json"] = json.dumps(rep.to_dict(), indent=2, default=str).encode()
        files["report.md"] = rep.markdown().encode()
        st.session_state[FILES_KEY] = files
    files = st.session_state.get(FILES_KEY)
    if files:
        cols = st.columns(len(files))
        mime = {"pt": "application/octet-stream", "onnx": "application/octet-stream", "json": "application/json",
                "md": "text/markdown"}
        for col, (name, data) in zip(cols, files.items()):
            col.download_button(name, data, file_name=name, mime=mime[name.rsplit(".", 1)[1]], key=f"download_{name}",
                                on_click="ignore")
        with st.expander("report.md"):
            st.markdown(files["report.md"].decode())


if __name__ == "__main__":
    render()
