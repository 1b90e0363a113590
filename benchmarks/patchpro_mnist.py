"""PatchPro (paper 002) Tables I and III, side by side: local-robustness repair of MNIST FNN_small, FNN_big, CNN_small.

Per cell (network, radius r, n): the PGD repair set of research B.5 (``nnmend.repair.repair_sets``;
the n-sets are nested, built once per network and radius), PatchPro with the MNIST artifact setting
(one ``Linear(784, 10)`` patch per property, Adam lr 10, ≤ 25 epochs, CROWN safety distance, no
refinement), float64 certificate of every box and re-check of every property on the saved network. Then

* RSR, RGR (10 held-out PGD samples per origin), DD (full MNIST test set), time (the whole ``repair``);
* with ``--attack`` cells: DSR = AutoAttack (standard, L∞ r, torchattacks, on the whole repaired network)
  on up to ``--dsr-n`` origins; DGSR on the first ``--dgsr-n`` test images the original gets right, in two
  columns: **paper protocol** (patch allocation decided on the clean input and held fixed during the attack)
  and **deployable** (allocation recomputed by the network from whatever input it receives);
* baselines on the same repair set (``--baselines``): fine-tuning and TRADES-style adversarial fine-tuning
  (RSR, RGR, DD, % of neighbourhoods proved by CROWN, time).

Run: ``python benchmarks/patchpro_mnist.py [--quick]``; writes ``benchmarks/results/patchpro_mnist{,_quick}.{json,md}``.
Other settings go into the same file with ``--merge``, each row labelled with its *setting*, e.g.
``--nets fnn_big --radii 0.3 --max-epochs 100 --plateau-factor 0.5 --plateau-patience 3 --attack-ns 0 --baseline-ns 0 --merge``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import torch

from nnmend.benchmarking import add_out_arg, progress, run_jobs, write_results
from nnmend.data import load_dataset
from nnmend.nets import pretrained
from nnmend.repair import provable_metrics as pm
from nnmend.repair.patchpro import PatchProConfig, repair
from nnmend.repair.patchpro.baselines import BaselineConfig, finetune_baseline, proved_fraction, trades_baseline
from nnmend.repair.repair_sets import build_repair_set

RESULTS = Path(__file__).resolve().parent / "results"
NS = (50, 100, 200, 500, 1000)
NETS = ("fnn_small", "fnn_big", "cnn_small")
# Paper Table I / III, "Ours" (PatchPro) columns per (network, r): time (s) and DGSR (%) for n = 50 … 1000;
# RSR, RGR and DSR are 100.0 and DD is 0.0 in every cell. TRADES RSR from Table I.
PAPER_TIME = {
    ("fnn_small", 0.05): (14.3, 24.8, 60.6, 236.7, 756.7), ("fnn_small", 0.1): (15.5, 37.3, 62.5, 193.2, 768.1),
    ("fnn_small", 0.3): (18.6, 52.0, 115.8, 255.9, 935.8), ("fnn_big", 0.05): (14.5, 29.1, 51.2, 290.6, 1033.2),
    ("fnn_big", 0.1): (13.9, 32.1, 75.4, 356.8, 735.9), ("fnn_big", 0.3): (17.1, 37.0, 100.4, 365.4, 1246.4),
    ("cnn_small", 0.05): (14.1, 23.4, 83.6, 221.9, 1001.9), ("cnn_small", 0.1): (12.7, 29.5, 75.1, 337.0, 700.2),
    ("cnn_small", 0.3): (15.0, 32.6, 87.9, 361.4, 1282.6)}
PAPER_DGSR = {
    ("fnn_small", 0.05): (91.3, 96.6, 96.6, 96.6, 96.6), ("fnn_small", 0.1): (96.3, 95.0, 95.2, 95.3, 96.5),
    ("fnn_small", 0.3): (96.5, 96.5, 96.6, 96.6, 96.6), ("fnn_big", 0.05): (97.2,) * 5, ("fnn_big", 0.1): (97.2,) * 5,
    ("fnn_big", 0.3): (96.5, 96.5, 96.6, 97.2, 97.2), ("cnn_small", 0.05): (96.6, 98.3, 98.3, 98.3, 98.3),
    ("cnn_small", 0.1): (98.2, 98.2, 98.2, 98.2, 98.3), ("cnn_small", 0.3): (98.3, 98.3, 98.3, 98.3, 98.2)}
PAPER_TRADES_RSR = {
    ("fnn_small", 0.05): (54.0, 2.0, 3.5, 2.8, 3.9), ("fnn_small", 0.1): (8.0, 13.0, 10.5, 10.0, 10.0),
    ("fnn_small", 0.3): (8.0, 13.0, 10.5, 10.0, 9.8), ("fnn_big", 0.05): (98.0, 78.0, 73.0, 67.0, 71.9),
    ("fnn_big", 0.1): (8.0, 27.0, 15.5, 15.4, 26.4), ("fnn_big", 0.3): (0.0, 4.0, 2.0, 2.2, 4.8),
    ("cnn_small", 0.05): (100.0, 92.0, 88.0, 92.2, 91.2), ("cnn_small", 0.1): (94.0, 94.0, 91.5, 91.6, 92.8),
    ("cnn_small", 0.3): (0.0, 0.0, 0.0, 0.0, 0.2)}


def config_for(net: str, feature_layer: str | None = None, feature_box: str = "bounds", **overrides) -> PatchProConfig:
    # CNN_small: smaller CROWN chunks (memory ∝ boxes × unstable neurons × 784)
    return PatchProConfig.mnist(bound_chunk=16 if net == "cnn_small" else 256, feature_layer=feature_layer,
                                feature_box=feature_box, **overrides)


@lru_cache(maxsize=2)
def repair_set(net: str, radius: float, n_max: int, seed: int):
    return build_repair_set(pretrained(net), load_dataset("mnist", "train"), n=n_max, radius=radius, seed=seed,
                            chunk=min(500, max(64, 2 * n_max)))


@lru_cache(maxsize=1)
def test_set():
    return load_dataset("mnist", "test")


def _pgd(network, x, y, eps):
    from nnmend.attacks import pgd

    return pgd(network, x, y, eps, steps=20, restarts=1)


ATTACKS = {"autoattack": pm._autoattack, "pgd": _pgd}


def adaptive(attack, original):
    """The deployable attacker: per input, the attack on the whole repaired network, or — if that fails —
    the same attack crafted on the original network (it flips the top-2 classes the allocation reads, a
    discontinuity that gradients through the repaired network do not see)."""
    def run(network, x, y, eps):
        a = attack(network, x, y, eps)
        b = attack(original, x, y, eps)
        fooled = pm.decisions(network, a) != y
        return torch.where(fooled.reshape(-1, *([1] * (x.dim() - 1))), a, b)
    return run


def dgsr_paper_protocol(repaired, original, x, y, eps: float, attack=pm._autoattack) -> float:
    """DGSR with the paper's protocol: each test input's patches are chosen from the *clean* input (original
    network's top-2) and held fixed while AutoAttack runs; inputs sharing an allocation are attacked together."""
    keep = pm.decisions(original, x) == y
    x, y = x[keep], y[keep]
    with torch.no_grad():
        weights = repaired.routing(x, original(x))
    groups, inverse = torch.unique(weights, dim=0, return_inverse=True)
    robust = 0.0
    for g in range(len(groups)):                      # one attack per distinct allocation (≤ 90 label pairs)
        idx = inverse == g
        view = repaired.fixed_allocation(groups[g]).eval()
        robust += pm.defense_success_rate(view, x[idx], y[idx], eps, attack=attack) * int(idx.sum()) / 100.0
    return 100.0 * robust / max(len(y), 1)


def one_cell(net: str, radius: float, n: int, n_max: int, attack: bool, baselines: bool, dsr_n: int, dgsr_n: int,
             baseline_epochs: int, seed: int, attack_name: str = "autoattack", feature_layer: str | None = None,
             feature_box: str = "bounds", overrides: dict | None = None) -> dict:
    torch.set_num_threads(1)
    original = pretrained(net)
    rs = repair_set(net, radius, n_max, seed).subset(n)
    test = test_set()
    res = repair(original, rs, config_for(net, feature_layer, feature_box, **(overrides or {})))
    rn = res.network
    rec = {"network": net, "r": radius, "n": n, "verified": res.details.get("proved_by_method"), "feature_box": res.details.get("feature_box"), "seconds": round(res.seconds, 2),
           "epochs": res.details.get("epochs"), "open_boxes": res.details.get("n_open"),
           "recheck": res.details.get("recheck"), "RSR": pm.repair_success_rate(rn, rs.repair_x, rs.labels),
           "RGR": pm.repair_generalization_rate(rn, rs.test_x, rs.test_y), "DD": pm.drawdown(original, rn, test.x, test.y),
           "repair_set_seconds": rs.stats["seconds"]}
    if attack:
        t0 = time.perf_counter()
        m = min(n, dsr_n)
        atk = ATTACKS[attack_name]
        rec["DSR"] = pm.defense_success_rate(rn, rs.origins[:m], rs.labels[:m], radius, attack=atk)
        xt, yt = test.x[:dgsr_n], test.y[:dgsr_n]
        rec["DGSR_paper"] = dgsr_paper_protocol(rn, original, xt, yt, radius, attack=atk)
        rec["DGSR_deployable"] = pm.defense_generalization_rate(rn, original, xt, yt, radius, attack=adaptive(atk, original))
        rec["DGSR_original"] = pm.defense_generalization_rate(original, original, xt, yt, radius, attack=atk)
        rec.update(dsr_n=m, dgsr_n=dgsr_n, attack=attack_name, attack_seconds=round(time.perf_counter() - t0, 1))
    if baselines:
        bcfg = BaselineConfig(epochs=baseline_epochs, seed=seed)
        for name, fn in (("finetune", finetune_baseline), ("trades", trades_baseline)):
            b = fn(original, rs, bcfg)
            rec[name] = {"RSR": pm.repair_success_rate(b.network, rs.repair_x, rs.labels),
                         "RGR": pm.repair_generalization_rate(b.network, rs.test_x, rs.test_y),
                         "DD": pm.drawdown(original, b.network, test.x, test.y),
                         "proved": proved_fraction(b.network, rs), "seconds": round(b.seconds, 2)}
    return rec


def _f(v, d=1) -> str:
    return "–" if v is None or v != v else f"{v:.{d}f}"


def setting(max_epochs: int, plateau_factor: float, plateau_patience: int, feature_layer: str | None,
            feature_box: str) -> str:
    """A row's training setting in words: ``artifact`` (25 epochs, no schedule, input space) or what differs."""
    train = ("artifact" if max_epochs == 25 and plateau_factor >= 1 else f"{max_epochs} epochs"
             + (f", plateau({plateau_factor:g}, {plateau_patience})" if plateau_factor < 1 else ""))
    if feature_layer:
        train += f"; features at {feature_layer} ({'sound box' if feature_box == 'bounds' else 'EMPIRICAL box'})"
    return train


def _order(r: dict) -> tuple:
    net = r.get("network", r.get("net"))
    return (r.get("setting", "artifact") != "artifact", r.get("setting", ""), NETS.index(net) if net in NETS else 9,
            r.get("r", r.get("radius", 0)), r["n"])


def markdown(records: list[dict], quick: bool) -> str:
    total = sum(r.get("job_seconds", 0.0) for r in records)
    feature = any("features at" in r.get("setting", "") for r in records)
    out = [f"# PatchPro on MNIST — {'quick' if quick else 'Tables I and III'}, nnmend vs the paper", "",
           f"{len(records)} cells, total {total:.0f} s on a shared 2-core CPU, 1 torch thread (paper: RTX 3090). "
           "PatchPro: the MNIST artifact setting (one linear patch per property, Adam lr 10, at most 25 epochs, no "
           "schedule) unless the row's *setting* says otherwise (more epochs; ReduceLROnPlateau(factor, patience)). "
           "Paper columns are PatchPro's ('Ours'); in the paper RSR = RGR = DSR = 100.0 and DD = 0.0 in every cell.", "",
           "**Which numbers a deployed model gets:** RSR, RGR, DD, DSR and *DGSR deployable*. The paper's DGSR picks "
           "each test input's patches from the clean input and keeps them while attacking (*DGSR paper protocol*), "
           "which no deployment can do: a deployed network only sees the (possibly attacked) input. *DGSR deployable* "
           "attacks the whole repaired network white-box and, per input, also tries the attack crafted on the "
           "original network (it moves the top-2 classes that the allocation reads; gradients through the repaired "
           "network cannot see that switch).", "",
           *(["**Feature-space rows** (*features at L*): patches read the features after cutting the network at L; "
              "*sound box*: CROWN ∩ IBP bounds of the extractor over each input box (a proof); *EMPIRICAL box*: min/max "
              "over sampled points — NOT a proof.", ""] if feature else []),
           "| network | r | n | setting | proved + re-checked | RSR % | RGR % | DD pp | time s | paper time s | DSR % | "
           "DGSR paper prot. % | DGSR deployable % | DGSR original % | paper DGSR % |",
           "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "error" in r:
            out.append(f"| {r['net'] if 'net' in r else r.get('network')} | {r.get('radius', r.get('r'))} | {r['n']} | "
                       f"{r.get('setting', '')} | error: {r['error'][:60]} |" + " |" * 10)
            continue
        k = NS.index(r["n"]) if r["n"] in NS else None
        pt = PAPER_TIME.get((r["network"], r["r"]))
        pd = PAPER_DGSR.get((r["network"], r["r"]))
        out.append(f"| {r['network']} | {r['r']} | {r['n']} | {r.get('setting', 'artifact')} | "
                   f"{'yes' if r['verified'] else 'NO'} | {_f(r['RSR'])} | "
                   f"{_f(r['RGR'])} | {_f(r['DD'], 2)} | {r['seconds']:.1f} | {pt[k] if pt and k is not None else '–'} | "
                   f"{_f(r.get('DSR'))} | {_f(r.get('DGSR_paper'))} | {_f(r.get('DGSR_deployable'))} | "
                   f"{_f(r.get('DGSR_original'))} | {pd[k] if pd and k is not None else '–'} |")
    base = [r for r in records if "finetune" in r]
    if base:
        out += ["", "## Baselines on the same repair sets (no proof claim; 'proved' = neighbourhoods CROWN certifies)", "",
                "| network | r | n | fine-tune RSR / RGR / DD / proved % / s | TRADES RSR / RGR / DD / proved % / s | paper TRADES RSR |",
                "|---|---:|---:|---|---|---:|"]
        for r in base:
            k = NS.index(r["n"]) if r["n"] in NS else None
            pt = PAPER_TRADES_RSR.get((r["network"], r["r"]))
            cells = [" / ".join([_f(r[m]["RSR"]), _f(r[m]["RGR"]), _f(r[m]["DD"], 2), _f(r[m]["proved"]), _f(r[m]["seconds"])])
                     for m in ("finetune", "trades")]
            out.append(f"| {r['network']} | {r['r']} | {r['n']} | {cells[0]} | {cells[1]} | {pt[k] if pt and k is not None else '–'} |")
    attacked = [r for r in records if "DSR" in r]
    names = sorted({r.get("attack", r.get("attack_name", "autoattack")) for r in attacked})
    what = " / ".join("AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square) via torchattacks" if a == "autoattack"
                      else "PGD (20 steps, random start; quick mode stand-in for AutoAttack)" for a in names)
    out += ["", f"Attack settings: {what or 'no attacked rows'}, L∞ radius r; DSR on up to {counts_of(attacked, 'dsr_n')} origins, DGSR "
            f"on the first {counts_of(attacked, 'dgsr_n')} test images (each row's counts: `dsr_n`, `dgsr_n` in the JSON; only images "
            "the original classifies correctly count). Baselines: "
            f"{counts_of(base, 'baseline_epochs')} epochs (paper TRADES: 200), SGD lr 1e-3, TRADES β = "
            f"{BaselineConfig().beta}.", ""]
    return "\n".join(out)


def counts_of(records: list[dict], key: str) -> str:
    return "/".join(str(v) for v in sorted({r[key] for r in records if key in r})) or "–"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two networks, n = 20, r = 0.1 (smoke test)")
    ap.add_argument("--nets", nargs="+", default=["fnn_small", "fnn_big", "cnn_small"])
    ap.add_argument("--radii", nargs="+", type=float, default=[0.05, 0.1, 0.3])
    ap.add_argument("--ns", nargs="*", type=int, default=list(NS))
    ap.add_argument("--extra", nargs="*", default=[], metavar="NET:R:N",
                    help="extra cells beyond the grid, e.g. fnn_small:0.05:1000 (a documented subset of a large grid)")
    ap.add_argument("--attack-ns", nargs="+", type=int, default=[50], help="cells (by n) that get AutoAttack DSR/DGSR")
    ap.add_argument("--baseline-ns", nargs="+", type=int, default=[50], help="cells (by n) that get the baselines")
    ap.add_argument("--attack", choices=sorted(ATTACKS), default="autoattack",
                    help="attack for DSR/DGSR (quick mode: pgd, 20 steps — AutoAttack takes minutes per cell)")
    ap.add_argument("--dsr-n", type=int, default=50)
    ap.add_argument("--dgsr-n", type=int, default=100)
    ap.add_argument("--baseline-epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    add_out_arg(ap, RESULTS)
    ap.add_argument("--feature-layer", default=None, help="feature-space mode: cut the network at this module name")
    ap.add_argument("--feature-box", choices=("bounds", "empirical"), default="bounds")
    ap.add_argument("--max-epochs", type=int, default=25, help="PatchPro epochs (artifact 25)")
    ap.add_argument("--plateau-factor", type=float, default=1.0, help="ReduceLROnPlateau factor (artifact: none = 1.0)")
    ap.add_argument("--plateau-patience", type=int, default=10)
    ap.add_argument("--merge", action="store_true", help="keep the existing results' cells that this run does not "
                    "redo (same network, r, n and setting): one file for every setting measured")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.nets, args.radii, args.ns, args.attack_ns, args.baseline_ns = ["fnn_small", "cnn_small"], [0.1], [20], [20], [20]
        args.dsr_n, args.dgsr_n, args.baseline_epochs, args.attack = 5, 20, 3, "pgd"
    started = time.perf_counter()
    overrides = {"max_epochs": args.max_epochs, "plateau_factor": args.plateau_factor, "plateau_patience": args.plateau_patience}
    jobs = [{"net": net, "radius": r, "n": n, "n_max": max(args.ns), "attack": n in args.attack_ns,
             "baselines": n in args.baseline_ns, "dsr_n": args.dsr_n, "dgsr_n": args.dgsr_n,
             "baseline_epochs": args.baseline_epochs, "seed": args.seed, "attack_name": args.attack,
             "feature_layer": args.feature_layer, "feature_box": args.feature_box, "overrides": overrides}
            for net in args.nets for r in args.radii for n in sorted(args.ns)]
    jobs = jobs if args.ns else []
    for cell in args.extra:
        net, r, n = cell.split(":")
        jobs.append({"net": net, "radius": float(r), "n": int(n), "n_max": int(n), "attack": False, "baselines": False,
                     "dsr_n": args.dsr_n, "dgsr_n": args.dgsr_n, "baseline_epochs": args.baseline_epochs,
                     "seed": args.seed, "attack_name": args.attack, "overrides": overrides})
    name = "patchpro_mnist_quick" if args.quick else "patchpro_mnist"
    label = setting(args.max_epochs, args.plateau_factor, args.plateau_patience, args.feature_layer, args.feature_box)
    earlier = args.out / f"{name}.json"
    kept = json.loads(earlier.read_text())["records"] if args.merge and earlier.exists() else []
    redo = {(j["net"], j["radius"], j["n"], label) for j in jobs}
    kept = [r for r in kept if (r.get("network"), r.get("r"), r["n"], r.get("setting", "artifact")) not in redo]
    extra = {"quick": args.quick, "seed": args.seed, "config": asdict(PatchProConfig.mnist()),
             "baseline_config": asdict(BaselineConfig(epochs=args.baseline_epochs)), "planned": len(jobs),
             "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if not jobs:
        raise SystemExit("patchpro_mnist: no cells to run (check --nets/--radii/--ns/--extra)")
    records: list[dict] = []
    for job in progress(jobs, desc="patchpro mnist", enabled=True, leave=True):
        records += [{**r, "setting": label} for r in run_jobs(one_cell, [job], progress_bar=False, keep_going=True)]
        # rewritten after every cell so an interrupted run still leaves a labelled partial table
        rows = sorted(kept + records, key=_order)
        md = markdown(rows, args.quick)
        if len(records) < len(jobs):
            md = md.replace(" cells, total", f" cells ({len(jobs) - len(records)} of this run's still to come), total", 1)
        jp, mp = write_results(name, rows, md, args.out, extra=extra, started=started)
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
