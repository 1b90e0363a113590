"""``nnmend demo``: the SHNN flow end to end on bundled MNIST."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train/load, damage, localise, heal, attack, harden; write a report",
                       description="Run SHNN's self-healing flow on bundled MNIST and write report.json, "
                                   "report.md and PNG figures.")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seed for model, damage and healing (default 0)")
    p.add_argument("--retrain", action="store_true", help="train the model instead of using the bundled checkpoint")
    p.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, args.seed, retrain=args.retrain, quick=args.quick)
    return 0
