"""ProRepair (paper 003) on CIFAR-10: backdoor and adversarial point-wise repair, beside PatchPro (issue 21).

Backdoor (``--suite backdoor``): NNrepair's CIFAR CNN (``benchmarks/_cifar.py``) with two backdoors, target 7
(horse), both fine-tuned from the same clean CNN by the same recipe (the first 600 of the 20,000 shipped training
images triggered and relabelled):

* ``badnets``: the cached BadNets copy (``results/models/nnrepair_cifar_poisoned.pt``, 3×3 square);
* ``blend``: the blended trigger (x ← 0.8·x + 0.2·pattern, a fixed random pattern, seed 0; the MNIST
  benchmark's), fine-tuned here with the BadNets copy's recorded recipe, cached in ``results/models/cifar_blend.pt``
  (architecture spec + weights, no pickled code).

Repair set: n triggered training images of other classes with their true labels + n clean training images
(seeded). Reported: ASR on the whole triggered test set before/after, clean test accuracy before/after,
accuracy on the held-out triggered test set, repair-set success on the saved and reloaded network, time.

Adversarial (``--suite adversarial``): PatchPro's CIFAR repair sets (``patchpro_cifar.repair_set``: PGD on
``resnet_2b``, seeded, so the items are PatchPro's own, checked by their fingerprint), and the same
construction on the CIFAR CNN. ProRepair repairs the n adversarial points; PatchPro's figures for the same cells
come from ``results/patchpro_cifar.json`` (its sound-feature-box rows: the balls are proved). RSR, RGR, DD
(all 10,000 test images), DSR under white-box PGD-20 (PatchPro's protocol) and under PGD-50×3 on the repaired
network or crafted on the original and transferred (``prorepair.pgd_dsr``), all from ``nnmend.metrics``.

ProRepair's solver: the closed-form minimal-disturbance edit of ``fc1`` (``nnmend.repair.prorepair.closed_form``;
split before the last Linear layer, so the head is affine) on both networks.

    python benchmarks/prorepair_cifar.py                       # both suites -> results/prorepair_cifar.{json,md}
    python benchmarks/prorepair_cifar.py --suite backdoor      # some cells; OUT's rows of the other cells are kept
    python benchmarks/prorepair_cifar.py --quick --out DIR     # smoke run (< 40 s; the test suite runs this)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import _cifar  # noqa: E402
import patchpro_cifar  # noqa: E402  (resnet_2b, its data and its seeded repair sets)
from patchpro_mnist import _pgd  # noqa: E402  (PatchPro's DSR attack: white-box PGD-20)
from prorepair import COMMIT, _timed, pgd_dsr  # noqa: E402  (timing, DSR white-box or transferred)
from nnmend.benchmarking import run_jobs, write_results  # noqa: E402
from nnmend.data import Trigger, poison, triggered_test  # noqa: E402
from nnmend.errors import DataError  # noqa: E402
from nnmend.io import load_network, save_checkpoint  # noqa: E402
from nnmend.metrics import (clean_accuracy, defense_success_rate, drawdown, repair_generalization_rate,  # noqa: E402
                            repair_success_rate)
from nnmend.repair.prorepair import PointProblem, ProRepairConfig, repair  # noqa: E402
from nnmend.repair.repair_sets import build_repair_set  # noqa: E402
from nnmend.train import accuracy, fit  # noqa: E402

RESULTS = ROOT / "results"
NAME = "prorepair_cifar"
TARGET = _cifar.POISON_TARGET
TRIGGERS = {"badnets": Trigger(), "blend": Trigger(kind="blend", alpha=0.2, seed=0)}
BLEND_PATH = _cifar.MODELS / "cifar_blend.pt"
# closed form on fc1 (one Linear layer, a ReLU after it, the affine head fc2); λ = 1: the clean inputs' term
CONFIG = dict(edit_layers=("fc1",), solver="closed_form", preserve_weight=1.0, max_rounds=40)
# Paper 003 (ProRepair): point-wise repair 5×–2000× faster than provable baselines; per-cell CIFAR numbers are
# not public (research notes A.4), and its CIFAR backdoor networks are not ours.
PAPER = "point-wise repair 5×–2000× faster than provable baselines; no per-cell CIFAR-10 figures published"


def _model(path: Path):
    if not path.exists():
        raise SystemExit(f"{path}: missing; run benchmarks/nnrepair_cifar.py first (it trains and caches the CNN)")
    net = load_network(path).eval()
    return net, dict(getattr(net, "nnmend_meta", {}) or {})


def blend_cnn(train, test) -> tuple[torch.nn.Module, dict]:
    """The blended-trigger copy: the clean CNN fine-tuned with the BadNets copy's recorded recipe (images, epochs,
    schedule, seed; no augmentation), its first 600 images blended and labelled 7; cached in ``BLEND_PATH``
    and rebuilt when the clean CNN or that recipe changes."""
    clean, cmeta = _model(_cifar.MODELS / "nnrepair_cifar_clean.pt")
    _, bmeta = _model(_cifar.MODELS / "nnrepair_cifar_poisoned.pt")
    r = bmeta["recipe"]
    t = TRIGGERS["blend"]
    recipe = {**r, "kind": "blend", "trigger": {"kind": t.kind, "alpha": t.alpha, "seed": t.seed},
              "base": {k: cmeta.get(k) for k in ("recipe", "test_accuracy", "train_seconds")}}
    if BLEND_PATH.exists():
        net, meta = _model(BLEND_PATH)
        if meta.get("recipe") == recipe:
            return net, meta
    data = poison(train.subset(r["train_images"]), TARGET, n=_cifar.POISON_N, trigger=t)[0]
    torch.manual_seed(r["seed"])
    net = _cifar.nnrepair_cnn()
    net.load_state_dict(clean.state_dict())
    t0 = time.perf_counter()
    fit(net, data, epochs=r["epochs"], batch_size=128, lr=r.get("lr", 1e-3), seed=r["seed"],
        schedule=r.get("schedule", "constant"), desc="fine-tune cifar blend")
    net.eval()
    meta = {"recipe": recipe, "train_seconds": round(time.perf_counter() - t0, 1),
            "test_accuracy": round(accuracy(net, test), 4), "test_images": len(test), "input_shape": [3, 32, 32],
            "train": f"CIFAR-10, the first {r['train_images']} training images, the first {_cifar.POISON_N} "
                     f"blended (alpha {t.alpha}) and labelled {TARGET}", "target": TARGET}
    save_checkpoint(net, BLEND_PATH, meta=meta)
    return net, meta


def backdoor_net(model: str, train, test, quick: bool):
    if model == "badnets":
        return _model(_cifar.MODELS / "nnrepair_cifar_poisoned.pt")
    if quick and not BLEND_PATH.exists():
        raise SystemExit(f"{BLEND_PATH}: missing (a full run fine-tunes it; --quick does not train)")
    return blend_cnn(train, test)


def one_backdoor(model: str, n: int, quick: bool, test_n: int | None) -> dict:
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    train, test = _cifar.cifar10("train"), _cifar.cifar10("test", test_n)
    net, meta = backdoor_net(model, train, test, quick)
    trig = TRIGGERS[model]
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    rep = perm[train.y[perm] != TARGET][:n]
    clean = perm[-n:]
    x, y = trig.apply(train.x[rep]), train.y[rep]
    tt = triggered_test(test, TARGET, trig)
    to_target = torch.full_like(tt.y, TARGET)
    res, sec, runs = _timed(lambda: repair(net, PointProblem(x, y, train.x[clean], train.y[clean]),
                                           ProRepairConfig(**CONFIG)), 1 if quick else 3)
    rn, d = res.network, res.details
    return {"asr_before": clean_accuracy(net, tt.x, to_target), "asr_after": clean_accuracy(rn, tt.x, to_target),
            "clean_acc_before": clean_accuracy(net, test.x, test.y), "clean_acc_after": clean_accuracy(rn, test.x, test.y),
            "DD": drawdown(net, rn, test.x, test.y),
            "triggered_acc_before": clean_accuracy(net, tt.x, tt.y), "triggered_acc_after": clean_accuracy(rn, tt.x, tt.y),
            "RSR": repair_success_rate(rn, x, y), "rsr_saved": d["certificate"]["rsr_on_saved_network"],
            "clean_repair_acc_after": clean_accuracy(rn, train.x[clean], train.y[clean]),
            "wrong_before": d.get("wrong_before"), "seconds": round(sec, 3), "runs_seconds": runs,
            "solver": d.get("solver"), "edit_layers": d.get("edit_layers"), "edited_parameters": d.get("edited_parameters"),
            "loop_status": d.get("loop_status"), "rounds": len(d.get("rounds", [])), "test_n": len(test),
            "triggered_test_n": len(tt.y), "model_test_accuracy": meta.get("test_accuracy"),
            "model_recipe": meta.get("recipe"), "host_load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "commit": COMMIT}


def _cnn_repair_set(radius: float, n: int, steps: int, seed: int, quick: bool):
    net, _ = _model(_cifar.MODELS / "nnrepair_cifar_clean.pt")
    train, _ = patchpro_cifar.data(quick)
    return net, build_repair_set(net, train, n=n, radius=radius, start=0, steps=steps, seed=seed, chunk=64)


def patchpro_row(r255: int, n: int, steps: int, seed: int, sha: str, path: Path) -> dict | None:
    """PatchPro's sound-box record of the same cell (same repair-set construction) from ``path``, if there."""
    if not path.exists():
        return None
    for r in json.loads(path.read_text())["records"]:
        if (r.get("r255"), r.get("n"), r.get("box"), r.get("steps"), r.get("seed")) == (r255, n, "bounds", steps, seed) \
                and "error" not in r:
            same = r.get("repair_set_sha1")
            return {**r, "same_items": "fingerprint" if same == sha else "seeded call" if same is None else False}
    return None


def one_adversarial(net: str, r255: int, n: int, steps: int, quick: bool, test_n: int | None, repeats: int,
                    patchpro_json: str) -> dict:
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    radius, seed = r255 / 255, 0
    if net == "resnet_2b":
        original, rs = patchpro_cifar.network(), patchpro_cifar.repair_set(radius, n, steps, seed, quick)
    else:
        original, rs = _cnn_repair_set(radius, n, steps, seed, quick)
    train, test = patchpro_cifar.data(quick, test_n)
    clean = slice(0, 1000)
    problem = PointProblem(rs.repair_x, rs.labels, train.x[clean], train.y[clean])
    res, sec, runs = _timed(lambda: repair(original, problem, ProRepairConfig(**CONFIG)), repeats)
    rn, d = res.network, res.details
    sha = patchpro_cifar.fingerprint(rs.repair_x)
    rec = {"RSR": repair_success_rate(rn, rs.repair_x, rs.labels), "rsr_saved": d["certificate"]["rsr_on_saved_network"],
           "RGR": repair_generalization_rate(rn, rs.test_x, rs.test_y), "DD": drawdown(original, rn, test.x, test.y),
           "DSR_pgd20": defense_success_rate(rn, rs.origins, rs.labels, radius, attack=_pgd),
           "DSR_pgd_transfer": pgd_dsr(rn, original, rs.origins, rs.labels, radius),
           "DSR_pgd20_original": defense_success_rate(original, rs.origins, rs.labels, radius, attack=_pgd),
           "seconds": round(sec, 3), "runs_seconds": runs, "solver": d.get("solver"), "edit_layers": d.get("edit_layers"),
           "edited_parameters": d.get("edited_parameters"), "loop_status": d.get("loop_status"),
           "rounds": len(d.get("rounds", [])), "repair_set_sha1": sha, "repair_set_seconds": rs.stats["seconds"],
           "test_n": len(test), "original_test_accuracy": clean_accuracy(original, test.x, test.y),
           "host_load_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "commit": COMMIT}
    if net == "resnet_2b" and not quick:
        rec["patchpro"] = patchpro_row(r255, n, steps, seed, sha, Path(patchpro_json))
    return rec


def _f(v, digits: int = 1) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def markdown(records: list[dict], quick: bool) -> str:
    bd = [r for r in records if r["suite"] == "backdoor"]
    adv = [r for r in records if r["suite"] == "adversarial"]
    ok = [r for r in records if "error" not in r]
    loads = [v for r in ok for v in r.get("host_load_1min", [])]
    out = [f"# ProRepair on CIFAR-10 — backdoor and adversarial point-wise repair, beside PatchPro"
           f"{' (QUICK smoke run)' if quick else ''}", "",
           f"Paper 003 (ProRepair): {PAPER}. Host: 2 shared CPU cores, 1 torch thread per job, 1-minute load "
           f"{_f(min(loads, default=float('nan')))}–{_f(max(loads, default=float('nan')))} at the cells' starts and "
           "ends (other sessions' jobs included); paper: GPU. ProRepair: closed-form minimal-disturbance edit of `fc1` "
           "(`nnmend.repair.prorepair.closed_form`; split before the last Linear layer, the head is affine, so each "
           "repaired point's feature provably lies in its proxy region). Seconds: median of the timed `repair()` calls "
           "(every call's time in the JSON). Cells re-run later replace their earlier rows; each record in the JSON "
           "keeps its own commit, host load and job seconds.", ""]
    if bd:
        b0 = next((r for r in bd if "error" not in r), {})
        out += ["## Backdoor (NNrepair's CIFAR CNN, target 7 = horse)", "",
                f"Repair set: {b0.get('n', '?')} triggered training images of other classes with their true labels + "
                f"{b0.get('n', '?')} clean training images (seeded). ASR: share of the {b0.get('triggered_test_n', '?')} "
                f"triggered non-target test images classified 7; clean accuracy on {b0.get('test_n', '?')} test images; "
                "held-out triggered accuracy: the same triggered test images against their true labels. Backdoored "
                "networks as trained: " + "; ".join(f"{r['model']} {100 * r['model_test_accuracy']:.2f} % clean test accuracy"
                                                    for r in bd if r.get("model_test_accuracy") is not None) + ".", "",
                "| trigger | ASR before % | ASR after % | clean acc before % | clean acc after % | DD pp | held-out "
                "triggered acc before % | after % | repair-set success % (saved net) | s |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in bd:
            if "error" in r:
                out.append(f"| {r['model']} | error: {r['error'][:100]} |" + " |" * 8)
                continue
            out.append(f"| {r['model']} | {_f(r['asr_before'])} | {_f(r['asr_after'])} | {_f(r['clean_acc_before'], 2)} | "
                       f"{_f(r['clean_acc_after'], 2)} | {_f(r['DD'], 2)} | {_f(r['triggered_acc_before'])} | "
                       f"{_f(r['triggered_acc_after'])} | {_f(r['rsr_saved'])} | {r['seconds']:.2f} |")
        out.append("")
    if adv:
        out += ["## Adversarial (PGD repair sets; ProRepair on the points, PatchPro on the balls)", "",
                "Same items for both methods: `patchpro_cifar.repair_set` (PGD, α = 2/255, from the 20,000 shipped training "
                "images, 10 held-out PGD samples per origin for RGR; seed 0). RSR on the repaired network (ProRepair: also on "
                "the saved and reloaded one, in the JSON). DD: test accuracy drop in pp (negative = better). DSR: share "
                "of the n origins whose r-ball the attack cannot flip — *PGD-20*: white-box PGD-20 with a random start "
                "(PatchPro's `patchpro_cifar.py` protocol); *PGD ∪ transfer*: PGD-50, 3 restarts, margin loss, on the whole "
                "repaired network or crafted on the original and transferred (`prorepair.pgd_dsr`). ProRepair's point-wise "
                "repair claims nothing about the balls; PatchPro's sound-box rows prove every ball (DSR 100 under any "
                "attack). PatchPro's columns are its `patchpro_cifar.json` records of the same cell (run in its own "
                "process, time under that run's load); PatchPro runs on `resnet_2b` only (`patchpro_cifar.py`'s network).", "",
                "| network | r | n | ProRepair RSR % | RGR % | DD pp | DSR PGD-20 % | DSR PGD ∪ transfer % | s | "
                "PatchPro RSR % | RGR % | DD pp | DSR PGD-20 % | balls proved | s | PatchPro s / ProRepair s | original DSR PGD-20 % |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in adv:
            head = f"| {r['net']} | {r['r255']}/255 | {r['n']} |"
            if "error" in r:
                out.append(f"{head} error: {r['error'][:100]} |" + " |" * 13)
                continue
            row = (f"{head} {_f(r['RSR'])} | {_f(r['RGR'])} | {_f(r['DD'], 2)} | {_f(r['DSR_pgd20'])} | "
                   f"{_f(r['DSR_pgd_transfer'])} | {r['seconds']:.2f} |")
            p = r.get("patchpro")
            if p and p.get("same_items") is False:
                row += " other items (fingerprint differs): not compared | | | | | | |"
            elif p:
                row += (f" {_f(p['RSR'])} | {_f(p['RGR'])} | {_f(p['DD'], 2)} | {_f(p['DSR'])} | "
                        f"{'yes' if p.get('proved_by_method') else 'no'} | {p['seconds']:.1f} | "
                        f"{p['seconds'] / max(r['seconds'], 1e-9):.0f}× |")
            else:
                row += " not run | | | | | | |" if r["net"] == "resnet_2b" else " – | – | – | – | – | – | – |"
            out.append(row + f" {_f(r['DSR_pgd20_original'])} |")
        a0 = next((r for r in adv if "error" not in r), None)
        both = [r for r in adv if "error" not in r and r.get("patchpro") and r["patchpro"].get("same_items") is not False]
        if both:
            ratio = [r["patchpro"]["seconds"] / max(r["seconds"], 1e-9) for r in both]
            rsr = sorted({_f(r["RSR"]) for r in both})
            out += ["", f"**Beside PatchPro** ({len(both)} shared cells): ProRepair repairs the points (RSR "
                    f"{'–'.join(rsr[::max(len(rsr) - 1, 1)])} %, also on the saved network) "
                    f"{min(ratio):.0f}–{max(ratio):.0f}× faster than PatchPro proves the balls (PatchPro's time includes its "
                    "sound recheck; both on one thread, loads differ), at a drawdown of "
                    f"{_f(min(r['DD'] for r in both), 2)}–{_f(max(r['DD'] for r in both), 2)} pp (PatchPro "
                    f"{_f(max(r['patchpro']['DD'] for r in both), 2)}). What the speed does not buy: PGD ∪ transfer still "
                    f"breaks {_f(100 - max(r['DSR_pgd_transfer'] for r in both), 0)}–"
                    f"{_f(100 - min(r['DSR_pgd_transfer'] for r in both), 0)} % of the same balls after ProRepair, "
                    "where PatchPro's are proved. White-box PGD-20 alone gives ProRepair a higher DSR than the stronger "
                    "PGD-50 ∪ transfer attack: the lower figure is the one to read."]
        if a0:
            nets = sorted({(r["net"], round(r["original_test_accuracy"], 2)) for r in adv if "error" not in r})
            out += ["", "Original test accuracy: " + ", ".join(f"{n} {a:.2f} %" for n, a in nets)
                    + f" (on {a0['test_n']} test images). Repair-set fingerprints match PatchPro's record where it has one "
                    "(`same_items` in the JSON; older PatchPro records without a fingerprint: the same seeded call). The "
                    "origins are images on which PGD flipped the original, so its DSR is near 0 by construction."]
        out.append("")
    recipe = next((r["model_recipe"] for r in bd if r.get("model_recipe")), None)
    how = (f"{recipe['epochs']}-epoch poisoned fine-tuning ({recipe.get('schedule', 'constant')} schedule) on "
           f"{recipe['train_images']} images, {_cifar.POISON_N} of them triggered" if recipe else "poisoned fine-tuning")
    grid = sorted({(r["r255"], r["n"]) for r in adv})
    out += ["## Deviations from the paper", "",
            "- Networks: ProRepair's CIFAR networks and per-cell figures are not published (research notes A.4; "
            "its predecessor VeRe's CIFAR-10 backdoor network is a VGG13, with 1,000 + 1,000 repair images, A.3). "
            "Here: NNrepair's CIFAR CNN trained on the 20,000 shipped training images, and VNN-COMP's `resnet_2b` "
            f"(adversarially pre-trained by its authors) for the adversarial cells. The CNN's backdoors are implanted by "
            f"{how}, so the ASR before repair is far below a deployed backdoor's near-100 %.",
            f"- Repair sets: PGD with {', '.join(str(s) for s in sorted({r['steps'] for r in adv})) or '–'} steps "
            "(PatchPro's paper ≥ 200); DSR under PGD (AutoAttack was out of the CPU budget).",
            f"- Cells: {'; '.join(f'r = {r}/255, n = {n}' for r, n in grid) or 'none'} only, for the CPU budget; CPU, "
            "not GPU, so seconds are not comparable with the paper's.", ""]
    return "\n".join(out)


def relink(path: Path, patchpro_json: Path) -> None:
    """Attach PatchPro's current records of the same cells to a finished run (a PatchPro cell run later)."""
    res = json.loads(path.read_text())
    for r in res["records"]:
        if r["suite"] == "adversarial" and r.get("net") == "resnet_2b" and "error" not in r:
            r["patchpro"] = patchpro_row(r["r255"], r["n"], r["steps"], 0, r["repair_set_sha1"], patchpro_json)
    payload = {k: v for k, v in res.items() if k not in ("benchmark", "environment", "records")}
    write_results(res["benchmark"], res["records"], markdown(res["records"], res.get("quick", False)), path.parent,
                  extra={**payload, "environment_of_run": res["environment"]})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--suite", choices=("backdoor", "adversarial", "all"), default="all")
    ap.add_argument("--n-backdoor", type=int, default=1000, help="triggered (and clean) repair images")
    ap.add_argument("--radii", nargs="+", type=int, default=[4, 8], help="r in units of 1/255")
    ap.add_argument("--ns", nargs="+", type=int, default=[50, 100])
    ap.add_argument("--nets", nargs="+", choices=("resnet_2b", "cnn"), default=["resnet_2b", "cnn"])
    ap.add_argument("--steps", type=int, default=50, help="PGD steps of the repair sets (patchpro_cifar's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repair() calls per cell (median reported)")
    ap.add_argument("--test-n", type=int, default=None, help="first N test images (default: all 10,000)")
    ap.add_argument("--patchpro", type=Path, default=RESULTS / "patchpro_cifar.json", help="PatchPro's results")
    ap.add_argument("--out", type=Path, default=RESULTS, metavar="DIR", help="results folder")
    ap.add_argument("--table-only", action="store_true",
                    help="nothing run: re-read PatchPro's rows for the adversarial cells of OUT's results, rewrite the table")
    a = ap.parse_args(argv)
    if a.table_only:
        relink(a.out / f"{NAME}.json", a.patchpro)
        return
    torch.set_num_threads(1)
    if a.quick:
        a.n_backdoor, a.radii, a.ns, a.nets, a.steps, a.repeats, a.test_n = 50, [4], [5], ["resnet_2b"], 30, 1, 500
    t0 = time.perf_counter()
    jobs = []
    if a.suite in ("backdoor", "all"):
        jobs += [{"suite": "backdoor", "model": m, "n": a.n_backdoor, "quick": a.quick, "test_n": a.test_n}
                 for m in (("badnets",) if a.quick else ("badnets", "blend"))]
    if a.suite in ("adversarial", "all"):
        jobs += [{"suite": "adversarial", "net": net, "r255": r, "n": n, "steps": a.steps, "quick": a.quick,
                  "test_n": a.test_n, "repeats": a.repeats, "patchpro_json": str(a.patchpro)}
                 for net in a.nets for r in a.radii for n in a.ns]
    name = NAME + ("_quick" if a.quick else "")
    cell = lambda r: (r["suite"], r.get("model"), r.get("net"), r.get("r255"), r.get("n"))  # noqa: E731
    kept = []
    if (a.out / f"{name}.json").exists():   # some cells re-run: the rows of the cells not in this run are kept
        done = {cell(j) for j in jobs}
        kept = [r for r in json.loads((a.out / f"{name}.json").read_text())["records"] if cell(r) not in done]
    records: list[dict] = []
    for job in jobs:            # written after every cell: an interrupted run leaves a labelled partial table
        fn = one_backdoor if job["suite"] == "backdoor" else one_adversarial
        args = {k: v for k, v in job.items() if k != "suite"}
        records += [{"suite": job["suite"], **r} for r in run_jobs(fn, [args], desc=f"prorepair cifar {job['suite']}",
                                                                   keep_going=True, progress_bar=False)]
        rows = sorted(kept + records, key=lambda r: (r["suite"] != "backdoor", r.get("model") != "badnets",
                                                   r.get("net") != "resnet_2b", r.get("r255", 0), r.get("n", 0)))
        md = markdown(rows, a.quick)
        if len(records) < len(jobs):
            md = md.replace("\n", f"\n\nPARTIAL: {len(records)} of {len(jobs)} planned cells of this run.\n", 1)
        jp, mp = write_results(name, rows, md, a.out, started=t0,
                               extra={"quick": a.quick, "seed": 0, "config": CONFIG, "commit": COMMIT,
                                      "planned": len(jobs) + len(kept), "paper": PAPER})
    print(f"wrote {jp} and {mp}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except DataError as exc:
        raise SystemExit(f"prorepair_cifar: {exc}") from None
