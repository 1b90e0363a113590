"""The ``nnmend`` command. Each sub-command lives in its own module with ``register(subparsers)``;
commands hold no method logic, they parse, call the API and print.

Whatever goes wrong, the user sees one line on stderr: a bad input (:class:`NnmendError`, or a file
the system cannot read or write) exits 2; anything else is an internal error, exit 1, with a hint to
rerun with ``--debug`` for the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .._extras import hint
from .._version import __version__
from ..errors import NnmendError, describe

# One line per command module; each defines register(subparsers) and sets `func` on its parser.
COMMAND_MODULES: list[str] = ["demo", "steps", "convert", "verify", "nca", "repair", "campaign", "app", "examples"]
DEBUG_HELP = "show the full traceback of an unexpected error instead of one line"


def _add_debug(parser: argparse.ArgumentParser, default) -> None:
    """``--debug`` on ``parser`` and on every sub-command below it (so it may follow the command)."""
    parser.add_argument("--debug", action="store_true", default=default, help=DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                # SUPPRESS: a sub-command's default must not reset a --debug given before the command
                _add_debug(sub, argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnmend",
        description="Find and mend defects in trained neural networks: damage, diagnose, repair, verify, save.",
        epilog="Bad input gives one line on stderr and exit code 2; add --debug to see a traceback.",
    )
    parser.add_argument("--version", action="version", version=f"nnmend {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    importlib.import_module(f"{__name__}._common").add_user_model_options(parser)   # --model MODULE:ATTR --weights
    _add_debug(parser, False)
    return parser


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (its lines joined), or its type name when it has none."""
    text = " / ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return text or type(exc).__name__


def failure(exc: Exception) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an exception that reached the top of a command."""
    if isinstance(exc, NnmendError):
        return 2, f"error: {_one_line(exc)}"
    if isinstance(exc, ModuleNotFoundError) and hint(exc.name or ""):   # an optional extra that is not installed
        return 2, f"error: {hint(exc.name or '')}"
    if isinstance(exc, OSError):               # a file the system refuses: missing, a folder, no permission, disk full
        path = exc.filename2 or exc.filename          # os.replace(tmp, dst): name the destination
        where = f"{path}: " if path else ""
        return 2, f"error: {where}{exc.strerror or _one_line(exc)}"
    if isinstance(exc, MemoryError):
        return 2, "error: out of memory (the input may be too large for this machine)"
    return 1, f"internal error: {describe(exc, 300)} (rerun with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    name = " ".join(filter(None, (args.command, getattr(args, "nca_command", None))))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"nnmend {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:                  # noqa: BLE001 - the one place that turns any failure into a line
        if args.debug:
            raise
        code, line = failure(exc)
        print(f"nnmend {name}: {line}", file=sys.stderr)
        return code
