"""What a campaign costs beyond its jobs: jobs per second and overhead per job, inline, on a process pool and
through a local Ray, with 1 and 2 workers, and a simulated 1,000-job grid to show it scales.

Every run goes through :func:`nnmend.campaign.run_campaign` into a fresh SQLite store (one transaction per
record), so the figures include expanding the grid, hashing job keys, shipping jobs and records, and storing.

* **empty jobs** (return at once): ``start`` = seconds to the first stored record (process / cluster start-up
  included), ``per job`` = the rest divided by the remaining jobs (steady-state overhead), ``jobs/s`` = all jobs
  over the whole wall time.
* **fixed work** (each job sleeps ``--work`` seconds: work that does not compete for the CPU, so the figures show
  the executor's scaling and not this machine's two cores): jobs/s and efficiency = ideal time / wall time.
* **1,000-job grid**: the SHNN damage grid (12 faults) × 84 seeds, expanded from YAML, run inline with empty
  jobs, then run again: the resume must skip all 1,008 jobs.

Usage::

    python benchmarks/campaign_overhead.py            # full run (results/campaign_overhead.{json,md})
    python benchmarks/campaign_overhead.py --quick    # inline only, few jobs (the test suite runs this)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from nnmend.benchmarking import add_out_arg, write_results
from nnmend.campaign import Store, parse_grid, run_campaign, shipped_grid
from nnmend.campaign.executors import ray_available
from nnmend.campaign.job import execute, execute_noop
from nnmend.report import markdown_table

RESULTS = Path(__file__).parent / "results"


def _sleep(**job) -> dict:
    time.sleep(job["work"])
    return {"success": True, "seconds": job["work"]}


def execute_sleep(job: dict) -> dict:
    """A job of fixed, CPU-free work (module level, so pools and Ray can ship it)."""
    return execute(job, _sleep)


def timed(executor: str, workers: int, jobs: list[dict], fn) -> dict:
    """Run ``jobs`` into a fresh store; wall time, time to the first record, and per-record times."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite")
        stamps: list[float] = []
        put = store.put

        def put_stamped(campaign, rec):          # the time each record reaches the store
            put(campaign, rec)
            stamps.append(time.perf_counter())

        store.put = put_stamped
        t0 = time.perf_counter()
        summary = run_campaign(jobs, store, executor=executor, workers=workers, fn=fn, progress_bar=False)
        wall = time.perf_counter() - t0
        n = len(store.records())
        store.close()
    start = stamps[0] - t0
    rest = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else float("nan")
    return {"executor": executor, "workers": workers, "jobs": len(jobs), "stored": n, "failed": summary.failed,
            "wall_s": round(wall, 3), "start_s": round(start, 3), "per_job_ms": round(1000 * rest, 3),
            "jobs_per_s": round(len(jobs) / wall, 1), "steady_s": round(stamps[-1] - stamps[0], 3)}


def thousand_job_grid(seeds: int) -> dict:
    """The shipped SHNN damage grid with ``seeds`` seeds: expand, run empty jobs inline, then resume."""
    data = yaml.safe_load(shipped_grid("shnn_damage").read_text())
    data["seeds"] = list(range(seeds))
    t0 = time.perf_counter()
    grid = parse_grid(data, "shnn_damage.yaml")
    parse_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        first = run_campaign(grid, Path(tmp) / "s.sqlite", fn=execute_noop, progress_bar=False)
        again = run_campaign(grid, Path(tmp) / "s.sqlite", fn=execute_noop, progress_bar=False)
        size = (Path(tmp) / "s.sqlite").stat().st_size
    return {"jobs": first.jobs, "parse_s": round(parse_s, 3), "run_s": first.seconds,
            "per_job_ms": round(1000 * first.seconds / first.jobs, 3), "resume_ran": again.ran,
            "resume_skipped": again.skipped, "resume_s": again.seconds, "store_bytes": size}


def markdown(rows: list[dict], work_rows: list[dict], big: dict, args, seconds: float) -> str:
    lines = ["# Campaign overhead: jobs per second and overhead per job", "",
             "`benchmarks/campaign_overhead.py`: every job goes through `run_campaign` into a fresh SQLite store. "
             "No paper or anchor reports these figures; the comparison is between our own executors. "
             f"Machine: 2 CPU cores shared with other work (load varies), {'quick run' if args.quick else 'full run'}, "
             f"{seconds:.0f} s in all.", "",
             f"## Empty jobs ({args.jobs} per run)", "",
             "start: seconds until the first record is stored (worker processes or the Ray cluster start here); "
             "per job: steady-state milliseconds per job after that; jobs/s: over the whole wall time. Start-up "
             "(spawning Python processes that import torch; starting Ray's GCS, raylet and workers) depends on the "
             "machine's load and free memory far more than on the executor; Ray's memory monitor also kills and "
             "retries workers when the node passes 95 % of its memory.", "",
             markdown_table(rows, ["executor", "workers", "jobs", "stored", "failed", "wall_s", "start_s", "per_job_ms",
                                   "jobs_per_s"]), ""]
    if work_rows:
        lines += [f"## Fixed work ({args.work_jobs} jobs of {args.work} s each, CPU-free)", "",
                  "efficiency: ideal wall time (jobs × work / workers) over the measured one, start-up included; "
                  "steady efficiency: the same from the first stored record to the last (start-up excluded; a pool "
                  "or Ray worker's start-up is paid once per campaign, not per job).", "",
                  markdown_table(work_rows, ["executor", "workers", "jobs", "wall_s", "start_s", "jobs_per_s",
                                             "efficiency", "steady_efficiency"]), ""]
    lines += ["## A 1,000-job grid", "",
              f"The shipped SHNN damage grid with {big['jobs'] // 12} seeds ({big['jobs']} jobs of empty work), inline: "
              f"checked and expanded in {big['parse_s']} s, run in {big['run_s']} s ({big['per_job_ms']} ms per job: "
              f"key, record, one SQLite transaction), store {big['store_bytes'] / 1e6:.2f} MB. Run again, the resume "
              f"ran {big['resume_ran']} and skipped {big['resume_skipped']} jobs in {big['resume_s']} s.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="inline only, few jobs (smoke test)")
    ap.add_argument("--jobs", type=int, default=400, help="empty jobs per executor run")
    ap.add_argument("--work-jobs", type=int, default=60, help="fixed-work jobs per executor run")
    ap.add_argument("--work", type=float, default=0.25, help="seconds of work per fixed-work job")
    ap.add_argument("--seeds", type=int, default=84, help="seeds of the 1,000-job grid (12 faults each)")
    add_out_arg(ap, RESULTS)
    args = ap.parse_args()
    if args.quick:
        args.jobs, args.work_jobs, args.seeds = 50, 0, 5
    started = time.perf_counter()
    plan = [("inline", 1)]
    if not args.quick:
        plan += [("pool", 1), ("pool", 2)] + ([("ray", 1), ("ray", 2)] if ray_available() else [])
    jobs = [{"seed": i, "evaluation": {}} for i in range(args.jobs)]
    rows = [timed(ex, w, jobs, execute_noop) for ex, w in plan]
    for r in rows:
        print(f"empty   {r['executor']:6} x{r['workers']}: {r['jobs_per_s']} jobs/s, start {r['start_s']} s, "
              f"{r['per_job_ms']} ms/job", flush=True)
    work_rows = []
    if args.work_jobs:
        wjobs = [{"seed": i, "work": args.work, "evaluation": {}} for i in range(args.work_jobs)]
        for ex, w in plan:
            r = timed(ex, w, wjobs, execute_sleep)
            r["efficiency"] = round(args.work_jobs * args.work / w / r["wall_s"], 3)
            # after start-up: the first record arrives once the first job ran; the rest need (n - 1) · work / w
            r["steady_efficiency"] = round((args.work_jobs - 1) * args.work / w / r["steady_s"], 3) if r["steady_s"] else None
            work_rows.append(r)
            print(f"work    {ex:6} x{w}: {r['jobs_per_s']} jobs/s, efficiency {r['efficiency']}", flush=True)
    big = thousand_job_grid(args.seeds)
    print(f"grid    {big['jobs']} jobs: {big['run_s']} s, resume skipped {big['resume_skipped']}", flush=True)
    seconds = time.perf_counter() - started
    name = "campaign_overhead_quick" if args.quick else "campaign_overhead"
    jp, mp = write_results(name, rows + work_rows, markdown(rows, work_rows, big, args, seconds), args.out,
                           extra={"quick": args.quick, "seed": 0, "grid_1000": big, "ray": ray_available(),
                                  "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
                           started=started)
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
