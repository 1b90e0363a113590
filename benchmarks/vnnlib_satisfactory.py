#!/usr/bin/env python
"""VNN-LIB 2.0 conformance: the 178 single-operator cases of ``vnnlib-satisfactory`` 1.0.1 through nnmend.

Each case is a small ONNX network, a VNN-LIB 2.0 query and the expected verdict. The adapter builds them
with the suite's own case registry (into a temporary folder), then for each case reads the query with
:func:`nnmend.io.vnnlib.read_vnnlib` (does it parse?) and runs the ordinary verify path
(:func:`nnmend.cli.verify.run_isolated`: load the network, :func:`nnmend.properties.check`, hard deadline,
one forked worker per case; a query declaring several networks reads each as the case's one model, the file
the suite builds for it). Outcomes: right, wrong (a definite verdict against the expected one),
refused (a clean one-line error, grouped by reason: a VNN-LIB construct, an ONNX operator, ...),
undecided (unknown / timeout) and error (a crash). Writes ``results/vnnlib_satisfactory.{json,md}``.

    python benchmarks/vnnlib_satisfactory.py                  # all 178 cases, 10 s each
    python benchmarks/vnnlib_satisfactory.py --quick          # one case of 12 categories, 5 s each (tests)
    python benchmarks/vnnlib_satisfactory.py --category relu

It is also a solver for the suite's own command line (VNN-LIB 2.0 chapter 5 calling convention):

    vnnlib-satisfactory run --solver benchmarks/vnnlib_satisfactory.py
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.errors import NnmendError, PropertyError  # noqa: E402
from nnmend.report import markdown_table  # noqa: E402

SUITE = "vnnlib-satisfactory 1.0.1"
QUICK_CATEGORIES = ("add", "relu", "gemm", "matmul", "conv", "sigmoid", "flatten", "arithmetic_outc", "hidden",
                    "multi_io", "network_multiple", "arithmetic_lin")


def build_cases(folder: Path, category: str | None = None) -> list[dict]:
    """Write every case's ONNX and query under ``folder``; one job per case."""
    import onnx
    from vnntest.core.registry import get_cases

    jobs = []
    for case in get_cases(suite="full", node_type=category):
        d = folder / case.node_type
        d.mkdir(parents=True, exist_ok=True)
        onnx_path, query = d / f"{case.id}.onnx", d / f"{case.id}.vnnlib"
        onnx.save(case.build_onnx_model(), str(onnx_path))
        spec = case.build_vnnlib_spec()
        query.write_text(spec if isinstance(spec, str) else "\n".join(spec) + "\n")
        jobs.append({"case": f"{case.node_type}/{case.id}", "onnx": str(onnx_path), "vnnlib": str(query),
                     "expected": (case.expected_output() or "unknown").strip().lower()})
    return jobs


def refusal_reason(exc: NnmendError) -> str:
    """A short class for a refusal: the VNN-LIB construct or the ONNX operator it names."""
    msg = str(exc)
    if isinstance(exc, PropertyError):
        for key, label in (("Type mismatch", "tensor types of isomorphic networks differ (the vnnlib parser)"),
                           ("networks", "several networks"), ("hidden-node", "hidden-node variable"),
                           ("input tensors", "several input tensors"), ("output tensors", "several output tensors"),
                           ("a box", "non-box input constraint"), ("not linear", "non-linear constraint"),
                           ("no lower bound", "unbounded input"), ("no upper bound", "unbounded input"),
                           ("mixing inputs and outputs", "input-output constraint"), ("between networks", "several networks"),
                           ("does not accept inputs", "shape mismatch"), ("has type", "tensor type"),
                           ("but the network takes input of shape", "input size differs from the network's (batch axis)")):
            if key in msg:
                return f"property: {label}"
        return "property: other"
    if "data input" in msg:
        return "network: several input tensors"
    node = re.search(r"node '[^']*' \(([A-Za-z0-9]+)\): (.*)", msg)
    if node and "unsupported ONNX operator" in node.group(2):
        return f"network: operator {node.group(1)}"
    if node:
        return f"network: {node.group(1)} attribute or use"
    if "does not depend on the input" in msg:
        return "network: output independent of the input"
    return f"network: {type(exc).__name__}"


def run_case(case: str, onnx: str, vnnlib: str, expected: str, timeout: float) -> dict:
    """One case through the parser and the verify path."""
    from nnmend.cli.verify import run_isolated
    from nnmend.io.vnnlib import read_vnnlib

    rec: dict = {"expected": expected, "parsed": False, "answer": "", "outcome": "", "reason": "", "message": ""}
    try:
        read_vnnlib(vnnlib)
        rec["parsed"] = True
    except PropertyError:
        pass
    t0 = time.monotonic()
    try:
        word, _, _ = run_isolated(onnx, vnnlib, timeout)
        rec["answer"] = word
        if word in ("sat", "unsat"):
            rec["outcome"] = "right" if word == expected else "wrong"
        else:
            rec["outcome"] = "undecided"
    except NnmendError as exc:
        rec.update(outcome="refused", reason=refusal_reason(exc), message=str(exc)[:300])
    except Exception as exc:  # noqa: BLE001  (a crash is a result of this benchmark, not its end)
        rec.update(outcome="error", message=f"{type(exc).__name__}: {str(exc)[:300]}")
    rec["seconds"] = round(time.monotonic() - t0, 3)
    return rec


def summarise(records: list[dict]) -> dict:
    outcomes = collections.Counter(r["outcome"] for r in records)
    reasons = collections.Counter(r["reason"] for r in records if r["outcome"] == "refused")
    return {"cases": len(records), "parsed": sum(r["parsed"] for r in records),
            **{k: outcomes.get(k, 0) for k in ("right", "wrong", "refused", "undecided", "error")},
            "refused_by_reason": dict(reasons.most_common())}


def markdown(records: list[dict], summary: dict, timeout: float) -> str:
    kinds = ("right", "wrong", "refused", "undecided", "error")
    by_cat: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        by_cat[r["case"].split("/")[0]][r["outcome"]] += 1
    lines = [f"# VNN-LIB 2.0 conformance: {SUITE} through nnmend", "",
             f"{summary['cases']} cases, {timeout:g} s each (the verify path with its hard deadline). "
             f"Queries parsed: **{summary['parsed']} / {summary['cases']}**. Target (issue 19): 170 right, 0 wrong.", "",
             markdown_table([{k: summary[k] for k in kinds}]), "## Refusals by reason", "",
             markdown_table([{"reason": k, "cases": v} for k, v in summary["refused_by_reason"].items()], ("reason", "cases")),
             "## Per category", "",
             markdown_table([{"category": cat, "cases": sum(c.values()), **{k: c[k] for k in kinds}}
                             for cat, c in sorted(by_cat.items())], ("category", "cases", *kinds)),
             "## Cases not right", "",
             markdown_table([{"case": r["case"], "expected": r["expected"], "outcome": r["outcome"],
                              "answer / reason": r["answer"] or r["reason"], "message": r["message"][:160].replace("|", "/")}
                             for r in records if r["outcome"] != "right"],
                            ("case", "expected", "outcome", "answer / reason", "message"))]
    return "\n".join(lines)


def solver_main(argv: list[str]) -> int:
    """The suite's calling convention: ``verify QUERY --network N=MODEL [--timeout T]`` (several ``--network``
    naming one file: every declared network is that model); ``supports ...`` is not implemented (exit 1: the
    suite then runs every case)."""
    if not argv or argv[0] != "verify":
        return 1
    ap = argparse.ArgumentParser(prog="vnnlib_satisfactory.py verify")
    ap.add_argument("query")
    ap.add_argument("--network", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=None)
    args = ap.parse_args(argv[1:])
    from nnmend.cli.verify import run_isolated

    files = {n.split("=", 1)[-1] for n in args.network}
    if len(files) != 1:                           # every declared network is read as the one model file
        print("unknown")
        print(f"{args.query}: nnmend reads every declared network as one model file, got {len(files)}", file=sys.stderr)
        return 0
    try:
        word, text, _ = run_isolated(files.pop(), args.query, args.timeout)
    except NnmendError as exc:
        print("unknown")
        print(exc, file=sys.stderr)
        return 0
    print(text)
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["verify"], ["supports"]):
        raise SystemExit(solver_main(argv))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--category", default=None)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per case (default 10, quick 5)")
    add_out_arg(ap, ROOT / "results", "--results")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    timeout = args.timeout or (5.0 if args.quick else 10.0)
    from nnmend.cli.verify import preload

    preload()
    with tempfile.TemporaryDirectory(prefix="vnnlib-satisfactory-") as tmp:
        jobs = build_cases(Path(tmp), args.category)
        if args.quick:
            seen: set[str] = set()
            jobs = [j for j in jobs if j["case"].split("/")[0] in QUICK_CATEGORIES
                    and not (j["case"].split("/")[0] in seen or seen.add(j["case"].split("/")[0]))]
        records = run_jobs(run_case, [{**j, "timeout": timeout} for j in jobs], desc="cases")
    for r in records:
        r["onnx"], r["vnnlib"] = Path(r["onnx"]).name, Path(r["vnnlib"]).name   # the temporary folder is gone
    summary = summarise(records)
    name = "vnnlib_satisfactory" + ("_quick" if args.quick else "") + (f"_{args.category}" if args.category else "")
    md = markdown(records, summary, timeout)
    write_results(name, records, md, args.out, extra={"suite": SUITE, "timeout": timeout, "summary": summary},
                  started=started)
    print(md)


if __name__ == "__main__":
    main()
