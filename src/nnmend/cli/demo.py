"""``nnmend demo``: the SHNN flow end to end on bundled MNIST.

Its output folder is its own: a previous demo run there (a folder holding ``report.json``) is replaced
with a printed notice; any other non-empty folder, or a file, is refused unless ``--force``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NnmendError
from ._common import add_force_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train/load, damage, localise, heal, attack, harden; write a report",
                       description="Run SHNN's self-healing flow on bundled MNIST and write report.json, "
                                   "report.md and PNG figures.")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo; a previous demo run "
                   "there is replaced)")
    p.add_argument("--seed", type=int, default=0, help="seed for model, damage and healing (default 0)")
    p.add_argument("--retrain", action="store_true", help="train the model instead of using the bundled checkpoint")
    p.add_argument("--quick", action="store_true", help="small budgets (a smoke run)")
    add_force_arg(p)
    p.set_defaults(func=run)


def check_run_folder(out: Path, force: bool) -> str | None:
    """Refuse an output folder that is not the demo's own; the notice to print when a run is replaced."""
    if out.exists() and not out.is_dir():
        raise NnmendError(f"{out} (--out) is a file; the demo writes a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    if (out / "report.json").is_file():
        return f"note: replacing the previous demo run in {out}"
    if not force:
        raise NnmendError(f"{out} (--out) is a non-empty folder without a demo report; pass --force to write into it")
    return f"note: writing into {out} (--force); files of the same name are replaced"


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    notice = check_run_folder(Path(args.out), args.force)
    if notice:
        print(notice, flush=True)
    run_demo(args.out, args.seed, retrain=args.retrain, quick=args.quick)
    return 0
