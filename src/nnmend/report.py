"""Reports for any run: ``report.json`` + ``report.md`` + PNG figures, with versions, seed and timings.

Example::

    rep = Report("nnmend demo", seed=0)
    rep.add_row({"scenario": "zero fc2", "healed_accuracy": 0.979, ...})
    rep.add_figure("mad_zero_fc2.png", "MAD per layer")   # files written by nnmend.plots into rep dir
    rep.write("runs/demo")
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .io.atomic import atomic_write


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded in every report and benchmark result."""
    import numpy
    import torch

    from . import __version__

    return {
        "nnmend": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "–" if v is None else str(v)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) over ``columns`` (default: keys of the first row)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
    return path


@dataclass
class Report:
    title: str
    seed: int | None = None
    rows: list[dict] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    columns: list[str] | None = None
    started: float = field(default_factory=time.perf_counter)

    def add_row(self, row: dict) -> None:
        self.rows.append(row)

    def add_figure(self, filename: str, caption: str) -> None:
        self.figures.append((filename, caption))

    def to_dict(self) -> dict:
        return {"title": self.title, "seed": self.seed, "environment": environment(),
                "seconds": round(time.perf_counter() - self.started, 2), "scenarios": self.rows,
                "figures": [f for f, _ in self.figures], "notes": self.notes, **self.extra}

    def markdown(self) -> str:
        out = [f"# {self.title}\n", markdown_table(self.rows, self.columns)]
        if self.notes:
            out.append("\n" + "\n".join(f"- {n}" for n in self.notes) + "\n")
        for f, cap in self.figures:
            out.append(f"\n![{cap}]({f})\n\n*{cap}*\n")
        env = environment()
        out.append(f"\n_nnmend {env['nnmend']}, torch {env['torch']}, {env['platform']}, seed {self.seed}_\n")
        return "\n".join(out)

    def write(self, directory: str | os.PathLike) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_json(self.to_dict(), d / "report.json")
        with atomic_write(d / "report.md", "w") as fh:
            fh.write(self.markdown())
        return d
