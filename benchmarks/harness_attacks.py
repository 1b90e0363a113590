"""Which attack the repair harness's robustness figure rests on: PatchPro on MNIST through ``nnmend.repair.run``.

Issue 22 reported that white-box PGD through a patched network gave 91.7 % robust accuracy where transferring
the original network's adversarial examples gave 75.3 % (the box indicator masks gradients). The harness
(:func:`nnmend.repair.run`) therefore reports the minimum over white-box PGD on the whole saved network,
PGD transferred from the original network, and the gradient-free Square attack
(:func:`nnmend.metrics.strongest_attack`), and names the attack that won. This benchmark records each attack's
figure beside the joint one, on the repaired balls (DSR) and on the clean test inputs the original gets
right (DGSR, paper 002's protocol), for PatchPro's MNIST setting (``PatchProConfig.mnist()``).

Grid: networks × radius r, n PGD repair neighbourhoods from the first 2,000 MNIST training images, the
first ``--attack-n`` test images for DGSR, seed 0. ``--quick``: fnn_small, r = 0.1, n = 5, 50 test images.

    python benchmarks/harness_attacks.py [--quick] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nnmend.benchmarking import add_out_arg, run_jobs, write_results
from nnmend.data import load_dataset
from nnmend.nets import pretrained
from nnmend.repair import run
from nnmend.repair.patchpro import PatchProConfig
from nnmend.repair.repair_sets import build_repair_set

ISSUE = {"white-box PGD": 91.7, "transfer": 75.3}
ATTACKS = ("pgd", "transfer", "square")


def one(net: str, radius: float, n: int, attack_n: int, square_queries: int, seed: int) -> dict:
    torch.set_num_threads(1)
    network = pretrained(net)
    rs = build_repair_set(network, load_dataset("mnist", "train", limit=2000), n=n, radius=radius, start=0,
                          steps=60, chunk=200, seed=seed)
    test = load_dataset("mnist", "test", limit=attack_n)
    res = run("patchpro", network, rs, PatchProConfig.mnist(seed=seed), test=test, attack_n=attack_n,
              square_queries=square_queries, seed=seed)
    balls, gen = res.after.get("attack", {}), res.after.get("dgsr_attack", {})
    return {"verdict": res.verdict, "success": res.success, "verified": res.verified, "metrics": res.metrics,
            "dsr": {k: balls.get(k) for k in (*ATTACKS, "robust_accuracy", "strongest")},
            "dgsr": {k: gen.get(k) for k in (*ATTACKS, "robust_accuracy", "strongest", "n")}}


def _f(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def markdown(records: list[dict], quick: bool) -> str:
    lines = ["# Harness: the strongest attack on PatchPro's repaired MNIST networks" + (" (quick)" if quick else ""), "",
             "Robust accuracy (%) of the saved and reloaded repaired network (`nnmend.repair.run`), per attack and "
             "jointly (an input counts only if every attack fails on it). DSR: the n repaired balls' centres; DGSR: "
             "the clean test inputs the original classifies correctly. Issue 22's anchor (a PatchPro MNIST repair "
             f"measured by hand): white-box PGD {ISSUE['white-box PGD']} %, transfer {ISSUE['transfer']} %.", "",
             "| network | r | n | proved % | DSR joint | DGSR white-box PGD | DGSR transfer | DGSR Square | DGSR joint "
             "| strongest (DGSR) | DD pp | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['net']} | {r['radius']} | {r['n']} | error: {r['error'][:80]} |||||||||")
            continue
        m, g = r["metrics"], r["dgsr"]
        lines.append(f"| {r['net']} | {r['radius']} | {r['n']} | {_f(m.get('proved'))} | {_f(r['dsr'].get('robust_accuracy'))} "
                     f"| {_f(g.get('pgd'))} | {_f(g.get('transfer'))} | {_f(g.get('square'))} | {_f(g.get('robust_accuracy'))} "
                     f"| {g.get('strongest')} | {_f(m.get('drawdown'))} | {r['verdict'].split(':')[0]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fnn_small, r = 0.1, n = 5, 50 test images (smoke test)")
    ap.add_argument("--nets", nargs="+", default=["fnn_small"])
    ap.add_argument("--radii", nargs="+", type=float, default=[0.05, 0.1])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--attack-n", type=int, default=500)
    ap.add_argument("--square-queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    add_out_arg(ap, Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.nets, args.radii, args.n, args.attack_n, args.square_queries = ["fnn_small"], [0.1], 5, 50, 200
    started = time.perf_counter()
    jobs = [{"net": net, "radius": r, "n": args.n, "attack_n": args.attack_n, "square_queries": args.square_queries,
             "seed": args.seed} for net in args.nets for r in args.radii]
    records = run_jobs(one, jobs, desc="harness attacks", keep_going=True)
    name = "harness_attacks" + ("_quick" if args.quick else "")
    write_results(name, records, markdown(records, args.quick), args.out, extra={"quick": args.quick, "seed": args.seed,
                  "issue_anchor": ISSUE}, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
