"""Run a grid: expand it, skip the jobs the store has finished, run the rest on an executor, store each
record as it arrives, with one progress bar across jobs.

Example::

    from nnmend.campaign import load_grid, run_campaign
    summary = run_campaign(load_grid("grid.yaml"), "campaign.sqlite", executor="pool", workers=2)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from .._progress import progress
from . import executors
from .grid import Grid, expand, job_key
from .job import STATUS_OK, execute
from .store import Store


@dataclass(frozen=True)
class Summary:
    """What one run of a campaign did: jobs in the grid, skipped (finished before), run now, failed now."""

    jobs: int
    skipped: int
    ran: int
    failed: int
    seconds: float
    keys: tuple[str, ...]


def run_campaign(grid: Grid | list[dict], store: str | os.PathLike | Store, *, executor: str = "inline", workers: int = 1,
                 address: str | None = None, retry_failed: bool = False, fn: Callable[[dict], dict] = execute,
                 name: str | None = None, progress_bar: bool | None = None) -> Summary:
    """Run every job of ``grid`` (a :class:`Grid` or plain job dicts) not yet finished in ``store``.

    Args:
        executor: ``inline``, ``pool`` or ``ray``; workers: processes (pool) or CPUs of a local Ray.
        address: a Ray cluster to join (``ray://host:10001`` or ``host:6379``); None starts a local one.
        retry_failed: rerun jobs stored as failed (finished ones that ran through are never rerun).
        fn: the per-job function (default :func:`nnmend.campaign.job.execute`; it must never raise).
    """
    run = executors.get(executor)
    jobs = expand(grid) if isinstance(grid, Grid) else list(grid)
    name = name or (grid.name if isinstance(grid, Grid) else "campaign")
    keys = [job_key(j) for j in jobs]
    db = store if isinstance(store, Store) else Store(store)
    t0 = time.perf_counter()
    try:
        finished = db.done(keys, include_failed=not retry_failed)
        todo = [j for j, k in zip(jobs, keys) if k not in finished]
        failed = 0
        if not todo:                                   # nothing to run: no pool, no Ray cluster to start
            return Summary(len(jobs), len(jobs), 0, 0, round(time.perf_counter() - t0, 3), tuple(keys))
        bar = progress(run(fn, todo, workers=workers, address=address), desc=f"campaign {name}", total=len(todo),
                       enabled=progress_bar, leave=True)
        for rec in bar:
            db.put(name, rec)
            failed += rec.get("status") != STATUS_OK
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(failed=failed)
    finally:
        if not isinstance(store, Store):
            db.close()
    return Summary(len(jobs), len(jobs) - len(todo), len(todo), failed, round(time.perf_counter() - t0, 3), tuple(keys))
