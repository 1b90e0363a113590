"""Certificates anyone can check: ACAS Xu repairs re-proved by Marabou on their piecewise-linear ONNX export.

For each instance and method (guard, PatchPro, ProRepair, at the settings of the shipped campaign grid
``src/nnmend/campaign/grids/acasxu.yaml``), the repair runs through the harness (:func:`nnmend.repair.run`)
with ``external="marabou"``: after nnmend's own proof on the saved and reloaded network, the network is
exported to ONNX with piecewise-linear operators only (:mod:`nnmend.repair.export_pwl`; PatchPro's box
indicator as ReLU/big-M gates, exact on its region boxes), checked against the network in onnxruntime, and
Marabou (exact SMT search, none of nnmend's bounds) decides the property on that file. Columns: nnmend's
certificate and its seconds; Marabou's answer on the original network (it finds the violation) and on the
repaired one; the export's scope, operators and largest onnxruntime difference; Marabou's seconds (child
process start-up included). A run nnmend did not prove claims nothing and is not sent to Marabou.

Usage::

    python benchmarks/external_proof.py --quick     # N4,3 φ2 and N2,9 φ8 x guard / PatchPro / ProRepair
    python benchmarks/external_proof.py             # the five instances of campaign_acasxu.md
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nnmend import marabou
from nnmend.acasxu import acasxu_property_path
from nnmend.benchmarking import add_out_arg, run_jobs, write_results
from nnmend.campaign import catalog
from nnmend.campaign.grid import load_grid
from nnmend.campaign.job import load, problem_for, scenario
from nnmend.repair import run

RESULTS = Path(__file__).parent / "results"
GRID = Path(catalog.__file__).parent / "grids" / "acasxu.yaml"
QUICK = [("acasxu_4_3", "phi2"), ("acasxu_2_9", "phi8")]
FULL = [("acasxu_3_4", "phi2"), ("acasxu_4_3", "phi2"), ("acasxu_2_6", "phi2"), ("acasxu_1_9", "phi7"),
        ("acasxu_2_9", "phi8")]
METHODS = ("guard", "patchpro", "prorepair")


def one(network: str, defect: str, method: str, external_timeout: float, original_timeout: float) -> dict:
    torch.set_num_threads(1)
    grid = load_grid(GRID)
    sc = scenario(load(network), grid.defects[defect], 0, {})
    prop_path = acasxu_property_path(grid.defects[defect]["property"])
    before = marabou.solve(sc.network, prop_path, original_timeout)
    base = method.removesuffix("_guard")                    # prorepair_guard: ProRepair with the guard fallback
    settings = {**grid.methods[base], **({"fallback": "guard"} if method != base else {})}
    options = {**{k: v for k, v in grid.options.items() if k in catalog.harness_options()}, "external": "marabou", "external_timeout": external_timeout, "attack": False}
    res = run(base, sc.network, problem_for(base, sc, settings), catalog.make_config(base, settings, 0, sc.kind),
              **options)
    cert = res.certificate or {}
    ext = cert.get("external", {})
    export = ext.get("export", {})
    claims = ext.get("claims", [])
    return {"success": res.success, "verdict": res.verdict, "network_class": type(res.network).__name__,
            "repair_seconds": round(res.seconds, 2), "certificate": cert.get("status"),
            "certificate_seconds": cert.get("seconds"), "marabou_original": before.status,
            "marabou_original_seconds": round(before.seconds, 2), "external": ext.get("status"),
            "external_detail": ext.get("detail") or "; ".join(c.get("detail", "") for c in claims if c["result"] != "unsat"),
            "marabou_seconds": round(sum(c.get("seconds", 0.0) for c in claims), 2),
            "external_seconds": ext.get("seconds"), "export_exact": export.get("exact"), "export_ops": export.get("ops"),
            "export_max_abs_diff": (export.get("equivalence") or {}).get("max_abs_diff"),
            "fdd": res.metrics.get("fdd"), "parameters_added": res.metrics.get("parameters_added")}


def _cell(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 0.1 else f"{v:.{digits}f}"
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v))
    return str(v)


def markdown(records: list[dict], quick: bool, load_avg: tuple[float, float]) -> str:
    ok = [r for r in records if "error" not in r]
    reproved = sum(r["external"] == "unsat" for r in ok)
    claimed = sum(r["certificate"] == "verified" for r in ok)
    disagree = sum(r["external"] == "sat" for r in ok)
    lines = [f"# External proof: ACAS Xu repairs re-proved by Marabou{' (quick)' if quick else ''}", "",
             "`benchmarks/external_proof.py`: each repair through the harness with `external=\"marabou\"` at the shipped "
             "campaign grid's settings (`src/nnmend/campaign/grids/acasxu.yaml`). nnmend proves the property on the "
             "saved and reloaded network (its certificate); the network is then exported to ONNX of piecewise-linear "
             "operators only, compared with the network in onnxruntime, and Marabou 2.0 decides the property on that "
             "file (after checking that it reads the file as onnxruntime computes it at three points of the box).", "",
             f"Marabou re-proved **{reproved} of the {claimed}** certificates nnmend claimed; disagreements: "
             f"**{disagree}**; {len(records) - len(ok)} job(s) failed. Seconds are wall time on 2 CPU cores shared "
             f"with other work (1-minute load average {load_avg[0]:.1f} at the start, {load_avg[1]:.1f} at the end): "
             "upper bounds. Marabou's seconds include its child process start-up (~2-4 s).", "",
             "| network | defect | method | nnmend certificate | cert. s | Marabou on original | Marabou on repaired "
             "| Marabou s | export | operators | onnxruntime max diff | FDD % | repair s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['network']} | {r['defect']} | {r['method']} | error: {r['error'][:120]} |"
                         + " |" * 9)
            continue
        lines.append(f"| {r['network']} | {r['defect']} | {r['method']} | {_cell(r['certificate'])} | "
                     f"{_cell(r['certificate_seconds'])} | {r['marabou_original']} ({_cell(r['marabou_original_seconds'])} s) | "
                     f"**{_cell(r['external'])}** | {_cell(r['marabou_seconds'])} | {_cell(r['export_exact'])} | "
                     f"{_cell(r['export_ops'])} | {_cell(r['export_max_abs_diff'])} | {_cell(r['fdd'], 2)} | "
                     f"{_cell(r['repair_seconds'])} |")
    notes = [f"- {r['network']} {r['defect']} {r['method']}: {r['external_detail'][:300]}" for r in ok
             if r["external"] not in ("unsat", None) and r["external_detail"]]
    if notes:
        lines += ["", "Not re-proved:", *notes]
    lines += ["", "export `everywhere`: the file equals the repaired network on every input (guard, ProRepair's "
              "edited network); `on boxes`: PatchPro, equal on its region boxes (the certified ones) and a continuous "
              "blend outside them, where the method's indicator and allocation are discontinuous and are not written. "
              "`prorepair_guard`: ProRepair with `fallback=\"guard\"` (the output guard over its edited network where "
              "its own certificate does not go through); `skipped`: nnmend proved nothing, so nothing was claimed."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two instances (the test suite runs fewer)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of guard,patchpro,prorepair "
                    "(prorepair_guard: ProRepair with its guard fallback)")
    ap.add_argument("--external-timeout", type=float, default=300.0, help="Marabou's seconds per repair (all claims)")
    ap.add_argument("--original-timeout", type=float, default=60.0, help="Marabou's seconds on the original network")
    ap.add_argument("--instances", default=None, help="comma-separated NETWORK:DEFECT, e.g. acasxu_4_3:phi2")
    add_out_arg(ap, RESULTS)
    ap.add_argument("--merge", action="store_true", help="keep the rows of an earlier run (same file) that this run "
                    "does not repeat")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    chosen = [tuple(s.split(":")) for s in args.instances.split(",")] if args.instances else (QUICK if args.quick else FULL)
    jobs = [{"network": n, "defect": d, "method": m, "external_timeout": args.external_timeout,
             "original_timeout": args.original_timeout} for n, d in chosen for m in args.methods.split(",")]
    records = run_jobs(one, jobs, desc="external proof", keep_going=True)
    name = "external_proof_quick" if args.quick else "external_proof"
    earlier = args.out / f"{name}.json"
    if args.merge and earlier.exists():
        import json

        done = {(r["network"], r["defect"], r["method"]) for r in records}
        records = [r for r in json.loads(earlier.read_text())["records"]
                   if (r["network"], r["defect"], r["method"]) not in done] + records
    write_results(name, records, markdown(records, args.quick, (load0, os.getloadavg()[0])), args.out,
                  started=started, extra={"quick": args.quick, "grid": str(GRID.name)})
    print(f"wrote {args.out / name}.md")


if __name__ == "__main__":
    main()
