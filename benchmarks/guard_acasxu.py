"""Output guard on ProRepair's 36 ACAS Xu instances: proved or not, fidelity, exactness outside the box, time.

The guard (:mod:`nnmend.repair.guard`) is not a method of the source papers: it is the baseline a
training-based provable repair has to beat, and the fallback where one cannot be proved (N1,9 φ7 and
N2,9 φ8 for ProRepair here). Per instance:

* **proved**: :func:`nnmend.properties.check` on the saved and reloaded guarded network (120 s).
* **FDD**: ``prorepair.property_fdd`` — 5,000 uniform samples of the ``.nnet`` input domain (seed 2),
  original violations left out; the same protocol as ``prorepair_acasxu.md``, so the columns compare.
* **exact outside**: share of those samples lying more than the guard's band from the property's box
  whose five outputs are bit-identical to the original's.
* **violations in the box**: of 10,000 uniform samples inside the property's box (seed 3), how many
  are unsafe before and after.
* ProRepair's best proving run from ``prorepair_acasxu.json`` beside it (FDD, wall seconds).

Usage::

    python benchmarks/guard_acasxu.py            # all 36 instances
    python benchmarks/guard_acasxu.py --quick    # N1,9 φ7 and N2,9 φ8 (the test suite runs this)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from nnmend.acasxu import acasxu, acasxu_property_path
from nnmend.benchmarking import add_out_arg, run_jobs, write_results
from nnmend.bounds.bab import violation
from nnmend.properties import nnet_domain, read_property
from nnmend.repair import run
from nnmend.repair.guard import GuardConfig, GuardProblem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prorepair import instances, property_fdd  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _unsafe(y: torch.Tensor, box) -> torch.Tensor:
    C = torch.cat([A for A, _ in box.unsafe]).double()
    d = torch.cat([b for _, b in box.unsafe]).double()
    groups = torch.cat([torch.full((A.shape[0],), i, dtype=torch.long) for i, (A, _) in enumerate(box.unsafe)])
    return violation(y.double(), C, d, groups, len(box.unsafe)) <= 0


def one(net: str, prop: int, timeout: float) -> dict:
    torch.set_num_threads(1)
    i, j = map(int, net.split("_"))
    network, p = acasxu(i, j), read_property(acasxu_property_path(prop))
    t0 = time.perf_counter()
    # through the harness: it saves, reloads and proves; everything below is measured on that reloaded network
    res = run("guard", network, GuardProblem(p), GuardConfig(certify_timeout=timeout, check_first=0), attack=False)
    seconds = time.perf_counter() - t0
    guarded = res.network
    marabou = _marabou(guarded, acasxu_property_path(prop), timeout)
    box = p.boxes(5)[0]
    lo, hi = nnet_domain(network)
    x = (lo + torch.rand(5000, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * (hi - lo)).float()
    xin = (box.lo + torch.rand(10000, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
           * (box.hi - box.lo)).float()
    with torch.no_grad():
        y0, y1, z0, z1 = network(x), guarded(x), network(xin), guarded(xin)
    far = ((box.lo.float() - x).clamp_min(0) + (x - box.hi.float()).clamp_min(0)).sum(1) > res.details["band"]
    d = res.details
    print(f"guard N{net} φ{prop}: {res.certificate['status']} ({res.certificate['seconds']:.1f} s), "
          f"Marabou {_mar(marabou)}", flush=True)
    return {"proved": bool(res.verified), "certificate": res.certificate, "seconds": round(seconds, 3),
            "build_seconds": d["build_seconds"], "parameters_added": d["parameters_added"], "targets": d["targets"],
            **property_fdd(network, guarded, p),
            "far_points": int(far.sum()), "exact_outside": float((y0[far] == y1[far]).all(1).float().mean()) if far.any() else math.nan,
            "box_samples": len(xin), "unsafe_before": int(_unsafe(z0, box).sum()), "unsafe_after": int(_unsafe(z1, box).sum()),
            "advisory_changed_in_box": int((z0.argmin(1) != z1.argmin(1)).sum()),
            **_known_violations(network, guarded, box, (i, j, prop)), "marabou": marabou}


def _marabou(network, prop_path: Path, timeout: float) -> dict | None:
    """Marabou 2.0 (exact, independent of nnmend's bounds) on the ONNX export: "unsat" = the property holds.
    Through :func:`nnmend.marabou.solve`, which hands Marabou copies in a temporary folder."""
    from nnmend import marabou

    if not marabou.available():
        return None
    return marabou.solve(network, prop_path, timeout).as_dict()


def _known_violations(network, guarded, box, key) -> dict:
    """φ7's violations are too rare for uniform sampling of the box (about one in a million): the 23 points that
    ``acasxu_phi7.py`` found on N1,9 are checked on both networks."""
    path = RESULTS / "acasxu_phi7.json"
    if key != (1, 9, 7) or not path.exists():
        return {}
    x = torch.tensor(json.loads(path.read_text())["records"][0]["sampling"]["violations_x"], dtype=torch.float64)
    with torch.no_grad():
        before, after = _unsafe(network.double()(x), box), _unsafe(guarded.double()(x), box)
    network.float(), guarded.float()
    return {"known_violations": {"n": len(x), "unsafe_before": int(before.sum()), "unsafe_after": int(after.sum()),
                                 "source": "acasxu_phi7.json"}}


def prorepair_best(results: Path) -> dict:
    """Per instance, ProRepair's proving run with the lowest FDD (from the merged ``prorepair_acasxu.json``)."""
    path = results / "prorepair_acasxu.json"
    if not path.exists():
        return {}
    best: dict = {}
    for r in json.loads(path.read_text())["records"]:
        if r.get("proved") and not (r.get("fallback") or {}).get("verified"):     # the training's own proofs
            key = (r["net"], r["prop"])
            if key not in best or r["fdd"] < best[key]["fdd"]:
                best[key] = r
    return best


def _mar(m: dict | None) -> str:
    return "not run" if not m else f"{m['result']} ({m['seconds']:.1f} s)"


def markdown(records: list[dict], quick: bool, best: dict) -> str:
    done = [r for r in records if "error" not in r]
    proved = sum(r["proved"] for r in done)
    lines = [f"# Output guard on ProRepair's ACAS Xu instances{' (quick)' if quick else ''}", "",
             f"Proved on the saved network: **{proved}/{len(records)}**; ProRepair (training, best run of "
             f"`prorepair_acasxu.md`): {len(best)}/36. The guard is nnmend's provable-by-construction baseline "
             "(`nnmend.repair.guard`), not a method of the papers: it lowers one output where the property's unsafe "
             "set would be reached, inside the property's box only, and the proof is alpha-CROWN branch and "
             "bound on the reloaded network.", "",
             "FDD: 5,000 uniform samples of the `.nnet` input domain (seed 2), original violations left out (as "
             "`prorepair_acasxu.md`). Exact outside: share of those samples more than the band (1e-3, L1) outside "
             "the box whose outputs are bit-identical to the original's. In-box: 10,000 uniform samples of the "
             "property's box (seed 3): unsafe before → after, and how many advisories changed.", "",
             "Marabou: Marabou 2.0.0 on the guarded network's ONNX export with the same VNN-LIB file (exact and "
             "independent of nnmend's bounds; `unsat` = the property holds).", "",
             "| network | property | proved | cert. s | Marabou | total s | +params | FDD % | exact outside | in-box unsafe before → after | advisories changed | ProRepair FDD % | ProRepair s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| N{r['net']} | φ{r['prop']} | error: {r['error'][:80]} |" + " |" * 10)
            continue
        b = best.get((r["net"], r["prop"]))
        pr = (f"{100 * b['fdd']:.2f} | {b['seconds']:.0f}" if b else "not proved | –")
        lines.append(f"| N{r['net']} | φ{r['prop']} | {'yes' if r['proved'] else 'no: ' + r['certificate']['status']} | "
                     f"{r['certificate']['seconds']:.1f} | {_mar(r.get('marabou'))} | {r['seconds']:.1f} | {r['parameters_added']} | "
                     f"{100 * r['fdd']:.2f} | {r['exact_outside']:.4f} ({r['far_points']}) | {r['unsafe_before']} → "
                     f"{r['unsafe_after']} | {r['advisory_changed_in_box']} | {pr} |")
    for r in done:
        k = r.get("known_violations")
        if k:
            lines += ["", f"N{r['net']} φ{r['prop']}: of the {k['n']} violating inputs found by `{k['source']}`, "
                      f"{k['unsafe_before']} are unsafe on the original and {k['unsafe_after']} on the guarded network."]
    both = [(r, best[(r["net"], r["prop"])]) for r in done if (r["net"], r["prop"]) in best]
    if both:
        lines += ["", f"Against ProRepair on the {len(both)} instances both prove: guard FDD ≤ ProRepair's on "
                  f"{sum(g['fdd'] <= p['fdd'] for g, p in both)}, guard faster on {sum(g['seconds'] < p['seconds'] for g, p in both)} "
                  f"(guard FDD {100 * max(g['fdd'] for g, _ in both):.2f} % at most, ProRepair "
                  f"{100 * min(p['fdd'] for _, p in both):.2f}–{100 * max(p['fdd'] for _, p in both):.2f} %). "
                  f"Parameters: the guard adds {min(r['parameters_added'] for r in done)}–"
                  f"{max(r['parameters_added'] for r in done)} (the ACAS Xu network has "
                  f"{sum(p.numel() for p in acasxu(1, 1).parameters()):,}); ProRepair edits "
                  f"{'/'.join(sorted({str(p.get('edited_parameters')) for _, p in both}))} in place."
                  + (" On φ2 no sampled advisory changed: a violation of φ2 is COC being the *largest* score, and "
                     "the advisory is the smallest." if all(g["advisory_changed_in_box"] == 0 for g, _ in both
                                                            if g["prop"] == 2) else "")]
    if done:
        secs = sorted(r["seconds"] for r in done)
        lines += ["", f"Guard wall seconds: median {secs[len(secs) // 2]:.1f}, max {secs[-1]:.1f} (certificate included, "
                  "one core). Largest FDD: " + f"{100 * max(r['fdd'] for r in done):.2f} %."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0, help="certificate seconds per instance")
    add_out_arg(ap, RESULTS, "--results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    chosen = [(1, 9, 7), (2, 9, 8)] if args.quick else instances()
    jobs = [{"net": f"{i}_{j}", "prop": k, "timeout": args.timeout} for i, j, k in chosen]
    records = run_jobs(one, jobs, desc="guard acasxu", keep_going=True)
    name = "guard_acasxu_quick" if args.quick else "guard_acasxu"
    write_results(name, records, markdown(records, args.quick, prorepair_best(RESULTS)), args.out, started=started,
                  extra={"quick": args.quick, "seed": 2, "config": repr(GuardConfig(certify_timeout=args.timeout))})


if __name__ == "__main__":
    main()
