"""NCA weight repair against baselines on tampered MNIST MLP layers (paper 001; research notes §2.4.7).

Grid (jobs, each a plain function of plain arguments returning a plain record):
    models {small_mlp_mnist (784-100-10), shnn_mlp_mnist (784-256-128-64-10)} × their dense layers
    × pattern {patch, scatter} × value {zero, gaussian (N(0, 0.1²) re-init), shuffle}
    × fraction {0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95} × seeds {0, 1, 2}
Per case: test accuracy (full 10k MNIST test set) after each method, weight-space error, recovery
(SHNN's %, :func:`nnmend.metrics.recovery`), agreement with the clean network, blind-mode detection
AUROC of the NCA's per-cell correction, wall time. Per layer: rule storage, training time and a
stability check (accuracy after 1×, 5×, 20× the training horizon).

Methods: ``none``; informed baselines given the TRUE corrupted mask — ``mean``, ``biharmonic``,
``soft_impute``, ``finetune_1k`` / ``finetune_10k`` (masked fine-tuning on 1k / 10k training images);
``replica_blind`` / ``replica_informed`` (a trusted copy with the rule's storage); ``nca_blind``,
``nca_informed``. The threat model corrupts every stored channel of a corrupted cell; NCA hidden
channels are not stored (storage overhead = the rule).

Jobs run seed-major (the whole grid for seed 0 first), and results are written after every job, so a
run stopped by ``--budget-minutes`` leaves clearly labelled partial results (``covered`` in the JSON).

    python benchmarks/nca.py                    # full grid (hours on 2 CPU cores)
    python benchmarks/nca.py --budget-minutes 40 --models small_mlp_mnist
    python benchmarks/nca.py --quick --out /tmp/nca_quick
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from nnmend._progress import progress
from nnmend.benchmarking import add_out_arg
from nnmend.corruption import corrupt_values, corruption_mask
from nnmend.data import load_dataset
from nnmend.io import load_checkpoint, save_checkpoint
from nnmend.io.atomic import atomic_write
from nnmend.metrics import recovery
from nnmend.nets import clone, get_layer, named_layers, predict, pretrained
from nnmend.repair.nca import (NCARepairConfig, NCATrainConfig, calibrate, half_precision, repair_trajectory, repair_weight,
                               storage_bytes, train_rule)
from nnmend.repair.nca.baselines import (biharmonic_fill, masked_finetune, mean_fill, replica, replica_repair,
                                         soft_impute)
from nnmend.repair.nca.repair import rule_layout
from nnmend.report import environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nca_report import KINDS, PATTERNS, coverage, plot, summarise, write_markdown  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95)
# the rule used for every layer (changes from NCATrainConfig's defaults; chosen by benchmarks/nca_ablation.py)
RULE_CONFIG: dict = {"function_weight": 0.7, "dilations": (1, 2, 4), "steps_min": 32, "steps_max": 64,
                     "fraction_range": (0.3, 0.95)}  # = ablation variant fn_dil_long_hi (1200 iterations)
TALK = {"claim": "88.8 % MNIST accuracy kept at 90 % weight corruption (TinyMLP; corruption model, threat "
                 "model and baselines not stated)", "accuracy": 0.888, "fraction": 0.9}


class Context:
    """Everything a job on one layer needs: clean network, rule, data (built once per layer)."""

    def __init__(self, model_name: str, layer: str, rule, test, train, clean_acc: float, quick: bool):
        self.model_name, self.layer, self.rule = model_name, layer, rule
        self.net = pretrained(model_name)
        self.w = get_layer(self.net, layer).weight.detach().clone()
        self.test, self.train, self.clean_acc, self.quick = test, train, clean_acc, quick
        self.clean_pred = predict(self.net, test.x)
        self.layout = rule_layout(rule)
        self.storage = storage_bytes(rule)
        self.copy, self.copy_info = replica(self.w, self.storage["rule_bytes"])
        self.steps = 6 if quick else None  # CA steps per repair (None: NCARepairConfig's default, 3× the horizon)

    def evaluate(self, w: torch.Tensor) -> tuple[float, float]:
        net = clone(self.net)
        with torch.no_grad():
            get_layer(net, self.layer).weight.copy_(torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0))
        pred = predict(net, self.test.x)
        return float((pred == self.test.y).float().mean()), float((pred == self.clean_pred).float().mean())


def _auroc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    y = labels.flatten().numpy()
    if y.all() or not y.any():
        return float("nan")
    s = torch.nan_to_num(scores.flatten(), posinf=1e30).numpy()
    return float(roc_auc_score(y, s))


def _werr(w_hat: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> dict:
    w_hat = torch.nan_to_num(w_hat, nan=0.0, posinf=0.0, neginf=0.0)
    d = w_hat - w
    std = float(w.std())
    return {"rel_fro": float(d.norm() / w.norm()),
            "rmse_corrupted_over_std": float(d[mask].pow(2).mean().sqrt() / std) if mask.any() else 0.0}


def run_case(ctx: Context, pattern: str, kind: str, fraction: float, seed: int, old: dict | None = None) -> dict:
    """One corruption of ctx's layer, repaired by every method; given ``old`` (a record of the same case made with
    the same rule parameters but another calibration), only the NCA methods are rerun and merged into it."""
    gen = torch.Generator().manual_seed(seed)  # same draw order as nnmend.faults.damage
    mask = corruption_mask(ctx.w, pattern, fraction, gen)
    bad = corrupt_values(ctx.w, mask, kind, gen, sigma=0.1, fan_in=ctx.w.shape[1])
    candidates: dict[str, tuple[torch.Tensor, float]] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        candidates[name] = (fn(), time.perf_counter() - t0)

    n_ft = (200, 1000) if ctx.quick else (1000, 10000)
    ft_steps = 20 if ctx.quick else 300
    timed("none", lambda: bad)
    if old is not None:
        return _nca_only(ctx, old, mask, bad, seed)
    timed("mean", lambda: mean_fill(bad, mask))
    timed("biharmonic", lambda: biharmonic_fill(bad, mask, ctx.layout))
    timed("soft_impute", lambda: soft_impute(bad, mask, seed=seed))
    damaged = clone(ctx.net)
    with torch.no_grad():
        get_layer(damaged, ctx.layer).weight.copy_(bad)
    for n in n_ft:
        label = f"finetune_{n // 1000}k" if n >= 1000 else f"finetune_{n}"
        timed(label, lambda n=n: masked_finetune(damaged, ctx.layer, mask, ctx.train, n_images=n, steps=ft_steps, seed=seed))
    timed("replica_blind", lambda: replica_repair(bad, ctx.copy, ctx.copy_info["rms_error"]))
    timed("replica_informed", lambda: replica_repair(bad, ctx.copy, ctx.copy_info["rms_error"], mask))
    scores = _nca(ctx, bad, mask, seed, candidates)
    acc, agree, werr, secs = {}, {}, {}, {}
    for name, (w_hat, s) in candidates.items():
        acc[name], agree[name] = ctx.evaluate(w_hat)
        werr[name] = _werr(w_hat, ctx.w, mask)
        secs[name] = round(s, 4)
    rec = {k: recovery(ctx.clean_acc, acc["none"], v) for k, v in acc.items() if k != "none"}
    return {"model": ctx.model_name, "layer": ctx.layer, "pattern": pattern, "kind": kind, "fraction": fraction,
            "seed": seed, "n_corrupted": int(mask.sum()), "accuracy": acc, "agreement": agree,
            "weight_error": werr, "recovery_pct": rec, "seconds": secs,
            "auroc_nca_blind": _auroc(mask, scores["blind"]),
            "auroc_replica_blind": _auroc(mask, (bad - ctx.copy).abs())}


def _nca(ctx: Context, bad: torch.Tensor, mask: torch.Tensor, seed: int, candidates: dict) -> dict:
    """Blind and informed NCA repair of one case into ``candidates``; returns their detection scores."""
    scores = {}
    for mode, trusted in (("blind", None), ("informed", ~mask)):
        t0 = time.perf_counter()
        w_hat, score = repair_weight(ctx.rule, bad, trusted, config=NCARepairConfig(seed=seed, steps=ctx.steps))
        candidates[f"nca_{mode}"] = (w_hat, time.perf_counter() - t0)
        scores[mode] = score
    return scores


def _nca_only(ctx: Context, old: dict, mask: torch.Tensor, bad: torch.Tensor, seed: int) -> dict:
    if int(mask.sum()) != old["n_corrupted"]:
        raise RuntimeError(f"case {old['pattern']} {old['kind']} {old['fraction']} seed {seed}: the corruption "
                           "differs from the stored record's; rerun without --resume")
    candidates: dict = {}
    scores = _nca(ctx, bad, mask, seed, candidates)
    rec = json.loads(json.dumps(old))
    for name, (w_hat, s) in candidates.items():
        rec["accuracy"][name], rec["agreement"][name] = ctx.evaluate(w_hat)
        rec["weight_error"][name] = _werr(w_hat, ctx.w, mask)
        rec["seconds"][name] = round(s, 4)
        rec["recovery_pct"][name] = recovery(ctx.clean_acc, rec["accuracy"]["none"], rec["accuracy"][name])
    rec["auroc_nca_blind"] = _auroc(mask, scores["blind"])
    rec["nca_rerun"] = "NCA methods rerun with the calibrated rule; baselines from the earlier run (same rule parameters)"
    return rec


def run_stability(ctx: Context, multiples=(1, 5, 20)) -> list[dict]:
    """Accuracy after k× the training horizon (does the attractor persist or drift?).

    One run per case read at each multiple (:func:`repair_trajectory`; blind detection at 1×); the CA's own state,
    without the calibrated shrinkage (which holds for the 3× default pass only).
    """
    horizon = int(ctx.rule.meta["horizon"])
    out = []
    for pattern, kind, fraction, mode in (("scatter", "zero", 0.9, "informed"), ("scatter", "gaussian", 0.3, "blind"),
                                          ("patch", "zero", 0.3, "informed")):
        gen = torch.Generator().manual_seed(0)
        mask = corruption_mask(ctx.w, pattern, fraction, gen)
        bad = corrupt_values(ctx.w, mask, kind, gen, sigma=0.1)
        row = {"pattern": pattern, "kind": kind, "fraction": fraction, "mode": mode, "horizon": horizon}
        outs, _ = repair_trajectory(ctx.rule, bad, None if mode == "blind" else ~mask,
                                    tuple(k * horizon for k in multiples),
                                    config=NCARepairConfig(steps=horizon, shrink=False))
        for k, w_hat in zip(multiples, outs):
            row[f"accuracy_{k}x"] = ctx.evaluate(w_hat)[0]
        out.append(row)
    return out


CALIBRATION_KEYS = ("shrink", "blind_threshold")


def params_id(rule) -> str:
    """A fingerprint of a rule's parameters (the baselines' replica budget depends on these only)."""
    h = hashlib.sha256()
    for k, v in sorted(rule.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rule_id(rule) -> str:
    """A fingerprint of a rule's parameters and calibration: NCA results made with another are never mixed in."""
    cal = json.dumps({k: rule.meta.get(k) for k in CALIBRATION_KEYS}, sort_keys=True)
    return hashlib.sha256((params_id(rule) + cal).encode()).hexdigest()[:16]


def get_rule(model_name: str, layer: str, cfg: NCATrainConfig, cache: Path | None, data: torch.Tensor):
    tag = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    path = cache / f"{model_name}_{layer}_{tag}.pt" if cache else None
    if path and path.exists():
        rule = load_checkpoint(path).model
        if "shrink" not in rule.meta:  # cached before calibration existed: calibrate it now (as training does)
            print(f"[nca] calibrating the cached rule {path.name}", file=sys.stderr, flush=True)
            calibrate(rule, get_layer(pretrained(model_name), layer).weight.detach().float())
            save_checkpoint(rule, path, meta={"kind": "nca_rule", "model": model_name, "layer": layer})
        return rule, True
    rule, _ = train_rule(pretrained(model_name), layer, cfg, data=data, progress_bar=sys.stderr.isatty())
    if path:
        save_checkpoint(rule, path, meta={"kind": "nca_rule", "model": model_name, "layer": layer})
    return rule, False


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: one small layer, few iterations")
    ap.add_argument("--models", nargs="+", default=["small_mlp_mnist", "shnn_mlp_mnist"])
    ap.add_argument("--layers", nargs="+", default=None, help="restrict to these layer names")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    ap.add_argument("--patterns", nargs="+", default=list(PATTERNS), choices=PATTERNS)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--iterations", type=int, default=None, help="rule training iterations")
    ap.add_argument("--rule-precision", choices=["fp32", "fp16"], default="fp16",
                    help="store the rule's parameters in float16 (default: half the overhead of float32 at the same "
                         "accuracy, 0.8939 both ways at 90 %% scatter; the replica baselines get the same bytes) or "
                         "float32 (writes nca_fp32.*; the last float32 run: nca_fp32.md of commit ce49fc0)")
    ap.add_argument("--budget-minutes", type=float, default=None, help="stop starting new jobs after this")
    ap.add_argument("--resume", action="store_true",
                    help="keep the records in the existing nca.json that were made with the same rules; skip them")
    ap.add_argument("--no-stability", action="store_true")
    add_out_arg(ap, RESULTS)
    ap.add_argument("--render-only", action="store_true", help="rewrite the .md and .png from the saved .json")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="merge the results of runs made in parallel (separate --out) into --out's json: each "
                         "layer's entry and records come from the last file listed that holds records for it")
    args = ap.parse_args(argv)
    name = ("nca_quick" if args.quick else "nca") + ("_fp32" if args.rule_precision == "fp32" else "")
    args.name = name
    if args.merge:
        res = merge_results([json.loads(p.read_text()) for p in args.merge])
        _finish(res, args, time.perf_counter() - res["seconds_total"], partial=res["status"] != "complete")
        return res
    if args.render_only:
        res = json.loads((args.out / f"{name}.json").read_text())
        write_markdown(res, args.out / f"{name}.md")
        plot(res, args.out / f"{name}.png")
        return res
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    deadline = t_start + 60 * args.budget_minutes if args.budget_minutes else math.inf
    if args.quick:
        args.models, args.layers, args.seeds = ["small_mlp_mnist"], ["fc2"], [0]
        args.fractions, args.patterns, args.kinds = [0.3, 0.9], ["scatter"], ["zero"]
    cfg = NCATrainConfig(iterations=args.iterations or (15 if args.quick else 1200), **RULE_CONFIG)
    cache = args.out / "nca_rules"         # quick runs too: a --resume reuses the rule instead of retraining it
    args.out.mkdir(parents=True, exist_ok=True)
    if cache:
        cache.mkdir(exist_ok=True)
    test = load_dataset("mnist", "test", limit=1000 if args.quick else None)
    train = load_dataset("mnist", "train", limit=10000)
    old = json.loads((args.out / f"{name}.json").read_text()) if args.resume and (args.out / f"{name}.json").exists() else {}
    res = {"benchmark": "nca", "paper": "001 (Paladini, Tuba, Mariot)", "talk": TALK, "quick": args.quick,
           "grid": {"models": args.models, "layers": args.layers, "patterns": args.patterns, "kinds": args.kinds,
                    "fractions": args.fractions, "seeds": args.seeds},
           "rule_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in RULE_CONFIG.items()},
           "rule_precision": args.rule_precision,
           "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
           "environment": environment(),
           "layers": [], "records": [], "covered": [], "status": "running"}
    contexts = []
    for model_name in args.models:
        net = pretrained(model_name)
        clean_acc = float((predict(net, test.x) == test.y).float().mean())
        for layer in named_layers(net):
            if args.layers and layer not in args.layers:
                continue
            if time.perf_counter() > deadline:
                break
            print(f"[nca] rule for {model_name}/{layer}", file=sys.stderr, flush=True)
            rule, cached = get_rule(model_name, layer, cfg, cache, train.x)
            if args.rule_precision == "fp16":
                rule = half_precision(rule)
            ctx = Context(model_name, layer, rule, test, train, clean_acc, args.quick)
            contexts.append(ctx)
            res["layers"].append({"model": model_name, "layer": layer, "clean_accuracy": clean_acc,
                                  "layout": rule.meta["layout"], "rule_parameters": rule.n_parameters(),
                                  "rule_id": rule_id(rule), "params_id": params_id(rule), "storage": ctx.storage, "replica": ctx.copy_info,
                                  "rule_cached": cached, "train_seconds": rule.meta.get("train_seconds"),
                                  "final_train_loss": rule.meta.get("final_loss"),
                                  "blind_threshold": rule.meta.get("blind_threshold"),
                                  "shrink": rule.meta.get("shrink")})
    # resume: keep earlier layers/records made with a rule we still use (or a layer not in this run)
    ids_now = {(lay["model"], lay["layer"]): lay["rule_id"] for lay in res["layers"]}
    kept_layers = [lay for lay in old.get("layers", []) if lay.get("rule_id")
                   and ids_now.get((lay["model"], lay["layer"]), lay["rule_id"]) == lay["rule_id"]]
    kept_ids = {lay["rule_id"] for lay in kept_layers} | set(ids_now.values())
    res["records"] = [r for r in old.get("records", []) if r.get("rule_id") in kept_ids]
    # records made with the same parameters but an older calibration: their baselines stand, NCA is rerun
    params_now = {(lay["model"], lay["layer"]): lay["params_id"] for lay in res["layers"]}
    stale = {(r["model"], r["layer"], r["pattern"], r["kind"], r["fraction"], r["seed"]): r
             for r in old.get("records", []) if r.get("rule_id") not in kept_ids
             and params_now.get((r["model"], r["layer"])) in (r.get("params_id"), r.get("rule_id"))}
    res["covered"] = [[r["model"], r["layer"], r["pattern"], r["kind"], r["fraction"], r["seed"]] for r in res["records"]]
    for lay in kept_layers:
        mine = next((x for x in res["layers"] if (x["model"], x["layer"]) == (lay["model"], lay["layer"])), None)
        if mine is None:
            res["layers"].append(lay)
        elif lay.get("stability") and not mine.get("stability"):
            mine["stability"] = lay["stability"]
    if not args.no_stability:  # before the grid, so a budget-limited run still has it
        for ctx, lay in zip(contexts, res["layers"]):
            if lay.get("stability"):
                continue
            print(f"[nca] stability {ctx.model_name}/{ctx.layer}", file=sys.stderr, flush=True)
            lay["stability"] = run_stability(ctx, multiples=(1, 2) if args.quick else (1, 3, 5, 20))
            _finish(res, args, t_start, partial=True)
    done = {tuple(c) for c in res["covered"]}
    jobs = [(c, p, k, f, s) for s in args.seeds for c in contexts for p in args.patterns for k in args.kinds
            for f in args.fractions if (c.model_name, c.layer, p, k, f, s) not in done]
    stopped = False
    for ctx, p, k, f, s in progress(jobs, desc="nca grid", enabled=sys.stderr.isatty()):
        if time.perf_counter() > deadline:
            stopped = True
            break
        rec = run_case(ctx, p, k, f, s, old=stale.get((ctx.model_name, ctx.layer, p, k, f, s)))
        rec["rule_id"] = ids_now[(ctx.model_name, ctx.layer)]
        rec["params_id"] = params_now[(ctx.model_name, ctx.layer)]
        res["records"].append(rec)
        r = rec["accuracy"]
        print(f"[nca] {ctx.model_name}/{ctx.layer} {p} {k} {f} seed {s}: none {r['none']:.3f} nca_blind "
              f"{r['nca_blind']:.3f} nca_informed {r['nca_informed']:.3f} best baseline "
              f"{max((v, m) for m, v in r.items() if not m.startswith('nca'))}", file=sys.stderr, flush=True)
        res["covered"].append([ctx.model_name, ctx.layer, p, k, f, s])
        _finish(res, args, t_start, partial=True)
    _finish(res, args, t_start, partial=stopped)
    return res


def merge_results(runs: list[dict]) -> dict:
    """One result from several runs of this benchmark made in parallel: each layer's entry and records come from the
    last run whose own grid (its ``--models`` / ``--layers``) covered the layer; records a run merely carried over
    from an older result are not taken."""
    key = lambda d: (d["model"], d["layer"])  # noqa: E731

    def ran(run: dict, lay: dict) -> bool:
        g = run["grid"]
        return lay["model"] in g["models"] and (not g["layers"] or lay["layer"] in g["layers"])

    res = json.loads(json.dumps(runs[0]))
    res["layers"], res["records"] = [], []
    for run in runs:
        for lay in run["layers"]:
            if not ran(run, lay):
                continue
            recs = [r for r in run["records"] if key(r) == key(lay) and r.get("rule_id") == lay["rule_id"]]
            if not recs:
                continue
            res["layers"] = [x for x in res["layers"] if key(x) != key(lay)] + [lay]
            res["records"] = [r for r in res["records"] if key(r) != key(lay)] + recs
    res["layers"].sort(key=key)
    res["covered"] = [[r["model"], r["layer"], r["pattern"], r["kind"], r["fraction"], r["seed"]] for r in res["records"]]
    res["seconds_total"] = sum(r.get("seconds_total", 0.0) for r in runs)
    res["status"] = "complete" if all(r.get("status") == "complete" for r in runs) else "partial"
    res["merged_from"] = len(runs)
    res["grid"] = {"merged_runs": [r["grid"] for r in runs]}
    return res


def _finish(res: dict, args, t_start: float, partial: bool) -> None:
    cov = coverage(res["records"])
    full = all(c["cases"] == c["of"] for c in cov.values()) and len(cov) == len(res["layers"])
    res["status"] = "complete" if full and not partial else "partial"
    res["coverage_note"] = (f"{len(res['records'])} grid cases covered in all (per layer below; each listed under "
                            f"`covered` in {args.name}.json); last invocation's grid: "
                            f"{res['grid']}.")
    res["summary"] = summarise(res["records"])
    secs: dict[str, list[float]] = {}
    for r in res["records"]:
        for m, s in r["seconds"].items():
            secs.setdefault(m, []).append(s)
    res["median_seconds"] = {m: statistics.median(v) for m, v in secs.items()}
    res["seconds_total"] = round(time.perf_counter() - t_start, 1)
    name = args.name
    with atomic_write(args.out / f"{name}.json", "w") as fh:      # default=float: numpy scalars stay numbers
        json.dump(res, fh, indent=1, default=float)
    write_markdown(res, args.out / f"{name}.md")
    if res["records"]:
        plot(res, args.out / f"{name}.png")


if __name__ == "__main__":
    main()
