"""The workbench's entry script (``nnmend app`` runs ``streamlit run`` on this file).

It builds the navigation from :mod:`nnmend.app.registry` and lets Streamlit run the chosen page.
"""
from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this folder first on sys.path; make sure `nnmend` is the package this file belongs to.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from nnmend import __version__  # noqa: E402
from nnmend.app import registry  # noqa: E402
from nnmend.app.state import workbench  # noqa: E402
from nnmend.app.widgets import model_badge  # noqa: E402

st.set_page_config(page_title="nnmend workbench", page_icon="🩹", layout="wide")

entries = registry.discover()
sections: dict[str, list] = {}
for e in entries:
    if e.available:
        page = st.Page(str(e.path), title=e.spec.title, icon=e.spec.icon, url_path=e.url_path,
                       default=(e.name == "model"))
        sections.setdefault(e.spec.section, []).append(page)
nav = st.navigation(sections)

st.sidebar.markdown(f"**nnmend {__version__}** workbench")
model_badge(workbench())
missing = [e for e in entries if not e.available]
if missing:
    with st.sidebar.expander(f"{len(missing)} method page(s) not available yet"):
        for e in missing:
            st.caption(f"{e.spec.title}: needs `{', '.join(e.missing)}`")
nav.run()
