"""Campaigns: grids of networks × defects × methods × seeds through the repair harness, run in-process,
on a process pool or on a Ray cluster, resumable, stored in one SQLite file, compared in one report.

Example::

    from nnmend.campaign import load_grid, run_campaign, Store, write_report
    grid = load_grid("grid.yaml")                       # checked before any job runs
    run_campaign(grid, "runs/c.sqlite", executor="pool", workers=2)
    with Store("runs/c.sqlite") as s:
        write_report(s.records(), "runs/c-report")

Shipped grids: :func:`shipped_grid` (``acasxu``, ``mnist_robustness``, ``shnn_damage``).
"""
from __future__ import annotations

from pathlib import Path

from .grid import Grid, GridError, expand, job_key, load_grid, parse_grid
from .job import execute, run_job
from .report import write_report
from .runner import Summary, run_campaign
from .store import Store

GRIDS = Path(__file__).parent / "grids"


def shipped_grid(name: str) -> Path:
    """The path of a grid shipped with nnmend (``acasxu``, ``mnist_robustness``, ``shnn_damage``)."""
    path = GRIDS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml")))
        raise GridError(f"no shipped grid {name!r} (known: {known})")
    return path


__all__ = ["Grid", "GridError", "load_grid", "parse_grid", "expand", "job_key", "run_job", "execute", "run_campaign",
           "Summary", "Store", "write_report", "shipped_grid"]
