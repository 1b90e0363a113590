"""The SHNN flow (paper 000) as reusable scenarios: damage → localise → heal → measure.

Each scenario returns one plain record (a dict) with the fields of ``report.json``: ``scenario``,
``damaged_layer``, ``localized_layer``, ``clean_accuracy``, ``damaged_accuracy``, ``healed_accuracy``,
``recovery``, ``seconds`` — on the FULL test set given — plus the paper's protocol on the first
``probe`` test samples (``*_100`` fields). The demo, the CLI and ``benchmarks/shnn.py`` all use them.

Adversarial scenarios report both protocols side by side:

* paper: adversarial examples crafted on the *original* network for the first 100 test images and
  replayed on the healed one (``replay_accuracy_100``) — a transfer number, not robustness;
* honest: a fresh white-box attack on the whole healed network over the full test set
  (``healed_accuracy``), and the healed network's clean accuracy (``healed_clean_accuracy``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from . import plots
from .attacks import AttackSpec
from .data import Dataset
from .diagnose import diagnose
from .faults import damage
from .metrics import recovery
from .nets import get_layer, named_layers, predict
from .repair.patch_layer import PatchAdvConfig, PatchConfig, heal_adversarial, heal_structural
from .train import accuracy


def structural_scenario(net: nn.Module, layer: str, kind: str, train: Dataset, test: Dataset, *, probe: int = 100,
                        rule: str = "first", threshold: float = 0.1, seed: int = 0, sigma: float = 0.1,
                        config: PatchConfig = PatchConfig(), figures: Path | None = None) -> dict:
    """Damage ``layer`` (``kind``: zero / gaussian / …), localise by MAD on ``probe`` test inputs, heal."""
    t0 = time.perf_counter()
    damaged, fault = damage(net, layer, kind, sigma=sigma, seed=seed)
    x_probe = test.x[:probe]
    diag = diagnose(net, damaged, x_probe, metric="mad", rule=rule, threshold=threshold)
    target = diag.localized
    row = {"scenario": f"{kind} {layer}", "damaged_layer": layer, "localized_layer": target,
           "clean_accuracy": accuracy(net, test), "damaged_accuracy": accuracy(damaged, test)}
    if target is None:
        healed, heal_s = damaged, 0.0
    else:
        res = heal_structural(damaged, target, train, reference=net, config=replace(config, seed=seed))
        healed, heal_s = res.network, res.seconds
    row["healed_accuracy"] = accuracy(healed, test)
    row["recovery"] = recovery(row["clean_accuracy"], row["damaged_accuracy"], row["healed_accuracy"])
    row["heal_seconds"] = round(heal_s, 2)
    sub = test.subset(probe)
    row.update(clean_accuracy_100=accuracy(net, sub), damaged_accuracy_100=accuracy(damaged, sub),
               healed_accuracy_100=accuracy(healed, sub), mad=diag.mad, mse=diag.mse, rule=rule, fault=fault.to_dict())
    row["seconds"] = round(time.perf_counter() - t0, 2)
    if figures is not None:
        tag = f"{kind}_{layer}"
        plots.layer_bars(diag.mad, figures / f"mad_{tag}.png", localized=target, true_layer=layer, threshold=threshold,
                         title=f"{kind} damage to {layer}: MAD per layer (localised {target})")
        plots.weight_histograms(get_layer(net, layer).weight, get_layer(damaged, layer).weight,
                                get_layer(healed, target or layer).weight if target == layer else get_layer(healed, layer).weight,
                                figures / f"weights_{tag}.png", title=f"{layer} weights")
        row["figures"] = [f"mad_{tag}.png", f"weights_{tag}.png"]
    row["healed_network"] = healed
    return row


def adversarial_scenario(net: nn.Module, attack: AttackSpec, train: Dataset, test: Dataset, *, probe: int = 100,
                         config: PatchAdvConfig | None = None, eval_attack: AttackSpec | None = None,
                         seed: int = 0, figures: Path | None = None, name: str | None = None) -> dict:
    """Attack, localise by peak MSE between clean and adversarial activations, heal with a hybrid patch.

    The patch trains against ``config.attack`` (default: ``attack`` itself); ``eval_attack`` (default:
    ``attack``) is the fresh white-box attack run on the healed network.
    """
    t0 = time.perf_counter()
    config = replace(config or PatchAdvConfig(attack=attack), seed=seed)
    eval_attack = eval_attack or attack
    x_probe, y_probe = test.x[:probe], test.y[:probe]
    adv_probe = attack.run(net, x_probe, y_probe)
    diag = diagnose(net, net, x_probe, x_other=adv_probe, metric="mse", rule="peak")
    layer = diag.localized
    x_adv = attack.run(net, test.x, test.y)
    row = {"scenario": name or attack.describe().split(" ")[0], "damaged_layer": None, "localized_layer": layer,
           "clean_accuracy": accuracy(net, test), "damaged_accuracy": accuracy(net, (x_adv, test.y))}
    res = heal_adversarial(net, layer, train, config)
    healed = res.network
    x_adv_healed = eval_attack.run(healed, test.x, test.y)
    row["healed_accuracy"] = accuracy(healed, (x_adv_healed, test.y))
    row["recovery"] = recovery(row["clean_accuracy"], row["damaged_accuracy"], row["healed_accuracy"])
    row["heal_seconds"] = round(res.seconds, 2)
    row.update(
        healed_clean_accuracy=accuracy(healed, test),
        transfer_accuracy=accuracy(healed, (x_adv, test.y)),
        adversarial_accuracy_100=accuracy(net, (adv_probe, y_probe)),
        replay_accuracy_100=accuracy(healed, (adv_probe, y_probe)),
        attack=attack.describe(), train_attack=config.attack.describe(), eval_attack=eval_attack.describe(),
        adversary=config.adversary,
        mse=diag.mse, mad=diag.mad,
    )
    row["seconds"] = round(time.perf_counter() - t0, 2)
    if figures is not None:
        tag = row["scenario"].lower().replace(" ", "_")
        plots.layer_bars(diag.mse, figures / f"mse_{tag}.png", localized=layer, ylabel="MSE",
                         title=f"{row['scenario']}: MSE clean vs adversarial activations (peak {layer})")
        plots.image_pairs(x_probe, adv_probe, predict(net, x_probe).tolist(), predict(net, adv_probe).tolist(),
                          figures / f"adv_{tag}.png", title=f"{attack.describe()} on the original network")
        row["figures"] = [f"mse_{tag}.png", f"adv_{tag}.png"]
    row["healed_network"] = healed
    return row


def pick_layers(net: nn.Module, seed: int, k: int = 2) -> list[str]:
    """``k`` distinct weight layers chosen at random with ``seed`` (SHNN damages a random Dense layer)."""
    names = list(named_layers(net))
    g = torch.Generator().manual_seed(seed)
    return [names[i] for i in torch.randperm(len(names), generator=g)[:k].tolist()]
