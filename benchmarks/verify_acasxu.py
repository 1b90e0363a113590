"""ACAS Xu (VNN-COMP 2021, 186 instances): nnmend's complete verifier (CROWN bounds inside
input-splitting branch and bound, PGD + sampling falsifier) against each instance's timeout.

Every "sat" is re-checked on onnxruntime (float32): its counterexample must lie in the property's input
box and reach the unsafe output set there. Where the project's research notes give an expected answer
(shared/research/prorepair_advrepair.md A.2: prop_2 is violated on N_{x,y}, x >= 2, except N3,3 and N4,2;
prop_7 on N1,9 and prop_8 on N2,9 are violated) a disagreement is flagged.

    python benchmarks/verify_acasxu.py                     # all 186 instances, their 116 s timeouts
    python benchmarks/verify_acasxu.py --quick             # 4 easy instances, 20 s timeout (the tests run this)
    python benchmarks/verify_acasxu.py --filter 'prop_2' --timeout 30
    python benchmarks/verify_acasxu.py --shard 1/2 & python benchmarks/verify_acasxu.py --shard 2/2; \\
        python benchmarks/verify_acasxu.py --merge         # two single-threaded shards, then one table
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend._progress import progress  # noqa: E402
from nnmend.acasxu import acasxu, acasxu_instances, acasxu_path, acasxu_property_path  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.properties import check, read_property  # noqa: E402

QUICK = [(1, 1, 1), (2, 1, 2), (1, 2, 4), (3, 1, 3)]
WORD = {"verified": "unsat", "falsified": "sat", "timeout": "timeout", "unknown": "unknown"}


def expected(i: int, j: int, k: int) -> str | None:
    """Answers stated in the project's research notes (A.2); None where the notes say nothing."""
    if k == 2 and i >= 2:
        return "unsat" if (i, j) in {(3, 3), (4, 2)} else "sat"
    if (k, i, j) in {(7, 1, 9), (8, 2, 9)}:
        return "sat"
    return None


def confirm_on_onnxruntime(i: int, j: int, k: int, x: torch.Tensor) -> dict:
    """Evaluate the counterexample with onnxruntime and test it against the VNN-LIB regions (float64 maths)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(acasxu_path(i, j)), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    y = sess.run(None, {inp.name: x.numpy().astype(np.float32).reshape(1, 1, 1, 5)})[0].reshape(-1).astype(np.float64)
    xs = x.numpy().reshape(-1)
    ok, worst = False, float("inf")
    for r in read_property(acasxu_property_path(k)).regions:
        inside = bool(np.all(xs >= r.lo.numpy() - 1e-12) and np.all(xs <= r.hi.numpy() + 1e-12))
        for A, b in r.unsafe:
            gap = float(np.max(A.numpy() @ y - b.numpy())) if len(b) else -np.inf
            worst = min(worst, gap)
            ok |= inside and gap <= 0
    return {"ort_confirmed": ok, "ort_max_constraint_gap": worst, "ort_output": y.tolist()}


def bab_settings() -> dict:
    """The branch-and-bound defaults this run used (recorded in the JSON)."""
    from dataclasses import asdict

    from nnmend.bounds.bab import BabConfig

    return {k: v if isinstance(v, (int, float, type(None))) else str(v) for k, v in asdict(BabConfig()).items()}


def one_instance(net: str, prop: int, timeout: float) -> dict:
    i, j = map(int, net.split("_"))
    model, spec = acasxu(i, j), read_property(acasxu_property_path(prop))
    res = check(model, spec, timeout)
    rec = {"result": WORD[res.status], "seconds": round(res.seconds, 3), "expected": expected(i, j, prop),
           "stats": res.stats}
    if res.counterexample is not None:
        rec["counterexample"] = res.counterexample[0].reshape(-1).tolist()
        rec.update(confirm_on_onnxruntime(i, j, prop, res.counterexample[0]))
    return rec


def summarise(records: list[dict], timeout_note: str) -> tuple[dict, str]:
    counts = {w: sum(r["result"] == w for r in records) for w in ("unsat", "sat", "timeout", "unknown")}
    secs = [r["seconds"] for r in records]
    wrong_sat = [r for r in records if r["result"] == "sat" and not r.get("ort_confirmed")]
    disagree = [r for r in records if r.get("expected") and r["result"] in ("sat", "unsat") and r["result"] != r["expected"]]
    summary = {"instances": len(records), **counts, "decided": counts["unsat"] + counts["sat"],
               "total_seconds": round(sum(secs), 1), "median_seconds": round(statistics.median(secs), 3) if secs else None,
               "unconfirmed_sat": len(wrong_sat), "disagree_with_reference": len(disagree)}
    lines = ["# ACAS Xu (VNN-COMP 2021) — nnmend verify", "",
             f"{timeout_note}. Bounds: CROWN with back-substituted intermediate bounds, alpha-CROWN (8 steps) on the boxes "
             "CROWN leaves open; input bisection by |slope| x width unless a dimension is left 128x relatively "
             "wider; falsifier: sampling, CROWN-minimising corners, PGD. "
             "float64 arithmetic, 1 torch thread per instance.", "",
             "| instances | unsat | sat | timeout | unknown | decided | total s | median s | sat not confirmed by onnxruntime | disagree with reference |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {len(records)} | {counts['unsat']} | {counts['sat']} | {counts['timeout']} | {counts['unknown']} | "
             f"{summary['decided']} | {summary['total_seconds']} | {summary['median_seconds']} | {len(wrong_sat)} | {len(disagree)} |",
             "", "Target from the issue: at least 170 of 186 decided within 116 s each.", "",
             "| network | property | result | seconds | reference (research notes A.2) | sat confirmed on onnxruntime |",
             "|---|---|---|---:|---|---|"]
    for r in records:
        conf = "" if r["result"] != "sat" else ("yes" if r.get("ort_confirmed") else "**NO**")
        lines.append(f"| {r['net']} | prop_{r['prop']} | {r['result']} | {r['seconds']:.2f} | {r.get('expected') or ''} | {conf} |")
    return summary, "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 easy instances with a 20 s timeout")
    ap.add_argument("--timeout", type=float, default=None, help="override every instance's timeout (seconds)")
    ap.add_argument("--filter", default=None, help="regex on 'NET/prop_K', e.g. '1_9/prop_7' or 'prop_[34]'")
    ap.add_argument("--shard", default=None, help="K/N: run every N-th instance starting at K (1-based)")
    ap.add_argument("--merge", action="store_true", help="merge the shard result files into one table")
    add_out_arg(ap, ROOT / "results", "--results-dir")
    args = ap.parse_args()
    results = Path(args.out)
    name = "verify_acasxu_quick" if args.quick else "verify_acasxu"
    if args.merge:
        records = []
        for f in sorted(results.glob(f"{name}.shard*.json")):
            records += json.loads(f.read_text())["records"]
        order = {(f"{i}_{j}", k): n for n, (i, j, k, _) in enumerate(acasxu_instances())}
        records.sort(key=lambda r: order[(r["net"], r["prop"])])
        summary, md = summarise(records, "Merged shards")
        write_results(name, records, md, results, extra={"summary": summary, "merged": True})
        print(json.dumps(summary))
        return
    jobs = [{"net": f"{i}_{j}", "prop": k, "timeout": t} for i, j, k, t in acasxu_instances()]
    if args.quick:
        jobs = [{"net": f"{i}_{j}", "prop": k, "timeout": 20.0} for i, j, k in QUICK]
    if args.timeout is not None:
        jobs = [{**j, "timeout": args.timeout} for j in jobs]
    if args.filter:
        jobs = [j for j in jobs if re.search(args.filter, f"{j['net']}/prop_{j['prop']}")]
    if args.shard:
        k, n = map(int, args.shard.split("/"))
        jobs, name = jobs[k - 1::n], f"{name}.shard{k}of{n}"
    started = time.perf_counter()
    note = (f"{len(jobs)} instances" + (f", timeout {jobs[0]['timeout']:g} s each" if (args.timeout or args.quick) and jobs
                                          else ", each with its CSV timeout (116 s)")
            + (f", filter {args.filter!r}" if args.filter else "") + (f", shard {args.shard}" if args.shard else ""))
    records: list[dict] = []
    for job in progress(jobs, desc="acasxu", enabled=True, leave=True):
        records += run_jobs(one_instance, [job], progress_bar=False)
        summary, md = summarise(records, note + f" ({len(records)} of {len(jobs)} done)")
        # rewritten after every instance so an interrupted run still leaves a labelled partial result
        write_results(name, records, md, results, extra={"summary": summary, "planned": len(jobs), "args": vars(args),
                                                          "bab_config": bab_settings()},
                      started=started)
    print(json.dumps(summarise(records, note)[0]))


if __name__ == "__main__":
    main()
