"""Soundness regression: every "unsat"/"verified" the committed benchmark results claim, re-checked by Marabou.

Marabou 2.0 (exact, SMT-based, no code shared with nnmend's bounds) decides each claimed instance on the
network the claim is about, within a per-instance budget of *processor* seconds (so a loaded machine
gets the same search, only later), through :func:`nnmend.marabou.solve` (copies in a temporary folder).
Outcomes per claim: **agree** (Marabou: unsat), **disagree** (Marabou: sat; its counterexample is then
evaluated on the network in float64 and on onnxruntime), **undecided** (budget spent, error, or not run
because the run's total budget ran out).

Claims and the networks they are about:

* ``verify_acasxu.json`` — every ``unsat`` (nnmend's verifier on the original VNN-COMP ACAS Xu ONNX
  files): Marabou reads the bundled ONNX file itself (a private copy).
* ``guard_acasxu.json`` — every ``proved`` guarded network: rebuilt with ``guard.plan`` and
  ``guard.build_guard`` (deterministic; the bound ``M`` of each stage and the parameter count are
  compared with the record, so the network re-checked is the one the claim is about), exported to ONNX.
* Claims whose networks were neither saved nor reproducible cheaply (PatchPro, ProRepair, NNrepair) are
  counted and listed as not re-checked, with the reason.

The claims are interleaved across properties, so a run that stops at ``--budget`` still samples every
property. Results are rewritten after every instance.

    python benchmarks/crosscheck.py                     # all claims, 60 CPU s each, 80 min in all
    python benchmarks/crosscheck.py --quick             # 2 instances (the tests run this)
    python benchmarks/crosscheck.py --timeout 120 --budget 0 --sources guard_acasxu
    python benchmarks/crosscheck.py --resume --timeout 10   # keep crosscheck.json's records, run the rest
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend import marabou  # noqa: E402
from nnmend.acasxu import acasxu, acasxu_path, acasxu_property_path  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.properties import read_property  # noqa: E402

RESULTS = ROOT / "results"
SOURCES = ("guard_acasxu", "verify_acasxu")
QUICK = [{"source": "guard_acasxu", "net": "2_1", "prop": 2}, {"source": "verify_acasxu", "net": "3_1", "prop": 4}]
NOT_RECHECKED = {
    "patchpro_acasxu": "repaired networks not saved; rebuilding one costs a full repair, and the exact box "
                       "indicator (comparisons) is outside the ReLU/affine fragment Marabou reads",
    "prorepair_acasxu": "repaired networks not saved; the repairs are time-budgeted (not reproducible bit for bit)",
    "patchpro_mnist": "local-robustness certificates on repaired MNIST networks that were not saved",
    "prorepair_backdoor": "repaired networks not saved",
    "prorepair_adversarial": "repaired networks not saved",
}


# -- claims ----------------------------------------------------------------------------------------
def _verify_claims(results: Path) -> list[dict]:
    recs = json.loads((results / "verify_acasxu.json").read_text())["records"]
    return [{"source": "verify_acasxu", "net": r["net"], "prop": r["prop"], "nnmend_seconds": r["seconds"]}
            for r in recs if r.get("result") == "unsat"]


def _guard_claims(results: Path) -> list[dict]:
    recs = json.loads((results / "guard_acasxu.json").read_text())["records"]
    return [{"source": "guard_acasxu", "net": r["net"], "prop": r["prop"], "nnmend_seconds": r["certificate"]["seconds"]}
            for r in recs if r.get("proved")]


def claims(results: Path, sources: tuple[str, ...]) -> list[dict]:
    """The claims of ``sources``, interleaved: the k-th claim of every property before the (k+1)-th, and within a
    property the ones nnmend decided fastest first (the likeliest to be decided by Marabou within its budget)."""
    found = {"verify_acasxu": _verify_claims, "guard_acasxu": _guard_claims}
    out = []
    for src in sources:
        by_prop: dict[int, list[dict]] = {}
        for c in found[src](results):
            by_prop.setdefault(c["prop"], []).append(c)
        for row in zip_longest(*(sorted(by_prop[k], key=lambda c: c["nnmend_seconds"]) for k in sorted(by_prop))):
            out += [c for c in row if c is not None]
    return out


def not_rechecked(results: Path) -> list[dict]:
    """Verified claims in other committed results, with why they are not re-checked here."""
    rows = []
    for name, why in NOT_RECHECKED.items():
        path = results / f"{name}.json"
        if not path.exists():
            continue
        recs = json.loads(path.read_text()).get("records", [])
        n = sum(bool(r.get("verified") or r.get("proved")) for r in recs)
        rows.append({"results": f"{name}.json", "verified_claims": n, "reason": why})
    return rows


# -- networks --------------------------------------------------------------------------------------
def guarded_network(net: str, prop: int, results: Path) -> torch.nn.Module:
    """The guarded network of ``guard_acasxu.json``, rebuilt and compared with the record."""
    from nnmend.repair.guard import GuardConfig, GuardProblem, build_guard, plan

    i, j = map(int, net.split("_"))
    network, cfg = acasxu(i, j), GuardConfig()
    stages, dlo, _ = plan(network, GuardProblem(read_property(acasxu_property_path(prop))), cfg)
    guarded = build_guard(network, stages, dlo.numel(), 5, cfg).eval()
    rec = next(r for r in json.loads((results / "guard_acasxu.json").read_text())["records"]
               if (r["net"], r["prop"]) == (net, prop))
    added = sum(p.numel() for p in guarded.parameters()) - sum(p.numel() for p in network.parameters())
    ms = [st.bound for st in stages]
    want = [t["M"] for t in rec["targets"]]
    if added != rec["parameters_added"] or not all(
            (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b)))
            for a, b in zip(ms, want)) or len(ms) != len(want):
        raise RuntimeError(f"N{net} φ{prop}: the rebuilt guard differs from the record "
                           f"(+{added} vs +{rec['parameters_added']} parameters, M {ms} vs {want})")
    return guarded


def _network(source: str, net: str, prop: int, results: Path):
    """What Marabou gets: the bundled ONNX file (a path) or the rebuilt module."""
    if source == "verify_acasxu":
        return acasxu_path(*map(int, net.split("_")))
    return guarded_network(net, prop, results)


def confirm(network, prop: int, x: list[float]) -> dict:
    """Marabou's counterexample on the network: float64 torch and onnxruntime (float32), against the regions."""
    import onnxruntime as ort

    from nnmend.io import load_network, save_network

    module = load_network(network) if isinstance(network, Path) else network
    xs = torch.tensor(x, dtype=torch.float64)
    with torch.no_grad():
        y64 = copy.deepcopy(module).double()(xs.reshape(1, -1)).reshape(-1)
    with tempfile.TemporaryDirectory() as tmp:
        path = network if isinstance(network, Path) else save_network(module, Path(tmp) / "n.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        y32 = sess.run(None, {inp.name: np.asarray(x, dtype=np.float32).reshape(shape)})[0].reshape(-1)
    out = {}
    for name, y in (("float64", y64.numpy()), ("onnxruntime", y32.astype(np.float64))):
        ok = False
        for r in read_property(acasxu_property_path(prop)).regions:
            inside = bool(np.all(xs.numpy() >= r.lo.numpy() - 1e-9) and np.all(xs.numpy() <= r.hi.numpy() + 1e-9))
            ok |= inside and any(len(b) and bool(np.all(A.numpy() @ y <= b.numpy())) for A, b in r.unsafe)
        out[name] = ok
    return out


# -- one instance ----------------------------------------------------------------------------------
def one(source: str, net: str, prop: int, timeout: float, results: str, nnmend_seconds: float | None = None,
        wall_limit: float | None = None) -> dict:
    """Marabou on one claim: ``verdict`` agree / disagree / undecided, with Marabou's record."""
    torch.set_num_threads(1)
    network = _network(source, net, prop, Path(results))
    m = marabou.solve(network, acasxu_property_path(prop), timeout, clock="cpu", wall_limit=wall_limit)
    verdict = {"unsat": "agree", "sat": "disagree"}.get(m.status, "undecided")
    rec = {"claim": "unsat", "verdict": verdict, "marabou": m.as_dict()}
    if m.status == "sat":
        rec["counterexample_confirmed"] = confirm(network, prop, list(m.counterexample))
    return rec


# -- report ----------------------------------------------------------------------------------------
def _budgets(records: list[dict], args) -> str:
    """The per-instance CPU budgets the records were run with (a resumed run may have used several)."""
    used = sorted({float(r.get("timeout", args.timeout)) for r in records} or {args.timeout})
    return " or ".join(f"{t:g}" for t in used)


def summarise(records: list[dict], planned: list[dict], args, elsewhere: list[dict]) -> tuple[dict, str]:
    done = {(r["source"], r["net"], r["prop"]) for r in records}
    skipped = [c for c in planned if (c["source"], c["net"], c["prop"]) not in done]
    per: dict[str, dict] = {}
    for src in dict.fromkeys(c["source"] for c in planned):
        mine = [r for r in records if r["source"] == src]
        secs = [r["marabou"]["cpu_seconds"] for r in mine if r.get("verdict") == "agree" and "cpu_seconds" in r["marabou"]]
        per[src] = {"claims": sum(c["source"] == src for c in planned), "rechecked": len(mine),
                    "agree": sum(r.get("verdict") == "agree" for r in mine),
                    "disagree": sum(r.get("verdict") == "disagree" for r in mine),
                    "undecided": sum(r.get("verdict") in ("undecided", None) for r in mine),
                    "not_run": sum(c["source"] == src for c in skipped),
                    "median_marabou_cpu_seconds_agreeing": round(statistics.median(secs), 2) if secs else None}
    total = {k: sum(p[k] for p in per.values()) for k in ("claims", "rechecked", "agree", "disagree", "undecided", "not_run")}
    lines = [f"# Soundness cross-check: nnmend's verified claims re-checked by Marabou{' (quick)' if args.quick else ''}", "",
             f"Marabou 2.0.0, one thread, at most {_budgets(records, args)} CPU seconds per instance (the child process's "
             f"processor time, maraboupy's import included, not the wall clock), "
             f"{'no total limit' if not args.budget else f'{args.budget:g} wall seconds in all (this run)'}. "
             "Marabou gets private copies in a temporary folder (`nnmend.marabou.solve`). agree: Marabou proves the "
             "claim (unsat); disagree: Marabou finds a counterexample; undecided: its budget ran out or it failed; "
             "not run: the run's total budget ran out first (claims are interleaved across properties).", "",
             f"**Disagreements: {total['disagree']}** of {total['rechecked']} re-checked claims "
             f"({total['agree']} agree, {total['undecided']} undecided, {total['not_run']} not run).", "",
             "| results | claims | re-checked | agree | disagree | undecided | not run | median Marabou CPU s (agreeing) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for src, p in per.items():
        lines.append(f"| {src}.json | {p['claims']} | {p['rechecked']} | {p['agree']} | {p['disagree']} | {p['undecided']} | "
                     f"{p['not_run']} | {p['median_marabou_cpu_seconds_agreeing'] if p['median_marabou_cpu_seconds_agreeing'] is not None else '–'} |")
    bad = [r for r in records if r.get("verdict") == "disagree"]
    if bad:
        lines += ["", "## Disagreements", "", "| results | network | property | Marabou counterexample | confirmed (float64 / onnxruntime) |",
                  "|---|---|---|---|---|"]
        for r in bad:
            c = r.get("counterexample_confirmed", {})
            lines.append(f"| {r['source']} | N{r['net']} | φ{r['prop']} | {r['marabou'].get('counterexample')} | "
                         f"{c.get('float64')} / {c.get('onnxruntime')} |")
    if elsewhere:
        lines += ["", "## Verified claims not re-checked", "", "| results | verified claims | why |", "|---|---:|---|"]
        lines += [f"| {e['results']} | {e['verified_claims']} | {e['reason']} |" for e in elsewhere]
    lines += ["", "## Per instance", "", "| results | network | property | nnmend s | Marabou | Marabou wall s | Marabou CPU s | detail |",
              "|---|---|---|---:|---|---:|---:|---|"]
    for r in records:
        m = r.get("marabou") or {}
        lines.append(f"| {r['source']} | N{r['net']} | φ{r['prop']} | {r.get('nnmend_seconds', '')} | "
                     f"{m.get('result', 'error')} | {m.get('seconds', '')} | {m.get('cpu_seconds', '')} | "
                     f"{m.get('detail', r.get('error', ''))} |")
    return {"per_source": per, **total}, "\n".join(lines) + "\n"


def _write(name: str, records: list[dict], planned: list[dict], args, elsewhere: list[dict], started: float) -> dict:
    """Rewrite NAME.{json,md} with the records so far; returns the summary."""
    summary, md = summarise(records, planned, args, elsewhere)
    write_results(name, records, md, args.out, started=started,
                  extra={"quick": args.quick, "summary": summary, "planned": len(planned), "not_rechecked": elsewhere,
                         "args": {k: str(v) for k, v in vars(args).items()}})
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 instances (guard N2,1 φ2, verify N3,1 φ4)")
    ap.add_argument("--timeout", type=float, default=60.0, help="Marabou CPU seconds per instance")
    ap.add_argument("--budget", type=float, default=4800.0, help="wall seconds for the whole run (0: no limit)")
    ap.add_argument("--sources", default=",".join(SOURCES), help="comma-separated: " + ", ".join(SOURCES))
    add_out_arg(ap, RESULTS, "--results-dir")   # where the claims are read and the report written
    ap.add_argument("--claims-dir", type=Path, default=RESULTS, help="committed results holding the claims")
    ap.add_argument("--resume", action="store_true", help="keep the records of an earlier run's NAME.json and skip their claims")
    ap.add_argument("--merge-from", type=Path, nargs="+", default=None,
                    help="run nothing: overlay these result files' records on NAME.json (same claim: theirs win) and rewrite it")
    args = ap.parse_args(argv)
    if not marabou.available():
        raise SystemExit("crosscheck: maraboupy is not installed (requirements.txt installs it)")
    sources = tuple(s for s in args.sources.split(",") if s)
    planned = claims(args.claims_dir, sources)
    if args.quick:
        keys = {(q["source"], q["net"], q["prop"]) for q in QUICK}
        planned = [c for c in planned if (c["source"], c["net"], c["prop"]) in keys]
    name = "crosscheck_quick" if args.quick else "crosscheck"
    elsewhere = [] if args.quick else not_rechecked(args.claims_dir)
    started = time.perf_counter()
    records: list[dict] = []
    previous = args.out / f"{name}.json"
    if (args.resume or args.merge_from) and previous.exists():
        records = json.loads(previous.read_text())["records"]
    if args.merge_from:
        newer = {(r["source"], r["net"], r["prop"]): r for f in args.merge_from for r in json.loads(f.read_text())["records"]}
        records = [newer.pop((r["source"], r["net"], r["prop"]), r) for r in records] + list(newer.values())
        print(json.dumps(_write(name, records, planned, args, elsewhere, started)))
        return
    done = {(r["source"], r["net"], r["prop"]) for r in records}
    for c in [c for c in planned if (c["source"], c["net"], c["prop"]) not in done]:
        left = args.budget - (time.perf_counter() - started) if args.budget else None
        if left is not None and left <= 0:
            break
        job = {**c, "timeout": args.timeout, "results": str(args.claims_dir), "wall_limit": left}
        rec = run_jobs(one, [job], keep_going=True, progress_bar=False)[0]
        rec.pop("results")
        rec.pop("wall_limit")
        records.append(rec)
        print(f"{c['source']} N{c['net']} φ{c['prop']}: {rec.get('verdict', rec.get('error'))} "
              f"({(rec.get('marabou') or {}).get('detail', '')})", flush=True)
        _write(name, records, planned, args, elsewhere, started)
    print(json.dumps(_write(name, records, planned, args, elsewhere, started)))   # claims left out count as not run


if __name__ == "__main__":
    main()
