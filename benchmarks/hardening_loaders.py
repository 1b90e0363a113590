"""Hostile files against nnmend's loaders: every crafted file class, each in its own subprocess.

The corpus is ``tests/corpus/crafted.py`` (the files the test suite runs every time: oversized headers
and specs, NaN weights, bad opsets, truncated and corrupt archives, compression bombs, pickles that run
code, 0-sample data, plus valid controls). Each file goes through the Python loader (``load_network``,
``load_checkpoint(arch=...)`` or ``load_dataset``) and through the command line (``nnmend convert`` for
networks, ``nnmend train --data`` for data) in a fresh process, under the default memory cap (a fraction
of this machine's memory, see ``nnmend._validation``). Recorded per run: the outcome class

* ``clean error``: exit 2 with one line on stderr,
* ``traceback``: any other failure that prints a Python traceback or more than one line,
* ``crash``: killed by a signal, ``hang``: past the time limit,
* ``accepted``: exit 0,

and the child's peak resident memory (``ru_maxrss`` from ``os.wait4``), beside the peak of a child that
only imports nnmend. Targets: 0 tracebacks, 0 crashes, 0 hangs, and under 1 GB peak for every refused
file under 10 MB. Writes ``benchmarks/results/hardening_loaders.{json,md}``.

    python benchmarks/hardening_loaders.py            # every file, Python loader and command line
    python benchmarks/hardening_loaders.py --quick    # one file per format, Python loader only
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT.parent / "tests" / "corpus"))

from crafted import build_corpus  # noqa: E402

from nnmend._validation import max_alloc_bytes  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402

GB = 1e9
SMALL_FILE = 10 * (1 << 20)  # the target applies to refused files under 10 MB
QUICK_CASES = ("nnet_wide_header", "onnx_huge_input", "pt_huge_spec", "npz_truncated")

# The Python-loader child: one line on stderr and exit 2 for a refusal, a traceback for anything else.
_API_CHILD = """
import sys
from nnmend.errors import NnmendError
loader, path = sys.argv[1], sys.argv[2]
try:
    if loader == "import":
        pass
    elif loader == "network":
        from nnmend.io.checkpoint import load_network
        load_network(path)
    elif loader == "state_dict":
        from nnmend.io.checkpoint import load_checkpoint
        load_checkpoint(path, arch="shnn_mlp")
    else:
        from nnmend.data import load_dataset
        load_dataset(path)
except NnmendError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _command(loader: str, runner: str, path: Path, out_dir: Path) -> list[str]:
    if runner == "api" or loader == "import":
        return [sys.executable, "-c", _API_CHILD, loader, str(path)]
    if loader == "dataset":
        return [sys.executable, "-m", "nnmend", "train", "--data", str(path), "--epochs", "1",
                "--out", str(out_dir / "trained.pt")]
    cmd = [sys.executable, "-m", "nnmend", "convert", str(path), str(out_dir / "converted.pt")]
    return cmd + (["--arch", "shnn_mlp"] if loader == "state_dict" else [])


def _classify(status: int | None, stderr: str) -> str:
    if status is None:
        return "hang"
    if os.WIFSIGNALED(status):
        return "crash"
    code = os.WEXITSTATUS(status)
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if code == 0:
        return "accepted"
    if code == 2 and len(lines) == 1 and "Traceback" not in stderr:
        return "clean error"
    return "traceback"


def run_child(name: str, loader: str, path: str, runner: str, expect: str, size: int, timeout_s: float) -> dict:
    """One file through one loader in a fresh process: outcome class, exit status, peak memory, first line."""
    with tempfile.TemporaryDirectory(prefix="nnmend-harden-") as out_dir, \
            tempfile.TemporaryFile("w+") as err:
        env = {**os.environ, "PYTHONPATH": str(ROOT.parent / "src")}
        proc = subprocess.Popen(_command(loader, runner, Path(path), Path(out_dir)), stdout=subprocess.DEVNULL,
                                stderr=err, env=env, cwd=out_dir)
        status, usage = _wait(proc, timeout_s)
        err.seek(0)
        stderr = err.read()
    outcome = _classify(status, stderr)
    first = next((ln for ln in stderr.splitlines() if ln.strip()), "")
    return {"outcome": outcome, "exit": None if status is None else (os.WEXITSTATUS(status) if os.WIFEXITED(status)
                                                                     else -os.WTERMSIG(status)),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1) if usage else None,
            "as_expected": (outcome == "accepted") == (expect == "accepted") and outcome in ("accepted", "clean error"),
            "message": first.replace(str(Path(path).parent) + os.sep, "")[:200]}


def _wait(proc: subprocess.Popen, timeout_s: float):
    """``(status, rusage)`` of the child via ``os.wait4`` (its own peak memory); ``(None, None)`` past the limit."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = status
            return status, usage
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, None
        time.sleep(0.05)


def markdown(records: list[dict], baseline_mb: float, cap: int, quick: bool) -> str:
    by_outcome: dict[str, int] = {}
    for r in records:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    refused_small = [r for r in records if r["outcome"] == "clean error" and r["size_bytes"] < SMALL_FILE]
    worst = max(refused_small, key=lambda r: r["peak_rss_mb"] or 0, default=None)
    bad = [r for r in records if r["outcome"] in ("traceback", "crash", "hang")]
    lines = [
        f"# Hostile files against the loaders{' (quick)' if quick else ''}",
        "",
        f"{len({r['case'] for r in records})} crafted files (`tests/corpus/crafted.py`), {len(records)} runs, each in a "
        f"fresh process, under the default memory cap of {cap / GB:.2f} GB ({'$NNMEND_MAX_ALLOC_BYTES' if os.environ.get('NNMEND_MAX_ALLOC_BYTES') else 'a quarter of this machine'}). "
        f"A child that only imports nnmend peaks at {baseline_mb:.0f} MB.",
        "",
        "Before (issue 20's hostile-user run): the wide `.nnet` header and the `Linear(100000, 100000)` spec tried "
        "to allocate 40 GB, the 1 KB ONNX with a 10^9-element input took 4.2 GB before its error, a truncated "
        "`.npz` and an empty `.pt` ended in tracebacks, NaN-weight ONNX files and opsets 1/99/1000 were accepted.",
        "",
        "| outcome | runs |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(by_outcome.items())],
        "",
        f"Targets: 0 tracebacks / crashes / hangs: **{len(bad)}**. Worst peak memory of a refused file under 10 MB: "
        + (f"**{worst['peak_rss_mb']:.0f} MB** ({worst['case']}, {worst['runner']}; target < 1024 MB)." if worst else "–"),
        "",
        "| file | what | size | loader | outcome | peak MB | first line of stderr |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        flag = "" if r["as_expected"] else " ⚠"
        msg = r["message"].replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['what']} | {r['size_bytes']:,} B | {r['runner']} | {r['outcome']}{flag} | "
                     f"{r['peak_rss_mb']} | {msg} |")
    lines += ["", "⚠: not the expected outcome (a valid control refused, or a hostile file accepted). "
              "`api` = the Python loader, `cli` = `nnmend convert IN OUT.pt` (networks) or "
              "`nnmend train --data FILE` (data)."]
    if any(not r["as_expected"] and r["runner"] == "cli" and r["case"].endswith("gz_valid") for r in records):
        lines += ["", "`nnmend convert` chooses formats by the last suffix alone, so it refuses the `.onnx.gz` / "
                  "`.nnet.gz` files that `load_network` reads (`nnmend.io.checkpoint.network_format` is the "
                  "loaders' rule)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one file per format, Python loader only")
    add_out_arg(ap, ROOT / "results", "--results-dir")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per child before it counts as a hang")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnmend-corpus-") as folder:
        cases = build_corpus(folder)
        if args.quick:
            cases = [c for c in cases if c.name in QUICK_CASES]
        runners = ("api",) if args.quick else ("api", "cli")
        jobs = [{"name": c.name, "loader": c.loader, "path": str(c.path), "runner": r, "expect": c.expect,
                 "size": c.path.stat().st_size, "timeout_s": args.timeout} for c in cases for r in runners]
        baseline = run_child("import only", "import", folder, "api", "accepted", 0, args.timeout)
        records = run_jobs(run_child, jobs, desc="hardening")
        what = {c.name: c.what for c in cases}
    for r in records:
        r["case"], r["size_bytes"] = r.pop("name"), r.pop("size")
        r["what"] = what[r["case"]]
        r.pop("path")
        r.pop("timeout_s")
    cap = max_alloc_bytes()
    name = "hardening_loaders_quick" if args.quick else "hardening_loaders"
    summary = {o: sum(r["outcome"] == o for r in records) for o in ("clean error", "traceback", "crash", "hang", "accepted")}
    refused_small = [r["peak_rss_mb"] for r in records if r["outcome"] == "clean error" and r["size_bytes"] < SMALL_FILE]
    extra = {"quick": args.quick, "cap_bytes": cap, "baseline_peak_rss_mb": baseline["peak_rss_mb"], "summary": summary,
             "worst_refused_peak_rss_mb": max(refused_small, default=None),
             "unexpected": [f"{r['case']}/{r['runner']}" for r in records if not r["as_expected"]]}
    jp, mp = write_results(name, records, markdown(records, baseline["peak_rss_mb"] or 0, cap, args.quick),
                           args.out, extra=extra, started=started)
    print(f"wrote {jp} and {mp}: {summary}, worst refused peak {extra['worst_refused_peak_rss_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
