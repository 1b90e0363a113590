"""NNrepair (paper 004) Table 2, side by side: scenario × layer × setting × strategy × F1 filter.

For every job the experts are solved once (HiGHS LP/MILP, seconds per expert recorded), then every
combination strategy with the F1 filter off and on is scored on the paper's sets (Test, P-Test,
Adv-Test — the latter crafted on the *original* network, a transfer evaluation). The strategy with the
best headline figure (the paper's protocol picks it on the test sets) is then attacked afresh,
white-box, FGSM and PGD at ε = 0.05 on the whole composite (experts and combination rule inside the
forward pass): the number a deployed model would get against an adaptive attacker.

Settings: ``paper`` = the paper's defaults (last layer: 5 failing + 5 passing inputs, top-5 edges,
MaxSAT, ExpC/ExpB extra clean inputs in scenarios 2/3; intermediate: pattern rows, hard LP);
``nnmend`` = soft LP with hard non-interference rows (other classes' clean passing inputs keep their
decision); last layer: all failing inputs, 10 edges, 1,000 protected inputs; intermediate layer:
every pattern neuron symbolic and exact decision rows for the failing inputs, 150 protected inputs.

Run: ``python benchmarks/nnrepair.py [--quick]``; writes ``benchmarks/results/nnrepair{,_quick}.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nnmend import load_dataset
from nnmend.attacks import fgsm, pgd
from nnmend.benchmarking import add_out_arg, run_jobs, write_results
from nnmend.nets import pretrained
from nnmend.report import environment
from nnmend.repair.nnrepair import NNRepairConfig, build_scenario, f1_filter, repair
from nnmend.repair.nnrepair.config import STRATEGIES

RESULTS = Path(__file__).resolve().parent / "results"
EPS = 0.05
MATCHED_EPS = 0.12   # FGSM radius at which mnist_full's Adv-Test accuracy is near the paper's 28.37 %
# Paper Table 2 (MNIST rows): original accuracies and the best improvement in pp, with its strategy.
PAPER = {
    ("accuracy", "mnist_lq", "intermediate"): {"orig": {"test": 96.34}, "delta": {"test": 0.20}, "best": "Votes, F1 ON(3)"},
    ("accuracy", "mnist_lq", "last"): {"orig": {"test": 96.34}, "delta": {"test": 0.00}, "best": "ALL, F1 ON(0)"},
    ("accuracy", "mnist_hq", "intermediate"): {"orig": {"test": 98.89}, "delta": {"test": 0.02}, "best": "Merged, F1 ON(3)"},
    ("accuracy", "mnist_hq", "last"): {"orig": {"test": 98.89}, "delta": {"test": 0.00}, "best": "ALL, F1 ON(0)"},
    ("poisoned", "mnist_poisoned", "intermediate"): {"orig": {"test": 98.63, "p_test": 10.38},
                                                     "delta": {"test": -0.01, "p_test": 1.81}, "best": "Votes, F1 ON(2)"},
    ("poisoned", "mnist_poisoned", "last"): {"orig": {"test": 98.63, "p_test": 10.38},
                                             "delta": {"test": -3.11, "p_test": 45.56}, "best": "Confidence, F1 OFF"},
    ("adversarial", "mnist_full", "intermediate"): {"orig": {"test": 97.87, "adv_test": 28.37},
                                                    "delta": {"test": -4.15, "adv_test": 3.87}, "best": "Confidence, F1 ON(9)"},
    ("adversarial", "mnist_full", "last"): {"orig": {"test": 97.87, "adv_test": 28.37},
                                            "delta": {"test": -3.14, "adv_test": 10.40}, "best": "Merged, F1 ON(10)"},
}


def settings(name: str, scenario: str, layer: str) -> NNRepairConfig:
    last = layer == "last"
    if name == "paper":
        extra = {"poisoned": 50, "adversarial": 10}.get(scenario, 0)   # ExpC / ExpB, the paper's best
        return NNRepairConfig.paper(layer=layer, extra_clean=extra, on_infeasible="soft")
    if last:        # NNRepairConfig's defaults are this setting, but for these two (one default serves both layers)
        return NNRepairConfig(layer=layer, extra_clean=50, non_interference=1000)
    return NNRepairConfig(layer=layer, decision_rows=True)    # else the defaults: soft LP, every pattern neuron, 150 kept


def jobs(quick: bool) -> list[dict]:
    if quick:
        return [dict(scenario="poisoned", model="mnist_poisoned", layer="last", setting="paper"),
                dict(scenario="accuracy", model="mnist_lq", layer="intermediate", setting="paper")]
    out = []
    for scenario, model in (("poisoned", "mnist_poisoned"), ("adversarial", "mnist_full"),
                            ("accuracy", "mnist_lq"), ("accuracy", "mnist_hq")):
        for layer in ("last", "intermediate"):
            for setting in ("paper", "nnmend"):
                if model == "mnist_hq" and setting == "nnmend":
                    continue
                out.append(dict(scenario=scenario, model=model, layer=layer, setting=setting))
    # Our mnist_full keeps 83 % under FGSM at eps 0.05, the paper's model 28 %: at eps 0.12 ours starts near the
    # paper's 28 %, so these rows compare the repair with the same head-room.
    for layer in ("last", "intermediate"):
        for setting in ("paper", "nnmend"):
            out.append(dict(scenario="adversarial", model="mnist_full", layer=layer, setting=setting, eps=MATCHED_EPS))
    return out


@torch.no_grad()
def _score_all(ens, original, evals: dict, active_sets: dict) -> dict:
    """Accuracy (in %) of every strategy × active set on every eval set, experts run once per set."""
    out = {}
    for set_name, (x, y) in evals.items():
        l0, lk = [], []
        for i in range(0, len(x), 2048):
            a, b = ens.expert_logits(x[i:i + 2048])
            l0.append(a), lk.append(b)
        l0, lk = torch.cat(l0), torch.cat(lk, 1)
        orig = 100 * (original(x).argmax(1) == y).float().mean().item() if len(x) else float("nan")
        out.setdefault("original", {})[set_name] = round(orig, 2)
        for f1_name, active in active_sets.items():
            for strat in STRATEGIES:
                e = ens.with_strategy(strat, active)
                if strat == "merged":
                    pred = torch.cat([e(x[i:i + 4096]).argmax(1) for i in range(0, len(x), 4096)])
                else:
                    pick = e.choose(l0, lk)
                    chosen = lk.gather(0, pick.clamp(min=0)[None, :, None].expand(1, -1, lk.shape[2])).squeeze(0)
                    pred = torch.where((pick >= 0)[:, None], chosen, l0).argmax(1)
                out.setdefault(f"{strat} / {f1_name}", {})[set_name] = round(100 * (pred == y).float().mean().item(), 2)
    return out


def run_job(job: dict, *, train, test, quick: bool, seed: int = 0, net=None, attack_n: int | None = None,
            cfg: NNRepairConfig | None = None) -> dict:
    """One Table 2 cell; ``net`` (default: the shipped ``job["model"]``), ``attack_n``: white-box attack images,
    ``cfg`` (default: :func:`settings`)."""
    net = pretrained(job["model"]) if net is None else net
    sc = build_scenario(job["scenario"], net, train=train, test=test, adv_pool=min(10_000, len(train)),
                        eps=job.get("eps", EPS))
    cfg = settings(job["setting"], job["scenario"], job["layer"]) if cfg is None else cfg
    t0 = time.perf_counter()
    res = repair(net, sc.problem, cfg)
    repair_s = time.perf_counter() - t0
    ens = res.network
    fx, fy = sc.problem.inputs, sc.problem.labels
    if sc.problem.clean_inputs is not None:
        fx, fy = torch.cat([fx, sc.problem.clean_inputs[:10_000]]), torch.cat([fy, sc.problem.clean_labels[:10_000]])
    active = {"F1 off": torch.ones(len(ens.labels), dtype=torch.bool), "F1 on": f1_filter(ens, fx, fy)}
    scores = _score_all(ens, net, sc.evals, active)
    head = sc.headline
    combos = [k for k in scores if k != "original"]
    best = max(combos, key=lambda k: (scores[k][head], scores[k]["test"]))
    strat, f1_name = best.split(" / ")
    best_net = ens.with_strategy(strat, active[f1_name])
    n_att = len(test) if (job["scenario"] == "adversarial" or quick) else min(len(test), 2000)
    n_att = n_att if attack_n is None else min(n_att, attack_n)
    xa, ya = test.x[:n_att], test.y[:n_att]
    attacks = {}
    for who, model in (("original", net), ("repaired", best_net)):
        attacks[who] = {
            "fgsm": round(100 * (model(fgsm(model, xa, ya, EPS)).argmax(1) == ya).float().mean().item(), 2),
            "pgd": round(100 * (model(pgd(model, xa, ya, EPS, steps=10 if quick else 20, seed=seed)).argmax(1)
                                == ya).float().mean().item(), 2),
        }
    experts = [e for e in res.details["experts"] if "seconds" in e]
    return {
        **job, "config": asdict(cfg), "headline": head, "scores": scores, "best": best,
        "best_n_experts": int(active[f1_name].sum()), "attack_n": n_att, "attacks": attacks,
        "repair_seconds": round(repair_s, 2), "pattern_seconds": res.details["pattern_seconds"],
        "seconds_per_expert": [e["seconds"] for e in experts],
        "solver_seconds_per_expert": [e["solver"]["seconds"] for e in experts],
        "experts_built": len(experts), "skipped": [e for e in res.details["experts"] if "skipped" in e],
        "deltas_nonzero": res.details["deltas_nonzero"], "deltas_at_bound": res.details["deltas_at_bound"],
        "fallbacks": sum("fallback" in e["solver"]["mode"] for e in experts),
        "target_rows_satisfied": sum(e["solver"]["target_rows_satisfied"] for e in experts),
        "target_rows": sum(e["solver"]["target_rows"] for e in experts),
    }


def markdown(records: list[dict], meta: dict, paper: dict = PAPER) -> str:
    lines = [f"# NNrepair (paper 004) — Table 2 beside nnmend ({'quick' if meta['quick'] else 'full'} run)", "",
             f"Machine: {meta['machine']}; torch {meta['versions']['torch']}, scipy {meta['versions']['scipy']} "
             f"(HiGHS), scikit-learn {meta['versions']['sklearn']}; seed {meta['seed']}; "
             f"{meta['seconds']:.0f} s in all.", "",
             "Δ in percentage points against the original network; the paper's numbers in the `paper` columns. "
             "Adv-Test is crafted on the original network (the paper's transfer protocol); `FGSM`/`PGD` are fresh "
             "white-box attacks (ε = 0.05) on the whole repaired composite — what a deployed model gets.", "",
             "| scenario | model | layer | setting | best (strategy, F1) | Test orig | Test Δ | paper Test Δ | "
             "headline set | headline orig | headline Δ | paper headline Δ | FGSM orig → rep | PGD orig → rep | "
             "s/expert (max) | deltas (on bound) |",
             "|" + "---|" * 16]
    for r in records:
        key = (r["scenario"], r["model"], r["layer"])
        paper_row = paper.get(key, {})
        s, o, b = r["scores"], r["scores"]["original"], r["scores"][r["best"]]
        h = r["headline"]
        pd = paper_row.get("delta", {})
        hd = f"{b[h] - o[h]:+.2f}" if h != "test" else "—"
        scen = r["scenario"] + (f" (ε {r['eps']})" if "eps" in r else "")
        lines.append(
            f"| {scen} | {r['model']} | {r['layer']} | {r['setting']} | {r['best']} ({r['best_n_experts']} experts) | "
            f"{o['test']:.2f} | {b['test'] - o['test']:+.2f} | {pd.get('test', float('nan')):+.2f} | {h} | {o[h]:.2f} | {hd} | "
            f"{pd.get(h, float('nan')):+.2f} | {r['attacks']['original']['fgsm']:.2f} → {r['attacks']['repaired']['fgsm']:.2f} | "
            f"{r['attacks']['original']['pgd']:.2f} → {r['attacks']['repaired']['pgd']:.2f} | "
            f"{max(r['seconds_per_expert'], default=0):.2f} | {r['deltas_nonzero']} ({r['deltas_at_bound']}) |")
    lines += ["", "## Every strategy (accuracy in %, per set)", ""]
    for r in records:
        lines.append(f"**{r['scenario']} / {r['model']} / {r['layer']} / {r['setting']}** — experts built "
                     f"{r['experts_built']}, repair {r['repair_seconds']:.1f} s (patterns {r['pattern_seconds']:.1f} s), "
                     f"solver s/expert {', '.join(f'{v:.2f}' for v in r['solver_seconds_per_expert'])}; "
                     f"target rows satisfied {r['target_rows_satisfied']}/{r['target_rows']}; soft fallbacks "
                     f"{r['fallbacks']}; skipped: {'; '.join(e['skipped'] for e in r['skipped']) or 'none'}")
        lines.append("")
        sets = list(r["scores"]["original"])
        lines.append("| combination | " + " | ".join(sets) + " |")
        lines.append("|---|" + "---|" * len(sets))
        for k, v in r["scores"].items():
            lines.append(f"| {k} | " + " | ".join(f"{v[s_]:.2f}" for s_ in sets) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small data, two jobs (the test suite's smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    add_out_arg(ap, RESULTS)
    ap.add_argument("--filter", default=None, help="regex on the job (e.g. 'eps'): run only matching jobs")
    ap.add_argument("--merge", action="store_true",
                    help="merge into the existing results, replacing records of the same job")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train = load_dataset("mnist", "train", limit=3000 if args.quick else None)
    test = load_dataset("mnist", "test", limit=500 if args.quick else None)
    todo = [j for j in jobs(args.quick) if not args.filter or re.search(args.filter, str(j))]
    records = run_jobs(lambda **job: run_job(job, train=train, test=test, quick=args.quick, seed=args.seed), todo,
                       desc="nnrepair jobs")
    import scipy
    import sklearn
    env = environment()
    meta = {"quick": args.quick, "seed": args.seed, "seconds": time.perf_counter() - t0,
            "machine": f"{env['machine']}, {env['cpus']} CPUs, {env['torch_threads']} threads",
            "versions": {"python": env["python"], "torch": env["torch"], "scipy": scipy.__version__,
                         "sklearn": sklearn.__version__},
            "data": {"train": len(train), "test": len(test)}, "paper": {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in PAPER.items()}}
    stem = "nnrepair_quick" if args.quick else "nnrepair"
    if args.merge and (args.out / f"{stem}.json").exists():
        old = json.loads((args.out / f"{stem}.json").read_text())
        key = lambda r: (r["scenario"], r["model"], r["layer"], r["setting"], r.get("eps", EPS))  # noqa: E731
        new = {key(r) for r in records}
        order = {key(j): i for i, j in enumerate(jobs(args.quick))}
        records = sorted([r for r in old["records"] if key(r) not in new] + records, key=lambda r: order.get(key(r), 1e9))
        meta["seconds"] += old["meta"]["seconds"]
        meta["merged_runs"] = old["meta"].get("merged_runs", 1) + 1
    write_results(stem, records, markdown(records, meta), args.out, extra={"meta": meta})
    return {"meta": meta, "records": records}


if __name__ == "__main__":
    main()
