"""VNN-COMP 2021-2023 instances through ``nnmend verify`` (68 instances, 18 benchmarks).

Reads ``instances.csv`` of ``../shared/data/vnncomp/`` (each instance with the competition's agreed answer
and its timeout) and decides each with T = the competition's timeout, or ``--cap`` if smaller, in one of two
ways:

* ``--mode inprocess`` (default): the Python entry ``nnmend verify --instances`` uses
  (:func:`nnmend.cli.verify.run_isolated`): the imports are paid once, then each instance (reading the files
  included) runs in a forked worker that is killed at ``T + 0.5 s``; the time is the instance's own.
* ``--mode subprocess``: ``nnmend verify ONNX VNNLIB --timeout T`` in a fresh process per instance, as a
  user types it (interpreter start and imports, 10-20 s on a loaded 2-core machine, count against T).

Each result is classified against the expected answer: correct / wrong / timeout / unknown / refused (a
clean one-line refusal: unsupported operator or attribute) / error (anything else: a traceback, a crash, a
hang past T + 30 s). Records are appended to ``verify_vnncomp.partial.jsonl`` as they finish, so
``--resume`` continues a cut run. Writes ``benchmarks/results/verify_vnncomp.json`` and ``.md`` (per
benchmark, beside alpha-beta-CROWN's decided count and median time from the competition — a GPU figure on
the competition's hardware) with the load average seen during the run.

    python benchmarks/verify_vnncomp.py [--root ../shared/data/vnncomp] [--cap 120] [--quick] [--resume]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nnmend.benchmarking import add_out_arg, write_results  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "vnncomp"
QUICK = ["test", "rl_benchmarks", "nn4sys"]


def classify(expected: str, stdout: str, stderr: str, rc: int | None) -> tuple[str, str]:
    """``(outcome, detail)`` from the command's first output line and exit code."""
    first = (stdout.strip().splitlines() or [""])[0].strip().lower()
    if rc is None:
        return "error", "hang: killed past the hard limit"
    if first in ("sat", "unsat"):
        return ("correct" if first == expected else "wrong"), first
    if first in ("timeout", "unknown"):
        return first, first
    msg = (stderr.strip().splitlines() or [""])[-1]
    if "Traceback" in stderr:
        return "error", msg[:300]
    if rc == 2 and ("not supported" in msg or "unsupported" in msg or "refused" in msg):
        return "refused", msg[:300]
    return "error", f"exit {rc}: {msg[:300]}"


def run_inprocess(data: Path, onnx: str, vnnlib: str, timeout: float, expected: str, cap: float) -> dict:
    """One instance through :func:`nnmend.cli.verify.run_isolated` (a forked worker; files read inside it)."""
    from nnmend.cli.verify import run_isolated
    from nnmend.errors import NnmendError

    t = min(float(timeout), cap)
    start = time.monotonic()
    out, err, rc = "", "", 0
    try:
        _, out, _ = run_isolated(data / onnx, data / vnnlib, t, start)
    except NnmendError as exc:
        err, rc = str(exc), 2
    except RuntimeError as exc:
        err, rc = f"Traceback: {exc}", 1
    seconds = time.monotonic() - start
    outcome, detail = classify(expected, out, err, rc)
    return {"onnx": onnx, "vnnlib": vnnlib, "timeout": t, "expected": expected, "outcome": outcome,
            "detail": detail, "seconds": round(seconds, 2), "within_deadline": seconds <= t + 2,
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def run_instance(data: Path, onnx: str, vnnlib: str, timeout: float, expected: str, cap: float) -> dict:
    t = min(float(timeout), cap)
    cmd = [sys.executable, "-m", "nnmend", "verify", str(data / onnx), str(data / vnnlib), "--timeout", f"{t:g}"]
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=t + 30,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = None, exc.stdout or "", exc.stderr or ""
        out, err = (out.decode() if isinstance(out, bytes) else out), (err.decode() if isinstance(err, bytes) else err)
    seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    outcome, detail = classify(expected, out, err, rc)
    return {"onnx": onnx, "vnnlib": vnnlib, "timeout": t, "expected": expected, "outcome": outcome,
            "detail": detail, "seconds": round(seconds, 2), "within_deadline": seconds <= t + 2 + 5,
            "peak_rss_mb_upper": round(max(peak, before) / 1024, 1), "load_avg_1min": round(os.getloadavg()[0], 2)}


def table(records: list[dict], rows: list[dict]) -> str:
    by: dict[str, list[dict]] = {}
    for r, row in zip(records, rows):
        by.setdefault(row["benchmark"], []).append({**r, **row})
    cols = ["correct", "wrong", "timeout", "unknown", "refused", "error"]
    lines = ["| benchmark | n | " + " | ".join(cols) + " | median s (decided) | alpha-beta-CROWN decided / median s (GPU, VNN-COMP) |",
             "|---|---|" + "---|" * len(cols) + "---|---|"]
    total = {c: 0 for c in cols}
    for bench, rs in sorted(by.items()):
        counts = {c: sum(r["outcome"] == c for r in rs) for c in cols}
        for c in cols:
            total[c] += counts[c]
        dec = [r["seconds"] for r in rs if r["outcome"] in ("correct", "wrong")]
        ab = [float(r["abcrown_vnncomp_seconds"]) for r in rs if r.get("abcrown_vnncomp_seconds")]
        ours = f"{statistics.median(dec):.1f}" if dec else "–"
        theirs = f"{len(ab)} / {statistics.median(ab):.1f}" if ab else "0 / –"
        lines.append(f"| {bench} | {len(rs)} | " + " | ".join(str(counts[c]) for c in cols) + f" | {ours} | {theirs} |")
    lines.append(f"| **all** | {len(records)} | " + " | ".join(f"**{total[c]}**" for c in cols) + " | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_DATA, help="folder with instances.csv (default %(default)s)")
    ap.add_argument("--cap", type=float, default=float("inf"), help="cap on each instance's timeout (seconds)")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, 10 s each")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--mode", choices=("inprocess", "subprocess"), default="inprocess",
                    help="forked workers after one import (default) or one `nnmend verify` process per instance")
    ap.add_argument("--resume", action="store_true", help="keep the records of the partial file and run the rest")
    add_out_arg(ap, ROOT / "benchmarks" / "results", "--results-dir")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    with open(args.root / "instances.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    only = set(filter(None, args.only.split(","))) or (set(QUICK) if args.quick else set())
    if only:
        rows = [r for r in rows if r["benchmark"] in only]
    cap = 10.0 if args.quick else args.cap
    name = "verify_vnncomp_quick" if args.quick else "verify_vnncomp"
    partial = args.out / f"{name}.partial.jsonl"
    done: dict[tuple[str, str], dict] = {}
    if args.resume and partial.exists():
        for line in partial.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["onnx"], rec["vnnlib"])] = rec
    elif partial.exists():
        partial.unlink()
    if args.mode == "inprocess":
        from nnmend.cli.verify import preload

        preload()
        import torch

        torch.set_num_threads(1)
    run = run_inprocess if args.mode == "inprocess" else run_instance
    records, loads = [], []
    for i, row in enumerate(rows, 1):
        rec = done.get((row["onnx"], row["vnnlib"]))
        if rec is None:
            rec = run(args.root, row["onnx"], row["vnnlib"], float(row["timeout"]), row["expected"], cap)
            rec["benchmark"] = row["benchmark"]
            args.out.mkdir(parents=True, exist_ok=True)
            with partial.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
        records.append(rec)
        loads.append(rec.get("load_avg_1min"))
        print(f"[{i}/{len(rows)}] {row['benchmark']} {Path(row['onnx']).name} {Path(row['vnnlib']).name}: "
              f"{rec['outcome']} ({rec['detail'][:80]}) {rec['seconds']} s", flush=True)
    loads = [x for x in loads if x is not None]
    how = ("in-process: the imports once, then each instance (its files read inside the time) in a forked worker "
           "killed at T + 0.5 s" if args.mode == "inprocess" else
           "as `nnmend verify ONNX VNNLIB --timeout T` in its own process (start-up and imports inside T)")
    md = ["# VNN-COMP instances through `nnmend verify`", "",
          f"{len(records)} instances from `{args.root.name}/instances.csv`; each run {how}; T = the competition's "
          "timeout" + (f" capped at {cap:g} s" if cap != float("inf") else "") + "; 2-core CPU machine shared with "
          "other jobs" + (f" (1-minute load average during the run: {min(loads):.1f}-{max(loads):.1f}, median "
                          f"{statistics.median(loads):.1f})" if loads else "") + ".",
          "alpha-beta-CROWN's column is the competition's official result on its GPU hardware (not this machine).", "",
          table(records, rows), "",
          "Outcomes: correct / wrong (against the answer the competition's tools agree on), timeout, unknown, "
          "refused (one clean line: an unsupported operator or attribute), error (anything else).", "",
          "| instance | outcome | s | detail |", "|---|---|---|---|"]
    md += [f"| {Path(r['onnx']).name} / {Path(r['vnnlib']).name} | {r['outcome']} | {r['seconds']} | {r['detail'][:120]} |"
           for r in records]
    write_results(name, records, "\n".join(md) + "\n", args.out, started=started,
                  extra={"cap": None if cap == float("inf") else cap, "root": str(args.root), "mode": args.mode})
    partial.unlink(missing_ok=True)          # complete: the results file holds every record
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
