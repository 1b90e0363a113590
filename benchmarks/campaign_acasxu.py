"""A slice of the shipped ACAS Xu campaign grid end to end: guard, PatchPro and ProRepair through
``nnmend campaign``'s runner and the repair harness, beside the methods' own benchmarks.

The shipped grid (``nnmend.campaign.shipped_grid("acasxu")``) holds the 36 violated (network, property)
instances × 3 methods; its full run takes hours on 2 cores (ProRepair alone: 38-300 s per instance). This
script runs the instances given by ``--instances`` (default: three φ2 instances where every method's own
benchmark proved a repair) with the grid's own settings, on the executor given, and sets each cell beside the
committed results of ``guard_acasxu``, ``patchpro_acasxu`` and ``prorepair_acasxu`` (proved, FDD, seconds: our
anchors; those scripts measured with their own protocols, the harness re-measures everything here: proof on
the saved network, FDD on ``fidelity_samples`` uniform domain points leaving out the original's violations).

Usage::

    python benchmarks/campaign_acasxu.py                       # 3 instances × 3 methods, pool of 2 workers
    python benchmarks/campaign_acasxu.py --instances 1_9:7 2_9:8 --executor inline
    python benchmarks/campaign_acasxu.py --quick               # guard on N2,9 φ8 (the test suite runs this)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from nnmend.benchmarking import add_out_arg, write_results
from nnmend.campaign import Store, parse_grid, run_campaign, shipped_grid
from nnmend.campaign.report import CELL_COLUMNS, METHOD_COLUMNS, cell_rows, method_rows
from nnmend.report import markdown_table

RESULTS = Path(__file__).parent / "results"
DEFAULT = ("3_4:2", "4_3:2", "2_6:2")


def anchors() -> dict[tuple[str, int, str], dict]:
    """(network, property, method) → the method's own committed benchmark figures (proved, FDD %, seconds)."""
    out: dict[tuple[str, int, str], dict] = {}

    def load(name: str) -> list[dict]:
        path = RESULTS / f"{name}.json"
        return json.loads(path.read_text())["records"] if path.exists() else []

    for r in load("guard_acasxu"):
        out[(r["net"], r["prop"], "guard")] = {"proved": r["proved"], "fdd": 100 * r["fdd"], "seconds": r["seconds"]}
    for r in load("patchpro_acasxu"):
        out[(f"{r['i']}_{r['j']}", 2, "patchpro")] = {"proved": r["verified"], "fdd": r["FDD"], "seconds": r["seconds"]}
    for r in load("prorepair_acasxu"):
        key = (r["net"], r["prop"], "prorepair")
        if r.get("overrides") and not r.get("fallback") and key not in out:
            out[key] = {"proved": r.get("proved"), "fdd": 100 * r["fdd"] if r.get("fdd") is not None else None,
                        "seconds": r.get("seconds")}
    return out


def grid_for(instances: list[str], methods: list[str]):
    """The shipped ACAS Xu grid restricted to ``instances`` ("I_J:P") and ``methods``."""
    data = yaml.safe_load(shipped_grid("acasxu").read_text())
    data["methods"] = {m: data["methods"][m] for m in methods}
    include = []
    for inst in instances:
        net, prop = inst.split(":")
        include.append({"networks": [f"acasxu_{net}"], "defects": [f"phi{prop}"]})
    data["include"] = include
    return parse_grid(data, str(shipped_grid("acasxu")))


def markdown(cells: list[dict], methods: list[dict], anchor: dict, args, summary, seconds: float,
             load: tuple[float, float]) -> str:
    rows = []
    for c in cells:
        net = c["network"].removeprefix("acasxu_")
        a = anchor.get((net, int(c["defect"].removeprefix("phi")), c["method"]), {})
        rows.append({**c, "own_benchmark_proved": a.get("proved"), "own_fdd_%": a.get("fdd"), "own_seconds": a.get("seconds")})
    lines = ["# ACAS Xu campaign slice: guard, PatchPro, ProRepair through one harness", "",
             f"`benchmarks/campaign_acasxu.py`: instances {', '.join(args.instances)} of the shipped grid "
             f"(`src/nnmend/campaign/grids/acasxu.yaml`, its settings), executor {args.executor} × {args.workers}, "
             + (f"{summary.jobs} jobs ({summary.ran} run now, {summary.failed} of them failed, in {seconds:.0f} s"
                + (f"; {summary.skipped} read back from the store of an earlier run of the same instances" if summary.skipped else "")
                + ") on 2 CPU cores shared with other work "
                f"(1-minute load average {load[0]} when the run began, {load[1]} when it ended; the own_* runs had the "
                "machine nearly to themselves)." if summary.ran else
                f"{summary.jobs} jobs read back from the store of an earlier run (`--store`; its `wall_seconds` per job "
                f"are in the JSON) on 2 CPU cores shared with other work (1-minute load average {load[1]} when this page "
                "was written; the own_* runs had the machine nearly to themselves).") + \
             " Seconds are wall time, so every timing here is an upper bound, and a "
             "method with a wall-clock budget (ProRepair's `time_budget`, the harness's `certify_timeout`) gets that "
             "much less CPU within it: a row that fails here by `timeout` may pass on a quiet machine.", "",
             "success / certified / drawdown / seconds / parameters_added: measured by the repair harness on the saved "
             "and reloaded network (drawdown: FDD in % of uniform domain samples). own_*: the method's own committed "
             "benchmark on the same instance (guard_acasxu, patchpro_acasxu, prorepair_acasxu), the anchor.", "",
             markdown_table(rows, CELL_COLUMNS + ["own_benchmark_proved", "own_fdd_%", "own_seconds"]), "",
             "## Per method", "", markdown_table(methods, METHOD_COLUMNS), ""]
    failed = [c for c in cells if c["failed"]]
    if failed:
        lines += ["Failed jobs: " + "; ".join(f"{c['network']} {c['defect']} {c['method']}: {' / '.join(c['errors'])}"
                                              for c in failed), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="guard on N2,9 φ8, inline (smoke test)")
    ap.add_argument("--instances", nargs="+", default=list(DEFAULT), help="I_J:P instances of the grid")
    ap.add_argument("--methods", nargs="+", default=["guard", "patchpro", "prorepair"])
    ap.add_argument("--executor", default="pool", choices=("inline", "pool", "ray"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--store", type=Path, default=None, help="SQLite store to resume (default: a temporary one)")
    add_out_arg(ap, RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.instances, args.methods, args.executor, args.workers = ["2_9:8"], ["guard"], "inline", 1
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    grid = grid_for(args.instances, args.methods)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "acasxu.sqlite"
        summary = run_campaign(grid, store, executor=args.executor, workers=args.workers)
        with Store(store) as s:
            records = s.records(summary.keys)
    seconds, load = time.perf_counter() - started, (round(load_start, 1), round(os.getloadavg()[0], 1))
    cells, methods = cell_rows(records), method_rows(records)
    name = "campaign_acasxu_quick" if args.quick else "campaign_acasxu"
    slim = [{k: v for k, v in r.items() if k != "evaluation"} for r in records]
    jp, mp = write_results(name, slim, markdown(cells, methods, anchors(), args, summary, seconds, load), args.out,
                           extra={"quick": args.quick, "seed": 0, "cells": cells, "methods": methods, "load_average": load,
                                  "grid": {"methods": grid.methods, "options": grid.options},
                                  "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
                           started=started)
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
