"""``nnmend campaign``: run a grid of networks × defects × methods × seeds and compare the methods.

    nnmend campaign GRID.yaml [--executor inline|pool|ray] [--workers N] [--address A]
                              [--store S.sqlite] [--report DIR] [--retry-failed]

GRID may also name a shipped grid (``acasxu``, ``mnist_robustness``, ``shnn_damage``). The grid is
checked before any job runs (bad key: one line naming it, exit 2). Records go to the store as each job
finishes; a rerun skips the finished jobs. Exit 1 when any job of the grid failed (its message is in
the store and the report).

On a Ray cluster (``--address``) the driver keeps the store; workers need nnmend installed, and a network
given as a file must be readable at the same absolute path on every node (catalog names need nothing).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_outputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="run a grid of repairs (networks × defects × methods × seeds) and compare",
                       description="Run every job of a campaign grid through the repair harness, in this process, on "
                                   "a local process pool or on a Ray cluster; resumable; writes one SQLite store and a "
                                   "comparison report (Markdown, JSON, Pareto plot).")
    p.add_argument("grid", help="GRID.yaml, or a shipped grid: acasxu, mnist_robustness, shnn_damage")
    p.add_argument("--executor", default="inline", choices=("inline", "pool", "ray"),
                   help="where jobs run (default inline; ray needs the optional extra ray)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for pool (default 2), CPUs for a local Ray (default: all)")
    p.add_argument("--address", default=None, help="Ray cluster to join (host:6379 or ray://host:10001)")
    p.add_argument("--store", type=Path, default=None, help="SQLite results store (default campaign-NAME.sqlite)")
    p.add_argument("--report", type=Path, default=None, help="report folder (default campaign-NAME-report)")
    p.add_argument("--retry-failed", action="store_true", help="rerun the jobs stored as failed")
    p.set_defaults(func=run)


def _grid_path(name: str) -> Path:
    from ..campaign import shipped_grid

    path = Path(name)
    return path if path.exists() or path.suffix else shipped_grid(name)


def run(args: argparse.Namespace) -> int:
    from ..campaign import Store, load_grid, run_campaign, write_report
    from ..campaign.executors import get
    from ..campaign.report import METHOD_COLUMNS, method_rows
    from ..errors import NnmendError
    from ..report import markdown_table

    if args.workers is not None and args.workers < 1:
        raise NnmendError(f"--workers {args.workers}: must be at least 1")
    if args.address and args.executor != "ray":
        raise NnmendError("--address applies to --executor ray only")
    path = _grid_path(args.grid)
    grid = load_grid(path)                           # every check before any job runs
    get(args.executor)                               # a missing optional extra, before any job runs
    store = args.store or Path(f"campaign-{grid.name}.sqlite")
    report = args.report or Path(f"campaign-{grid.name}-report")
    outputs = {store: "--store"}
    outputs.update({report / f: "--report" for f in ("report.json", "report.md", "pareto.png")})
    check_outputs({"GRID": path}, outputs, force=True)    # the store is resumed and the report refreshed
    workers = args.workers or (2 if args.executor == "pool" else 1 if args.executor == "inline" else 0)
    summary = run_campaign(grid, store, executor=args.executor, workers=workers, address=args.address,
                           retry_failed=args.retry_failed)
    with Store(store) as s:
        records = s.records(summary.keys)
    write_report(records, report, title=grid.name)
    failed = sum(r.get("status") != "ok" for r in records)
    print(f"campaign {grid.name}: {summary.jobs} jobs ({summary.skipped} finished before, {summary.ran} run now, "
          f"{failed} failed) in {summary.seconds:.1f} s; store {store}, report {report / 'report.md'}")
    print(markdown_table(method_rows(records), METHOD_COLUMNS), end="")
    return 1 if failed else 0
