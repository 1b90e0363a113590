"""Report: download a network (checkpoint, ONNX), the session's report (JSON, Markdown), or the whole session
as one archive (networks weights-only, reports, figures: :mod:`nnmend.app.archive`)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.archive import session_archive, session_report
from nnmend.app.state import workbench

PAGE = PageSpec("Report", section="Evaluate", order=90, icon=":material/description:", summary="downloads: a network, the report, the whole session")
FILES_KEY = "nnmend_downloads"
ARCHIVE_KEY = "nnmend_archive"


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
    label, net = w.network_select(wb, "network to download", "report_network", prefer="latest")
    rep = session_report(wb)
    st.dataframe([{k: r.get(k) for k in rep.columns} for r in rep.rows], hide_index=True, key="report_table")
    if st.button("Prepare downloads", key="report_prepare", type="primary"):
        files = {}
        stem = w.file_stem(label)
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

    st.subheader("The whole session")
    st.caption("one zip: every network (weights only), report.json / .md / .html, the figures")
    if st.button("Prepare session archive", key="report_archive"):
        with w.guard("Writing the session archive"):
            st.session_state[ARCHIVE_KEY] = session_archive(wb)
    archive = st.session_state.get(ARCHIVE_KEY)
    if archive:
        data, names = archive
        st.download_button(f"download session (.zip, {len(names)} files, {len(data) / 1e6:.1f} MB)", data,
                           file_name="nnmend_session.zip", mime="application/zip", key="download_session", on_click="ignore")
        st.caption(", ".join(names))


if __name__ == "__main__":
    render()
