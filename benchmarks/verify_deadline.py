"""How far past ``--timeout T`` does ``nnmend verify`` answer? (issue 19: "answers within T + 2 s, always").

Two measures. Per process: each job runs the command line as a user does (``nnmend verify ONNX VNNLIB
--timeout T`` in a fresh process, so interpreter start-up, model load and property parsing all count) and
records its wall time, the answer and the overshoot ``wall - T``. Per row: all jobs as one
``nnmend verify --instances`` run, each row's seconds against T (no start-up). Instances: the first of each benchmark in ``../shared/data/vnncomp/instances.csv``
(the development set; see its README), plus bundled ACAS Xu ones.

    python benchmarks/verify_deadline.py                 # T = 10 s, one instance per benchmark
    python benchmarks/verify_deadline.py --timeout 60
    python benchmarks/verify_deadline.py --quick         # 2 ACAS Xu instances, T = 2 s (the tests run this)
    PYTHONPATH=/tmp/old_src python benchmarks/verify_deadline.py --label before --out /tmp/before   # another copy
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend.acasxu import acasxu_path, acasxu_property_path  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.report import markdown_table  # noqa: E402

VNNCOMP = ROOT.parent.parent / "shared" / "data" / "vnncomp"


def vnncomp_jobs(limit_per_benchmark: int = 1) -> list[dict]:
    """The first ``limit_per_benchmark`` instances of every benchmark in the shared development set."""
    seen: dict[str, int] = {}
    jobs = []
    with (VNNCOMP / "instances.csv").open() as fh:
        for row in csv.DictReader(fh):
            if seen.get(row["benchmark"], 0) >= limit_per_benchmark:
                continue
            seen[row["benchmark"]] = seen.get(row["benchmark"], 0) + 1
            jobs.append({"name": row["benchmark"], "onnx": str(VNNCOMP / row["onnx"]),
                         "vnnlib": str(VNNCOMP / row["vnnlib"])})
    return jobs


def acasxu_jobs() -> list[dict]:
    return [{"name": f"acasxu N{i},{j} prop_{k}", "onnx": str(acasxu_path(i, j)),
             "vnnlib": str(acasxu_property_path(k))} for i, j, k in [(1, 9, 7), (4, 2, 2)]]


def run_one(name: str, onnx: str, vnnlib: str, timeout: float) -> dict:
    """Wall time of one ``nnmend verify`` process (hard-killed at 10 T + 60 s so a hang cannot stall the grid)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "nnmend", "verify", onnx, vnnlib, "--timeout", str(timeout)],
                              capture_output=True, text=True, timeout=10 * timeout + 60)
        out, rc = (proc.stdout.strip().splitlines() or [""])[0], proc.returncode
        err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    except subprocess.TimeoutExpired:
        out, rc, err = "hang", -1, "killed by the benchmark"
    wall = time.monotonic() - t0
    return {"mode": "process", "result": out if rc == 0 else "error", "rc": rc, "message": err[:200], "wall_s": round(wall, 2),
            "overshoot_s": round(wall - timeout, 2)}


def run_list(jobs: list[dict], timeout: float) -> list[dict]:
    """All jobs as one ``nnmend verify --instances`` run: each row's own seconds (from the row's start to its
    answer, no interpreter start-up) against ``timeout``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        listing, out = Path(tmp) / "instances.csv", Path(tmp) / "results.csv"
        listing.write_text("".join(f"{j['onnx']},{j['vnnlib']},{timeout:g}\n" for j in jobs))
        subprocess.run([sys.executable, "-m", "nnmend", "verify", "--instances", str(listing), "--output", str(out)],
                       capture_output=True, text=True, timeout=len(jobs) * (10 * timeout + 60))
        with out.open() as fh:
            rows = list(csv.DictReader(fh))
    return [{"name": j["name"], "mode": "instance list row", "result": r["result"], "rc": 0,
             "message": r.get("message", "")[:200], "wall_s": float(r["seconds"]),
             "overshoot_s": round(float(r["seconds"]) - timeout, 2)} for j, r in zip(jobs, rows)]


def markdown(records: list[dict], timeout: float, tag: str) -> str:
    lines = [f"# nnmend verify: answer time against --timeout {timeout:g} s ({tag})", ""]
    for mode, what in (("process", "wall - T of a whole `nnmend verify` process, interpreter start-up included"),
                       ("instance list row", "seconds - T of each row of one `nnmend verify --instances` run")):
        rows = [r for r in records if r.get("mode", "process") == mode]
        if not rows:
            continue
        worst = max(r["overshoot_s"] for r in rows)
        lines += [f"## {mode}", "", f"Worst overshoot ({what}): **{worst:.2f} s** over {len(rows)} instances; "
                  "the target is at most 2 s.", "",
                  markdown_table([{"instance": r["name"], "result": r["result"], "wall (s)": f"{r['wall_s']:.2f}",
                                   "overshoot (s)": f"{r['overshoot_s']:.2f}", "message": r["message"]} for r in rows])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--label", default="current", help="what the run measures, in the title (e.g. before / after)")
    ap.add_argument("--mode", choices=["process", "list", "both"], default="both",
                    help="one process per instance, one --instances run, or both (default)")
    add_out_arg(ap, ROOT / "results")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    timeout = 2.0 if args.quick else args.timeout
    jobs = acasxu_jobs() if args.quick else vnncomp_jobs() + acasxu_jobs()
    records = []
    if args.mode in ("process", "both"):
        records += run_jobs(run_one, [{**j, "timeout": timeout} for j in jobs], desc="instances")
    if args.mode in ("list", "both"):
        records += run_list(jobs, timeout)
    name = "verify_deadline_quick" if args.quick else "verify_deadline"
    write_results(name, records, markdown(records, timeout, args.label), args.out,
                  extra={"timeout": timeout, "label": args.label}, started=started)
    print(markdown(records, timeout, args.label))


if __name__ == "__main__":
    main()
