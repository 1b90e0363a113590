"""``nnmend verify``: decide a VNN-LIB property on a network, or run a VNN-COMP instance list.

    nnmend verify MODEL.onnx PROP.vnnlib [--timeout 116]      # prints unsat / sat + counterexample / timeout / unknown
    nnmend verify --instances instances.csv [--output results.csv]
"""
from __future__ import annotations

import argparse
import csv
import io as _io
import time
from pathlib import Path

import torch

from ..errors import NnmendError, PropertyError

RESULT_WORDS = {"verified": "unsat", "falsified": "sat", "timeout": "timeout", "unknown": "unknown"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="verify a VNN-LIB property on a network (VNN-COMP result line)",
                       description="Decide a VNN-LIB property with sound bounds (CROWN / alpha-CROWN) and input "
                                   "branch and bound; prints unsat, sat with a confirmed counterexample, timeout or unknown.")
    p.add_argument("model", nargs="?", help="network file (.onnx, .nnet, .pt)")
    p.add_argument("property", nargs="?", help="property file (.vnnlib)")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: none; an instance list gives its own)")
    p.add_argument("--instances", metavar="CSV", help="VNN-COMP instance list: onnx,vnnlib,timeout relative to the CSV")
    p.add_argument("--output", metavar="CSV", default="verify_results.csv",
                   help="results CSV for --instances (instance,result,seconds); default verify_results.csv")
    p.set_defaults(func=run)


def counterexample_text(x: torch.Tensor, y: torch.Tensor) -> str:
    """VNN-COMP's witness: ``((X_0 v)\\n (X_1 v) ... (Y_0 v) ...)`` with float64 values."""
    items = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x.reshape(-1))]
    items += [f"(Y_{i} {float(v)!r})" for i, v in enumerate(y.reshape(-1))]
    return "(" + "\n ".join(items) + ")"


def verify_one(model_path: str | Path, property_path: str | Path, timeout: float | None) -> tuple[str, str, float]:
    """``(result word, text to print, seconds)`` for one instance."""
    from ..io import load_network
    from ..properties import check, read_property

    net = load_network(model_path)
    prop = read_property(property_path)
    res = check(net, prop, timeout)
    word = RESULT_WORDS[res.status]
    text = word if res.counterexample is None else f"{word}\n{counterexample_text(*res.counterexample)}"
    return word, text, res.seconds


def read_instances(path: Path) -> list[tuple[Path, Path, float]]:
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise PropertyError(f"{path}: cannot read ({exc})") from None
    out = []
    for line, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise PropertyError(f"{path}:{line}: expected 'onnx,vnnlib,timeout', got {len(row)} fields")
        try:
            timeout = float(row[2])
        except ValueError:
            raise PropertyError(f"{path}:{line}: timeout {row[2]!r} is not a number") from None
        out.append((path.parent / row[0].strip(), path.parent / row[1].strip(), timeout))
    return out


def run_instances(csv_path: Path, output: Path, timeout: float | None = None) -> list[dict]:
    """Run every instance of a VNN-COMP list; write ``output`` (instance,result,seconds) atomically."""
    from .._progress import progress
    from ..io import atomic_write

    records = []
    for model, prop, t in progress(read_instances(csv_path), desc="instances"):
        start = time.monotonic()
        try:
            word, _, _ = verify_one(model, prop, timeout if timeout is not None else t)
        except NnmendError as exc:          # a bad instance is reported, the others still run
            word = f"error: {exc}"
        records.append({"instance": f"{model.name},{prop.name}", "result": word,
                        "seconds": round(time.monotonic() - start, 3)})
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["instance", "result", "seconds"])
    w.writeheader()
    w.writerows(records)
    with atomic_write(output, "w") as fh:
        fh.write(buf.getvalue())
    return records


def run(args: argparse.Namespace) -> int:
    if args.instances:
        if args.model or args.property:
            raise NnmendError("verify: give either MODEL PROPERTY or --instances CSV, not both")
        records = run_instances(Path(args.instances), Path(args.output), args.timeout)
        counts: dict[str, int] = {}
        for r in records:
            counts[r["result"].split(":")[0]] = counts.get(r["result"].split(":")[0], 0) + 1
        print(f"{len(records)} instances: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; wrote {args.output}")
        return 0
    if not (args.model and args.property):
        raise NnmendError("verify: MODEL and PROPERTY are required (or --instances CSV)")
    _, text, _ = verify_one(args.model, args.property, args.timeout)
    print(text)
    return 0
