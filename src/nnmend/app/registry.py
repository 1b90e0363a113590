"""Which pages the workbench shows: every module in ``pages/`` that declares a :class:`PageSpec`.

Adding a page is adding one file to ``pages/`` with a ``PAGE = PageSpec(...)`` and a ``render()``
function (and ``if __name__ == "__main__": render()`` so Streamlit can run it). A page whose
``requires`` modules do not import (a method that has not landed yet) is left out and listed as
unavailable, so method pages appear by themselves as the API grows.

Example::

    PAGE = PageSpec("NNrepair", section="Repair", order=43, requires=("nnmend.repair.nnrepair",))
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).with_name("pages")
SECTIONS = ("Network", "Repair", "Evaluate")


@dataclass(frozen=True)
class PageSpec:
    """A page's title, navigation section and order, and the API modules it needs."""

    title: str
    section: str = "Network"
    order: int = 50
    icon: str | None = None
    requires: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class PageEntry:
    spec: PageSpec
    name: str          # module name, e.g. "damage"
    path: Path         # the page script
    missing: tuple[str, ...] = ()   # required modules that failed to import

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def url_path(self) -> str:
        return self.name.replace("_", "-")


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def discover() -> list[PageEntry]:
    """All pages, available or not, in (section, order) order."""
    entries = []
    for info in pkgutil.iter_modules([str(PAGES_DIR)]):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"nnmend.app.pages.{info.name}")
        spec = getattr(module, "PAGE", None)
        if not isinstance(spec, PageSpec):
            continue
        missing = tuple(m for m in spec.requires if not _importable(m))
        entries.append(PageEntry(spec, info.name, PAGES_DIR / f"{info.name}.py", missing))
    rank = {s: i for i, s in enumerate(SECTIONS)}
    return sorted(entries, key=lambda e: (rank.get(e.spec.section, len(SECTIONS)), e.spec.order, e.spec.title))


def available() -> list[PageEntry]:
    return [e for e in discover() if e.available]
