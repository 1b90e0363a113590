"""Markdown, plot and verdicts for ``benchmarks/nca.py`` (kept apart so the runner stays small).

``summarise`` groups records by (model, layer, pattern, kind, fraction); ``verdicts`` says, per layer
and corruption, where NCA beats every baseline that uses no data at equal storage (mode-matched:
informed NCA vs the informed no-data baselines, blind NCA vs no repair and the blind replica) and
where it does not; ``write_markdown`` and ``plot`` render the JSON.
"""
from __future__ import annotations

import statistics
from pathlib import Path

PATTERNS = ("scatter", "patch")
KINDS = ("zero", "gaussian", "shuffle")
FULL_GRID = {"patterns": PATTERNS, "kinds": KINDS, "fractions": (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95),
             "seeds": (0, 1, 2)}
NODATA_INFORMED = ("mean", "biharmonic", "soft_impute", "replica_informed")
NODATA_BLIND = ("none", "replica_blind")


def summarise(records: list[dict]) -> dict:
    """mean/sd of accuracy per (model, layer, pattern, kind, fraction, method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["layer"], r["pattern"], r["kind"], r["fraction"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        methods = rs[0]["accuracy"].keys()
        accs = {m: [r["accuracy"][m] for r in rs] for m in methods}
        out["|".join(map(str, key))] = {
            "n_seeds": len(rs),
            "accuracy_mean": {m: statistics.fmean(v) for m, v in accs.items()},
            "accuracy_sd": {m: (statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in accs.items()},
            "auroc_nca_blind_mean": statistics.fmean([r["auroc_nca_blind"] for r in rs]),
        }
    return out


def coverage(records: list[dict]) -> dict[str, dict]:
    """Per ``model/layer``: cases covered of the full grid, and which seeds / fractions / corruptions."""
    full = len(FULL_GRID["patterns"]) * len(FULL_GRID["kinds"]) * len(FULL_GRID["fractions"]) * len(FULL_GRID["seeds"])
    out: dict[str, dict] = {}
    for r in records:
        c = out.setdefault(f"{r['model']}/{r['layer']}", {"cases": 0, "of": full, "seeds": set(), "corruptions": set(),
                                                          "fractions": set()})
        c["cases"] += 1
        c["seeds"].add(r["seed"])
        c["corruptions"].add(f"{r['pattern']}×{r['kind']}")
        c["fractions"].add(r["fraction"])
    return {k: {**v, "seeds": sorted(v["seeds"]), "corruptions": sorted(v["corruptions"]),
                "fractions": sorted(v["fractions"])} for k, v in out.items()}


def verdicts(summary: dict, model: str, layer: str) -> list[dict]:
    """Per (pattern, kind): fractions where NCA beats every no-data baseline at equal storage, where not."""
    rows = []
    for pattern in PATTERNS:
        for kind in KINDS:
            keys = sorted((k for k in summary if k.startswith(f"{model}|{layer}|{pattern}|{kind}|")),
                          key=lambda k: float(k.split("|")[-1]))
            if not keys:
                continue
            row = {"pattern": pattern, "kind": kind, "informed_wins": [], "informed_losses": [], "blind_wins": [],
                   "blind_losses": [], "beats_finetune_1k": []}
            for k in keys:
                acc, frac = summary[k]["accuracy_mean"], float(k.split("|")[-1])
                best_inf = max(acc[m] for m in NODATA_INFORMED if m in acc)
                best_blind = max(acc[m] for m in NODATA_BLIND if m in acc)
                row["informed_wins" if acc["nca_informed"] > best_inf else "informed_losses"].append(frac)
                row["blind_wins" if acc["nca_blind"] > best_blind else "blind_losses"].append(frac)
                if max(acc["nca_informed"], acc["nca_blind"]) > acc.get("finetune_1k", 1.0):
                    row["beats_finetune_1k"].append(frac)
            rows.append(row)
    return rows


def _fr(v: list[float]) -> str:
    return ", ".join(f"{x:g}" for x in v) or "—"


def talk_table(res: dict) -> list[str]:
    """The talk's setting (90 % scattered zeroing, informed) per layer and seed, beside the best other methods."""
    cases: dict[tuple[str, str], dict[int, dict]] = {}
    for r in res["records"]:
        if (r["pattern"], r["kind"]) == ("scatter", "zero") and abs(r["fraction"] - res["talk"]["fraction"]) < 1e-9:
            cases.setdefault((r["model"], r["layer"]), {})[r["seed"]] = r["accuracy"]
    if not cases:
        return []
    lines = [f"## The talk's figure: {100 * res['talk']['accuracy']:.1f} % at {100 * res['talk']['fraction']:.0f} % "
             "scattered corruption", "",
             "Scattered zeroing of 90 % of the layer's weights, accuracy after repair per seed (the seed draws the "
             "mask). Informed NCA is reconstruction from the 10 % known weights.", "",
             "| model/layer | seeds | none | best fill (mean, biharmonic, soft-impute) | replica_informed (equal "
             "storage) | finetune_1k (data) | nca_blind | nca_informed per seed | nca_informed mean | ≥ talk |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (model, layer), by_seed in cases.items():
        accs = [by_seed[s] for s in sorted(by_seed)]
        mean = lambda m: sum(a[m] for a in accs) / len(accs)  # noqa: E731
        best = max(("mean", "biharmonic", "soft_impute"), key=mean)
        inf = [a["nca_informed"] for a in accs]
        lines.append(f"| {model}/{layer} | {sorted(by_seed)} | {mean('none'):.3f} | {best} {mean(best):.3f} | "
                     f"{mean('replica_informed'):.3f} | {mean('finetune_1k'):.3f} | {mean('nca_blind'):.3f} | {', '.join(f'{v:.3f}' for v in inf)} | "
                     f"{sum(inf) / len(inf):.3f} | {sum(v >= res['talk']['accuracy'] for v in inf)} of {len(inf)} |")
    return lines + [""]


def write_markdown(res: dict, path: Path) -> None:
    talk = res["talk"]
    lines = ["# NCA weight repair (paper 001) — nnmend benchmark", "",
             f"Status: **{res['status']}**. {res['coverage_note']}", "",
             f"Talk abstract (the only public figure): {talk['claim']}.", ""]
    if res.get("rule_config"):
        lines += [f"NCA rule (same for every layer): `NCATrainConfig` {res['rule_config']}, "
                  f"{res['train_config']['iterations']} iterations (function-space loss on 512 training images, "
                  "multi-scale perception, 32–64-step training horizon, corruption fractions 0.3–0.95 — the "
                  "`NCATrainConfig` defaults; see `nca_ablation.md` for what each change does); repairs run "
                  "`NCARepairConfig`'s default 3× the training horizon (blind detection passes 1×). Rule "
                  f"parameters stored as {res.get('rule_precision', 'fp32')}. Each rule is calibrated on its clean "
                  "weight (per layer below): regenerated cells are shrunk towards the weight mean by the "
                  "least-squares factor α(f) for the share f regenerated, and blind mode flags cells whose "
                  "correction exceeds the threshold that flags 0.1 % of the clean cells.", ""]
    lines += talk_table(res)
    lines += ["**Information limit.** NCA hidden channels are not stored (they start from a learned per-unit "
              "seed kept with the rule), so after tampering the only information about W is the surviving "
              "weights plus the rule's parameters — whose bytes are reported as storage overhead and given "
              "to the `replica_*` baselines as their budget. Blind repair of scattered corruption can only "
              "recover what neighbours predict or what the rule memorised; when most cells are corrupted, "
              "the corruption is the majority and blind detection fails (AUROC < 0.5 below).", "",
              "Baselines `mean`, `biharmonic`, `soft_impute`, `finetune_*` and `*_informed` are given the TRUE "
              "corrupted mask; `nca_blind` and `replica_blind` are not. `replica_*` is a trusted copy of W "
              "stored in as many bytes as the NCA rule. `finetune_*` also uses 1k / 10k labelled training "
              "images (information no other method has). Accuracy on the full 10k MNIST test set, mean ± sd "
              "over the seeds covered.", "", "## What ran", "",
              "| model/layer | cases covered (of the full grid) | seeds | corruptions | fractions |",
              "|---|---|---|---|---|"]
    for key, c in coverage(res["records"]).items():
        lines.append(f"| {key} | {c['cases']} of {c['of']} | {c['seeds']} | {', '.join(c['corruptions'])} | "
                     f"{_fr(c['fractions'])} |")
    lines.append("")
    for lay in res["layers"]:
        s = lay["storage"]
        lines += [f"## {lay['model']} / {lay['layer']}", "",
                  f"clean accuracy {lay['clean_accuracy']:.4f}; layout `{lay['layout']}`; rule "
                  f"{lay['rule_parameters']} parameters = {s['rule_bytes']} B = {100 * s['overhead_fraction']:.1f} % "
                  f"of the weight's {s['weight_bytes']} B (extra stored state: {s['extra_state_bytes']} B); "
                  f"replica at equal storage: {lay['replica']}; rule training {lay['train_seconds']} s "
                  f"({'cached' if lay['rule_cached'] else 'trained in this run'}).", ""]
        if lay.get("shrink") or lay.get("blind_threshold") is not None:
            sh = lay.get("shrink") or {}
            lines += ["Calibration on the clean weight (`nnmend.repair.nca.calibrate`): blind detection threshold "
                      f"{lay.get('blind_threshold') or float('nan'):.3f} (0.1 % of clean cells flagged); shrinkage α(f) of "
                      "the regenerated cells towards the weight mean, by fraction regenerated: "
                      + ", ".join(f"{f:g}: {a:.2f}" for f, a in zip(sh.get("fractions", []), sh.get("alpha", [])))
                      + ".", ""]
        ver = verdicts(res["summary"], lay["model"], lay["layer"])
        if ver:
            lines += ["**Where NCA beats every no-data baseline at equal storage** (fractions; mean over the "
                      "seeds covered; informed NCA vs mean / biharmonic / soft-impute / informed replica, blind "
                      "NCA vs no repair / blind replica):", "",
                      "| corruption | informed NCA wins | informed NCA loses | blind NCA wins | blind NCA loses | "
                      "NCA > finetune_1k (uses data) |", "|---|---|---|---|---|---|"]
            for v in ver:
                lines.append(f"| {v['pattern']} × {v['kind']} | {_fr(v['informed_wins'])} | {_fr(v['informed_losses'])} | "
                             f"{_fr(v['blind_wins'])} | {_fr(v['blind_losses'])} | {_fr(v['beats_finetune_1k'])} |")
            lines.append("")
        for pattern in PATTERNS:
            for kind in KINDS:
                keys = sorted((k for k in res["summary"] if k.startswith(f"{lay['model']}|{lay['layer']}|{pattern}|{kind}|")),
                              key=lambda k: float(k.split("|")[-1]))
                if not keys:
                    continue
                methods = list(res["summary"][keys[0]]["accuracy_mean"])
                lines += [f"### {pattern} × {kind}", "",
                          "| fraction | seeds | " + " | ".join(methods) + " | NCA blind AUROC |",
                          "|---" * (len(methods) + 3) + "|"]
                for k in keys:
                    g = res["summary"][k]
                    cells = [f"{g['accuracy_mean'][m]:.3f}±{g['accuracy_sd'][m]:.3f}" for m in methods]
                    lines.append(f"| {k.split('|')[-1]} | {g['n_seeds']} | " + " | ".join(cells)
                                 + f" | {g['auroc_nca_blind_mean']:.3f} |")
                lines.append("")
        if lay.get("stability"):
            mults = sorted(int(k[len("accuracy_"):-1]) for k in lay["stability"][0] if k.startswith("accuracy_"))
            lines += ["Stability (seed 0): accuracy after k × the training horizon "
                      f"({lay['stability'][0]['horizon']} steps; one run per case read at each k; the CA's own state, "
                      "without the shrinkage calibrated for the grid's 3× pass)", "",
                      "| case | mode | " + " | ".join(f"{k}×" for k in mults) + " |", "|---" * (len(mults) + 2) + "|"]
            for r in lay["stability"]:
                lines.append(f"| {r['pattern']} {r['kind']} {r['fraction']} | {r['mode']} | "
                             + " | ".join(f"{r.get(f'accuracy_{k}x', float('nan')):.3f}" for k in mults) + " |")
            lines.append("")
    lines += ["## Timing", "", "Median repair seconds per method (all cases covered): "
              + ", ".join(f"`{m}` {t:.3f}" for m, t in res["median_seconds"].items()), ""]
    path.write_text("\n".join(lines))


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = res["layers"]
    fig, axes = plt.subplots(len(layers), len(PATTERNS) * len(KINDS), figsize=(22, 3.6 * len(layers)), squeeze=False)
    for i, lay in enumerate(layers):
        for j, (pattern, kind) in enumerate((p, k) for p in PATTERNS for k in KINDS):
            ax = axes[i, j]
            keys = sorted((k for k in res["summary"] if k.startswith(f"{lay['model']}|{lay['layer']}|{pattern}|{kind}|")),
                          key=lambda k: float(k.split("|")[-1]))
            if keys:
                fr = [float(k.split("|")[-1]) for k in keys]
                for m in res["summary"][keys[0]]["accuracy_mean"]:
                    ax.plot(fr, [res["summary"][k]["accuracy_mean"][m] for k in keys], marker=".",
                            lw=2.5 if m.startswith("nca") else 1, label=m)
            ax.axhline(res["talk"]["accuracy"], color="k", ls=":", lw=0.8)
            ax.set_title(f"{lay['model'].split('_mnist')[0]}/{lay['layer']} {pattern} {kind}", fontsize=9)
            ax.set_xlabel("corrupted fraction")
            ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("test accuracy")
    handles, labels = next(((h, l) for h, l in (ax.get_legend_handles_labels() for ax in axes.flat) if h), ([], []))
    if handles:
        fig.legend(handles, labels, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


