"""The ``nnmend`` command. Each sub-command lives in its own module with ``register(subparsers)``;
commands hold no method logic, they parse, call the API and print."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import NnmendError

# One line per command module; each defines register(subparsers) and sets `func` on its parser.
COMMAND_MODULES: list[str] = ["demo", "steps", "convert", "verify", "nca", "repair", "app"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmend",
        description="Find and mend defects in trained neural networks: damage, diagnose, repair, verify, save.",
    )
    parser.add_argument("--version", action="version", version="nnmend 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except NnmendError as exc:
        print(f"nnmend {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
