"""Per-operator soundness table: every case of ``tests/_operator_cases.py`` (each operator of the bounds'
table and each attribute variant), float32 and float64, several seeds; 10^5 sampled points per case
(vertices, faces, uniform) plus PGD towards every bound, against IBP, CROWN (three intermediate modes) and
alpha-CROWN. Reports points checked, violations and the mean widths (CROWN / IBP).

    python benchmarks/bounds_operators.py [--seeds 3] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.report import markdown_table  # noqa: E402
from _operator_cases import CASES  # noqa: E402
from test_bounds_operators import check_case  # noqa: E402


def one(name: str, dtype: str, seed: int, points: int) -> dict:
    r = check_case(name, getattr(torch, dtype), seed, points)
    return {"points": r["points"], "violations": r["violations"], "worst": r["worst"],
            "crown_over_ibp": r["widths"]["crown"] / max(r["widths"]["ibp"], 1e-30),
            "alpha_over_crown": r["widths"]["alpha-crown"] / max(r["widths"]["crown"], 1e-30)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="3 cases, one seed, 10^4 points")
    add_out_arg(ap, ROOT / "benchmarks" / "results", "--results-dir")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    names = sorted(CASES)[:3] if args.quick else sorted(CASES)
    seeds = 1 if args.quick else args.seeds
    points = 10_000 if args.quick else args.points
    jobs = [{"name": n, "dtype": d, "seed": s, "points": points}
            for n in names for d in ("float32", "float64") for s in range(seeds)]
    torch.set_num_threads(1)
    records = run_jobs(one, jobs, desc="operators")
    lines = ["# Per-operator soundness (sampling + PGD)", "",
             f"{len(names)} cases x float32/float64 x {seeds} seed(s); per case {points:,} sampled points (half box "
             "vertices, a quarter face points, a quarter uniform) plus PGD towards each bound of each of 3 random "
             "specification rows per box (2 boxes), against IBP, CROWN (intermediate crown / ibp / forward) and "
             "alpha-CROWN. A violation is a point outside a bound by more than rounding (1e-5 relative in float32, "
             "1e-10 in float64).", ""]
    by_case = {n: [r for r in records if r["name"] == n] for n in names}
    lines.append(markdown_table([
        {"case": n, "outputs checked": f"{sum(r['points'] for r in rs):,}", "violations": str(sum(r["violations"] for r in rs)),
         "worst excess": f"{max(r['worst'] for r in rs):.2g}",
         "CROWN / IBP width": f"{sum(r['crown_over_ibp'] for r in rs) / len(rs):.3f}",
         "alpha / CROWN width": f"{sum(r['alpha_over_crown'] for r in rs) / len(rs):.3f}"} for n, rs in by_case.items()]))
    total_v = sum(r["violations"] for r in records)
    lines += [f"**Total: {sum(r['points'] for r in records):,} outputs checked, {total_v} violations.**", ""]
    write_results("bounds_operators_quick" if args.quick else "bounds_operators", records, "\n".join(lines), args.out,
                  started=started, extra={"seeds": seeds, "points": points})
    return 1 if total_v else 0


if __name__ == "__main__":
    raise SystemExit(main())
