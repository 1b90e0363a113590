"""The main job (``nnmend demo`` / ``make demo``): SHNN's whole flow on bundled MNIST, with a report.

Load the shipped SHNN MLP (or train one for another seed), zero one layer and Gaussian-damage another,
localise and heal each; attack with FGSM and PGD, localise by peak MSE and heal with a hybrid patch;
write ``report.json``, ``report.md`` and PNG figures.
"""
from __future__ import annotations

from dataclasses import replace

import sys
import time
from pathlib import Path

import torch
from torch import nn

from . import plots
from .attacks import SHNN_FGSM, SHNN_PGD
from .data import load_dataset
from .io import load_checkpoint, save_checkpoint
from .io.atomic import staged_outputs
from .nets import pretrained, shnn_mlp
from .report import Report
from .shnn import adversarial_scenario, pick_layers, structural_scenario
from .train import accuracy, fit

COLUMNS = ["scenario", "damaged_layer", "localized_layer", "clean_accuracy", "damaged_accuracy",
           "healed_accuracy", "recovery", "seconds"]


def _log(*args) -> None:
    print(*args, flush=True)


def shnn_model(seed: int, cache_dir: Path, retrain: bool = False, log=_log, save_dir: Path | None = None) -> nn.Module:
    """The bundled checkpoint for seed 0; otherwise a cached (in ``cache_dir``) or freshly trained one (10 epochs,
    Adam), saved into ``save_dir`` (default ``cache_dir``)."""
    cache = cache_dir / f"shnn_mlp_seed{seed}.pt"
    if not retrain and seed == 0:
        log("model: bundled SHNN MLP checkpoint (shnn_mlp_mnist, seed 0)")
        return pretrained("shnn_mlp_mnist")
    if not retrain and cache.exists():
        log(f"model: cached {cache}")
        return load_checkpoint(cache).model
    log(f"model: training the SHNN MLP 784-256-128-64-10 (seed {seed}, 10 epochs)")
    torch.manual_seed(seed)
    net = shnn_mlp()
    fit(net, load_dataset("mnist", "train"), epochs=10, seed=seed, desc="train SHNN MLP")
    save_checkpoint(net, (save_dir or cache_dir) / cache.name, {"arch": "shnn_mlp", "seed": seed, "dataset": "mnist"})
    return net


def _line(row: dict) -> str:
    f = lambda v: "   –  " if v is None else f"{100 * v:6.2f}"  # noqa: E731
    return (f"{row['scenario']:<10} damaged={str(row['damaged_layer'] or '-'):<4} localised={str(row['localized_layer']):<4} "
            f"clean={f(row['clean_accuracy'])}% hurt={f(row['damaged_accuracy'])}% healed={f(row['healed_accuracy'])}% "
            f"({row['seconds']:.1f}s)")


def run_demo(out: str | Path = "runs/demo", seed: int = 0, *, retrain: bool = False, quick: bool = False,
             log=_log) -> Report:
    """Run the demo and write the report into ``out``; returns the :class:`Report`.

    ``quick`` uses smaller heal/attack budgets (for tests); the numbers are still measured, not assumed. The
    run's files are written into a staging folder and moved into ``out`` together when it ends (a killed run
    leaves the previous run's files, never a mix).
    """
    out = Path(out)
    with staged_outputs(out) as stage:
        return _run_demo(out, stage, seed, retrain, quick, log)


def _run_demo(out: Path, stage: Path, seed: int, retrain: bool, quick: bool, log) -> Report:
    t0 = time.perf_counter()
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    if quick:
        test = test.subset(2000)
    net = shnn_model(seed, out, retrain, log, save_dir=stage)
    log(f"clean test accuracy: {100 * accuracy(net, test):.2f}% on {len(test)} images")
    rep = Report("nnmend demo: SHNN self-healing on MNIST", seed=seed, columns=COLUMNS)
    zero_layer, gauss_layer = pick_layers(net, seed, 2)
    from .repair.patch_layer import PatchAdvConfig, PatchConfig

    pcfg = PatchConfig(epochs=5) if quick else PatchConfig()
    for kind, layer in (("zero", zero_layer), ("gaussian", gauss_layer)):
        row = structural_scenario(net, layer, kind, train, test, seed=seed, config=pcfg, figures=stage)
        row.pop("healed_network")
        rep.add_row(row)
        log(_line(row))
    # SHNN's adversarial budget (15k clean + 15k adversarial training inputs), white-box evaluation on the full test set.
    acfg = PatchAdvConfig(n_samples=2000 if quick else 15000, epochs=2 if quick else 10)
    adv_test = test
    for name, attack in (("FGSM", SHNN_FGSM), ("PGD", SHNN_PGD)):
        row = adversarial_scenario(net, attack, train, adv_test, config=replace(acfg, attack=attack), seed=seed, figures=stage, name=name)
        healed = row.pop("healed_network")
        rep.add_row(row)
        log(_line(row) + f"  [paper protocol: replay on 100 = {100 * row['replay_accuracy_100']:.0f}%]")
        if name == "PGD":
            save_checkpoint(healed, stage / "healed_pgd.pt", {"scenario": "PGD hybrid patch", "seed": seed})
    for f in (r.get("figures", []) for r in rep.rows):
        for name in f:
            rep.add_figure(name, name.rsplit(".", 1)[0].replace("_", " "))
    plots.accuracy_bars(rep.rows, stage / "accuracy.png", title="accuracy: clean, damaged/attacked, healed")
    rep.add_figure("accuracy.png", "Accuracy per scenario (full test set; adversarial rows: white-box on the healed network)")
    rep.notes += [
        f"All rows use {len(test)} test images; adversarial patches train on {acfg.n_samples} clean + "
        f"{acfg.n_samples} adversarial inputs (SHNN: 15,000 + 15,000). For adversarial rows, 'damaged' is the original network "
        "under the attack and 'healed' a fresh white-box attack on the whole healed network.",
        "The paper's protocol (100 adversarial images crafted on the original network and replayed on the healed "
        "one) is reported as replay_accuracy_100 in report.json; it measures transfer, not robustness.",
    ]
    rep.extra["total_seconds"] = round(time.perf_counter() - t0, 1)
    rep.write(stage)
    log(f"report: {out / 'report.md'} ({rep.extra['total_seconds']:.0f}s)")
    return rep
