"""Reports for any run: ``report.json`` + ``report.md`` + PNG figures + ``report.html`` (one self-contained page,
figures embedded), with versions, seed and timings.

Example::

    rep = Report("nnmend demo", seed=0)
    rep.add_row({"scenario": "zero fc2", "healed_accuracy": 0.979, ...})
    rep.add_figure("mad_zero_fc2.png", "MAD per layer")   # files written by nnmend.plots into rep dir
    rep.write("runs/demo")                                 # report.json, report.md, report.html
"""
from __future__ import annotations

import base64
import html
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


def html_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """The HTML twin of :func:`markdown_table` (same columns, same number formatting, escaped)."""
    if not rows:
        return "<p>(no rows)</p>\n"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>\n"
                   for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;"
        "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "figure{margin:1.5rem 0}img{max-width:100%}figcaption{font-style:italic;color:#555}"
        "pre{background:#f6f6f6;padding:.75rem;overflow:auto;font-size:.8rem}footer{color:#777;font-size:.8rem}")


def html_page(title: str, body: str) -> str:
    """A standalone HTML document (inline style, no external file) around ``body``."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def embedded_figure(path: str | os.PathLike, caption: str) -> str:
    """``<figure>`` with the PNG/JPEG/SVG at ``path`` inlined as a base64 data URI (a note if it is missing)."""
    path = Path(path)
    kinds = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
    cap = f"<figcaption>{html.escape(caption)}</figcaption>"
    if not path.is_file() or path.suffix.lower() not in kinds:
        return f"<figure><p>(figure {html.escape(path.name)} not found)</p>{cap}</figure>\n"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:{kinds[path.suffix.lower()]};base64,{data}\" "
            f"alt=\"{html.escape(caption)}\">{cap}</figure>\n")


def json_html(obj: Any, level: int = 2) -> str:
    """Any JSON-able report (a command's ``.json``) as HTML: scalars in a field/value table, lists of
    records as tables, nested mappings as sections."""
    if isinstance(obj, dict):
        flat = {k: v for k, v in obj.items() if not isinstance(v, (dict, list))}
        out = [html_table([{"field": k, "value": v} for k, v in flat.items()])] if flat else []
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                out.append(f"<h{min(level, 6)}>{html.escape(str(k))}</h{min(level, 6)}>\n" + json_html(v, level + 1))
        return "".join(out)
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        cols = list(dict.fromkeys(k for r in obj for k, v in r.items() if not isinstance(v, (dict, list))))
        nested = any(isinstance(v, (dict, list)) for r in obj for v in r.values())
        return html_table(obj, cols) + ("<details><summary>nested fields</summary><pre>" + html.escape(
            json.dumps(obj, indent=2, default=str)) + "</pre></details>\n" if nested else "")
    return f"<pre>{html.escape(json.dumps(obj, indent=2, default=str))}</pre>\n"


def report_html(report: dict, title: str) -> str:
    """A self-contained page for a command's JSON ``report`` (what ``nnmend repair`` writes beside ``--out``)."""
    return html_page(title, f"<h1>{html.escape(title)}</h1>\n" + json_html(report))


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

    def html(self, directory: str | os.PathLike = ".") -> str:
        """One self-contained page: the table, notes, figures (read from ``directory``, embedded) and the
        remaining JSON fields, so the page can be mailed or attached on its own."""
        env = environment()
        out = [f"<h1>{html.escape(self.title)}</h1>\n", html_table(self.rows, self.columns)]
        if self.notes:
            out.append("<ul>\n" + "".join(f"<li>{html.escape(str(n))}</li>\n" for n in self.notes) + "</ul>\n")
        out += [embedded_figure(Path(directory) / f, cap) for f, cap in self.figures]
        details = {"scenarios": self.rows, **self.extra}
        out.append("<details><summary>all fields (as in report.json)</summary>\n<pre>"
                   + html.escape(json.dumps(details, indent=2, default=str)) + "</pre></details>\n")
        out.append(f"<footer>nnmend {html.escape(str(env['nnmend']))}, torch {html.escape(env['torch'])}, "
                   f"{html.escape(env['platform'])}, seed {self.seed}, {env['date']}</footer>\n")
        return html_page(self.title, "".join(out))

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``report.json``, ``report.md`` and ``report.html`` into ``directory`` (figures already there)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_json(self.to_dict(), d / "report.json")
        with atomic_write(d / "report.md", "w") as fh:
            fh.write(self.markdown())
        with atomic_write(d / "report.html", "w") as fh:
            fh.write(self.html(d))
        return d
