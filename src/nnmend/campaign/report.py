"""The comparison report of a campaign: per network and defect, each method side by side.

``write_report(records, directory)`` writes ``report.json`` + ``report.md`` (through
:class:`nnmend.report.Report`) and ``pareto.png`` (success vs drawdown, marker area ∝ time, through
:func:`nnmend.plots.pareto_scatter`). Cells aggregate over seeds: success and certificates as
``k/n``, drawdown (pp or %, see the notes) and time as means, failed jobs counted apart (their figures are not averaged in).
"""
from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path

from ..report import Report, markdown_table

CELL_COLUMNS = ["network", "defect", "method", "jobs", "failed", "success", "certified", "certificate", "drawdown",
                "seconds", "parameters_added"]
METHOD_COLUMNS = ["method", "jobs", "failed", "success_%", "certified_%", "median_drawdown", "median_seconds",
                  "median_parameters_added"]


def _mean(values: list) -> float | None:
    v = [float(x) for x in values if x is not None]
    return statistics.fmean(v) if v else None


def _median(values: list) -> float | None:
    v = [float(x) for x in values if x is not None]
    return statistics.median(v) if v else None


def _group(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple((r.get(k) or {}).get("name") if k == "defect" else r.get(k) for k in keys)].append(r)
    return groups


def cell_rows(records: list[dict]) -> list[dict]:
    """One row per (network, defect, method), over seeds."""
    rows = []
    for (net, defect, method), rs in sorted(_group(records, ("network", "defect", "method")).items(),
                                            key=lambda kv: tuple(str(k) for k in kv[0])):
        ok = [r for r in rs if r.get("status") == "ok"]
        rows.append({"network": os.path.basename(str(net)), "defect": defect, "method": method, "jobs": len(rs),
                     "failed": len(rs) - len(ok), "success": f"{sum(bool(r.get('success')) for r in ok)}/{len(ok)}",
                     "certified": f"{sum(r.get('certificate') == 'verified' for r in ok)}/{len(ok)}",
                     "certificate": ", ".join(sorted({str(r.get("certificate")) for r in ok})) or None,
                     "drawdown": _mean([r.get("drawdown") for r in ok]), "seconds": _mean([r.get("seconds") for r in ok]),
                     "parameters_added": _mean([r.get("parameters_added") for r in ok]),
                     "errors": sorted({r["error"] for r in rs if r.get("error")})[:3]})
    return rows


def method_rows(records: list[dict]) -> list[dict]:
    """One row per method over every cell: the campaign's answer to "which method, at what cost"."""
    rows = []
    for (method,), rs in sorted(_group(records, ("method",)).items(), key=lambda kv: str(kv[0])):
        ok = [r for r in rs if r.get("status") == "ok"]
        n = len(ok) or 1
        rows.append({"method": method, "jobs": len(rs), "failed": len(rs) - len(ok),
                     "success_%": 100 * sum(bool(r.get("success")) for r in ok) / n,
                     "certified_%": 100 * sum(r.get("certificate") == "verified" for r in ok) / n,
                     "median_drawdown": _median([r.get("drawdown") for r in ok]),
                     "median_seconds": _median([r.get("seconds") for r in ok]),
                     "median_parameters_added": _median([r.get("parameters_added") for r in ok])})
    return rows


def write_report(records: list[dict], directory: str | os.PathLike, *, title: str = "campaign") -> Path:
    """Write the report of ``records`` (as the store returns them) into ``directory``."""
    from ..plots import pareto_scatter

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cells, methods = cell_rows(records), method_rows(records)
    rep = Report(f"nnmend campaign: {title}", rows=cells, columns=CELL_COLUMNS,
                 extra={"methods": methods, "jobs": len(records)})
    rep.notes += [
        "success: the repair harness's verdict on the saved and reloaded network (target met, clean behaviour kept); "
        "certified: a sound certificate on the saved network (certificate: the statuses met: verified, falsified, "
        "timeout, unknown, or none where the target carries no proof); failed: jobs that raised (not averaged in).",
        "drawdown: clean test accuracy lost in percentage points (for a fault: from the clean network), or for a "
        "property the fidelity drawdown FDD in % of uniform domain samples; seconds: the repair's wall time; "
        "parameters_added: size of the repair.",
        "Per method over all cells:\n\n" + markdown_table(methods, METHOD_COLUMNS),
    ]
    failed = [c for c in cells if c["failed"]]
    if failed:
        rep.notes.append("Failed jobs: " + "; ".join(f"{c['network']} {c['defect']} {c['method']}: {' / '.join(c['errors'])}"
                                                      for c in failed[:10]))
    points = [{"label": m["method"], "drawdown": m["median_drawdown"], "success": m["success_%"],
               "seconds": m["median_seconds"]} for m in methods]
    pareto_scatter(points, d / "pareto.png", x="drawdown", y="success", size="seconds",
                   xlabel="median drawdown (pp of accuracy, or FDD %)", ylabel="success (%)", size_label=" s",
                   title="ringed: the Pareto front; marker area ∝ median repair time")
    rep.add_figure("pareto.png", "success vs drawdown per method; marker area ∝ median repair time")
    return rep.write(d)
