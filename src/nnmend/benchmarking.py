"""The one benchmark runner: a grid as a list of independent jobs, a progress bar, results on disk.

A benchmark states its grid as plain job dicts; ``run_jobs`` calls ``fn(**job)`` for each and collects the
plain records it returns, so the same grid can later be farmed out to a cluster unchanged.
``write_results`` writes ``benchmarks/results/NAME.json`` (records + environment + seconds) and
``NAME.md`` atomically.

Example::

    jobs = [{"seed": s, "layer": l} for s in range(3) for l in ("fc1", "fc2")]
    records = run_jobs(one_job, jobs, desc="shnn")
    write_results("shnn", records, markdown, results_dir, extra={"quick": False})
"""
from __future__ import annotations

import argparse
import statistics
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ._progress import progress
from .io.atomic import atomic_write
from .report import environment, write_json


def add_out_arg(parser: argparse.ArgumentParser, default: str | Path, *old: str) -> None:
    """The results folder flag every benchmark spells the same way: ``--out DIR`` (``args.out``, a Path).
    ``old`` spellings stay accepted but hidden (a test or document still uses them)."""
    parser.add_argument("--out", type=Path, default=Path(default), metavar="DIR",
                        help=f"results folder (default {Path(default).name}/)")
    for flag in old:
        parser.add_argument(flag, dest="out", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run_jobs(fn: Callable[..., dict], jobs: Sequence[dict], *, desc: str = "jobs", keep_going: bool = False,
             progress_bar: bool | None = None) -> list[dict]:
    """Run ``fn(**job)`` for every job; each record gets the job's arguments and its wall time."""
    records = []
    for job in progress(jobs, desc=desc, total=len(jobs), enabled=progress_bar, leave=True):
        t0 = time.perf_counter()
        try:
            rec = fn(**job)
        except Exception as exc:  # one failed cell must not lose the grid; it is recorded, not hidden
            if not keep_going:
                raise
            rec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=3)}
        records.append({**job, **rec, "job_seconds": round(time.perf_counter() - t0, 3)})
    return records


def mean_sd(values: Iterable[float | None]) -> tuple[float, float]:
    v = [float(x) for x in values if x is not None and x == x]
    if not v:
        return float("nan"), float("nan")
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def fmt_mean_sd(values: Iterable[float | None], scale: float = 100.0, digits: int = 2) -> str:
    m, s = mean_sd(values)
    if m != m:
        return "–"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def write_results(name: str, records: list[dict], markdown: str, results_dir: str | Path, *,
                  extra: dict[str, Any] | None = None, started: float | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` (records, environment, seconds, extra) and ``NAME.md`` into ``results_dir``."""
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(), **(extra or {}), "records": records}
    if started is not None:
        payload["seconds"] = round(time.perf_counter() - started, 1)
    jp = write_json(payload, d / f"{name}.json")
    mp = d / f"{name}.md"
    with atomic_write(mp, "w") as fh:
        fh.write(markdown)
    return jp, mp
