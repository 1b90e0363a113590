"""The Streamlit workbench: every method of the API, interactively (``nnmend app``).

A thin layer over the API: pages collect options, call :mod:`nnmend` functions and show what they
return; no method logic lives here. ``main.py`` is the script Streamlit runs; each file in ``pages/``
is one page (see :mod:`.registry`); :mod:`.state` keeps the session's networks across reruns,
:mod:`.jobs` runs long calls in the background (progress, cancel), :mod:`.widgets` and :mod:`.charts`
are the shared building blocks, :mod:`.forms` turns a method's config dataclass into widgets,
:mod:`.problems` poses a method's problem from the session, :mod:`.archive` packs the session into one zip.
"""
from pathlib import Path

SCRIPT = Path(__file__).with_name("main.py")

__all__ = ["SCRIPT"]
