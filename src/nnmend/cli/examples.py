"""``nnmend examples``: list the networks and properties shipped inside the package, or copy them to a folder.

The bundled files sit inside site-packages under long provenance names; this command gives them short
names the README and the docs use, so every documented command runs on them::

    nnmend examples --list                       # name, kind, size, what it is
    nnmend examples --out .                      # copy all of them here
    nnmend examples --out nets 'acasxu_2_*' prop_2.vnnlib   # only some (shell-style patterns)
"""
from __future__ import annotations

import argparse
import fnmatch
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import NnmendError
from ._common import add_force_arg, check_outputs

_ACAS = re.compile(r"ACASXU_run2a_(\d)_(\d)_batch_2000\.(onnx|nnet)$")


@dataclass(frozen=True)
class Example:
    """One bundled file: the short ``name`` it is copied under, its ``source`` and a one-line ``about``."""
    name: str
    source: Path | None          # None: written by ``content`` (a file derived from bundled ones)
    about: str
    content: str | None = None

    @property
    def size(self) -> int:
        return len(self.content.encode()) if self.content is not None else self.source.stat().st_size


def _assets() -> Path:
    return Path(str(resources.files("nnmend") / "_assets"))


def examples() -> list[Example]:
    """Every bundled network and property, under its short name, in a stable order."""
    root = _assets()
    found: list[Example] = []
    for p in sorted((root / "models").glob("*.pt")):
        found.append(Example(p.name, p, "nnmend checkpoint (MNIST); also loadable by name: "
                                        f"nnmend.pretrained({p.stem!r})"))
    short: dict[str, str] = {}
    for kind in ("onnx", "nnet"):
        for p in sorted((root / "acasxu" / kind).glob(f"*.{kind}"), key=lambda q: _acas_key(q.name)):
            m = _ACAS.match(p.name)
            if m:
                name = f"acasxu_{m[1]}_{m[2]}.{kind}"
                short[p.name] = name
                found.append(Example(name, p, f"ACAS Xu network N{m[1]},{m[2]} ({kind.upper()}, VNN-COMP 2021)"))
    for p in sorted((root / "acasxu" / "vnnlib").glob("prop_*.vnnlib"), key=lambda q: int(q.stem.split("_")[1])):
        found.append(Example(p.name, p, f"ACAS Xu property phi{p.stem.split('_')[1]} (VNN-LIB 1.0)"))
    csv = root / "acasxu" / "acasxu_instances.csv"
    if csv.exists():
        rows = [line.split(",") for line in csv.read_text().splitlines() if line.strip()]
        text = "".join(",".join([short.get(r[0], r[0]), *r[1:]]) + "\n" for r in rows)
        found.append(Example("acasxu_instances.csv", None, f"VNN-COMP 2021 ACAS Xu instance list ({len(rows)} rows; "
                                                          "for nnmend verify --instances)", text))
    return found


def _acas_key(name: str) -> tuple[int, int]:
    m = _ACAS.match(name)
    return (int(m[1]), int(m[2])) if m else (99, 99)


def select(patterns: list[str]) -> list[Example]:
    """The examples whose name matches any of ``patterns`` (shell-style); all of them when none is given."""
    every = examples()
    if not patterns:
        return every
    chosen = [e for e in every if any(fnmatch.fnmatchcase(e.name, pat) for pat in patterns)]
    missing = [pat for pat in patterns if not any(fnmatch.fnmatchcase(e.name, pat) for e in every)]
    if missing:
        raise NnmendError(f"no bundled example named {missing[0]!r}; `nnmend examples --list` shows them all")
    return chosen


def copy_examples(chosen: list[Example], folder: str | Path, force: bool = False) -> list[Path]:
    """Copy ``chosen`` into ``folder`` (created if needed); an existing file is replaced only with ``force``."""
    from ..io.atomic import atomic_write

    folder = Path(folder)
    targets = {folder / e.name: "copied example" for e in chosen}
    check_outputs({}, targets, force)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for e in chosen:
        with atomic_write(folder / e.name, "wb") as fh:
            fh.write(e.content.encode() if e.content is not None else e.source.read_bytes())
        written.append(folder / e.name)
    return written


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("examples", help="list the bundled networks and properties, or copy them to a folder",
                       description="List (default) or copy the networks and properties shipped with nnmend under "
                                   "the short names the README uses (acasxu_2_1.onnx, prop_2.vnnlib, "
                                   "mnist_poisoned.pt, ...).")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these examples (shell patterns, e.g. 'acasxu_2_*')")
    p.add_argument("--list", action="store_true", help="list the examples (the default without --out)")
    p.add_argument("--out", metavar="DIR", help="copy the examples into DIR (created if missing)")
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chosen = select(args.names)
    if args.list or not args.out:
        width = max(len(e.name) for e in chosen)
        for e in chosen:
            print(f"{e.name:<{width}}  {e.size / 1024:8.1f} KiB  {e.about}")
    if args.out:
        written = copy_examples(chosen, args.out, args.force)
        print(f"copied {len(written)} example files to {args.out}")
    return 0
