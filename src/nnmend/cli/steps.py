"""One SHNN step at a time on your own network: ``train``, ``damage``, ``diagnose``, ``heal``, ``attack``.

Each reads and writes model files, so the steps chain::

    nnmend train --out clean.pt
    nnmend damage clean.pt --layer fc2 --kind zero --out damaged.pt
    nnmend diagnose damaged.pt --reference clean.pt
    nnmend heal damaged.pt --reference clean.pt --layer auto --out healed.pt
    nnmend attack healed.pt --attack pgd --eps 0.1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (NETWORK_SUFFIXES, add_data_args, add_force_arg, check_outputs, check_suffix, load_data,
                      load_model, print_json)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network from the model zoo and save a checkpoint")
    p.add_argument("--arch", default="shnn_mlp", help="architecture name (default shnn_mlp)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint to write (.pt, .onnx)")
    add_force_arg(p)
    add_data_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("damage", help="damage one layer of a network (zero, gaussian, bit flips, ...)")
    p.add_argument("model")
    p.add_argument("--layer", required=True, help="layer name (see `nnmend diagnose --list`)")
    p.add_argument("--kind", default="zero", help="zero | gaussian | uniform | shuffle | sign | bitflip | quantize | prune")
    p.add_argument("--fraction", type=float, default=1.0, help="share of the layer's weights (default 1 = whole layer)")
    p.add_argument("--pattern", default=None, help="all | scatter | patch | rows | cols | magnitude")
    p.add_argument("--sigma", type=float, default=0.1, help="std of the Gaussian re-initialisation (SHNN: 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="network to write (.pt, .onnx, .nnet)")
    add_force_arg(p)
    p.set_defaults(func=cmd_damage)

    p = sub.add_parser("diagnose", help="per-layer MAD/MSE against a reference and the localised layer")
    p.add_argument("model")
    p.add_argument("--reference", help="the healthy network (omit with --attack: compares clean vs adversarial inputs)")
    p.add_argument("--attack", choices=["fgsm", "pgd"], help="diagnose adversarial damage on MODEL itself")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--metric", default=None, choices=["mad", "mse"], help="default mad (structural) / mse (attack)")
    p.add_argument("--rule", default=None, choices=["first", "first_increase", "peak"],
                   help="default first (structural) / peak (attack)")
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--list", action="store_true", help="only list the network's layers")
    p.add_argument("--out", help="write the diagnosis (.json) and a bar chart (.png beside it)")
    add_force_arg(p)
    add_data_args(p, default_n=100)
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("heal", help="replace a damaged layer by a trained patch (SHNN), or harden it adversarially")
    p.add_argument("model")
    p.add_argument("--layer", default="auto", help="layer to patch, or 'auto' to localise it first")
    p.add_argument("--reference", help="healthy network: activation targets and localisation")
    p.add_argument("--target", default="activation", choices=["activation", "task"])
    p.add_argument("--adversarial", choices=["fgsm", "pgd"], help="hybrid clean+adversarial patch against this attack")
    p.add_argument("--eps", type=float, default=None, help="attack radius (default: SHNN's 0.15 FGSM / 0.2 PGD)")
    p.add_argument("--adversary", default="original", choices=["original", "current"],
                   help="craft adversarial training inputs once on the original network, or each epoch on the current one")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="network to write (.pt, .onnx, .nnet)")
    add_force_arg(p)
    add_data_args(p)
    p.set_defaults(func=cmd_heal)

    p = sub.add_parser("attack", help="FGSM/PGD accuracy of a network (white-box)")
    p.add_argument("model")
    p.add_argument("--attack", default="pgd", choices=["fgsm", "pgd"])
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--no-random-start", action="store_true")
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", help="write the adversarial inputs and labels (.npz)")
    add_force_arg(p)
    add_data_args(p, default_n=1000)
    p.set_defaults(func=cmd_attack)


def cmd_train(a: argparse.Namespace) -> int:
    import torch

    from ..io import save_network
    from ..nets import build
    from ..train import accuracy, fit

    _check_network_out(a, {"--data": a.data})
    torch.manual_seed(a.seed)
    net = build(a.arch)
    tr, te = load_data(a, "train"), load_data(a, "test")
    fit(net, tr, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, desc=f"train {a.arch}")
    acc = accuracy(net, te)
    net.nnmend_meta = {"arch": a.arch, "dataset": a.data, "seed": a.seed, "epochs": a.epochs, "test_accuracy": acc,
                       "input_shape": list(tr.x.shape[1:])}
    save_network(net, a.out)
    print(f"test accuracy {100 * acc:.2f}% -> {a.out}")
    return 0


def cmd_damage(a: argparse.Namespace) -> int:
    from ..faults import damage
    from ..io import save_network

    _check_network_out(a, {"MODEL": a.model})
    net = load_model(a.model)
    out, fault = damage(net, a.layer, a.kind, fraction=a.fraction, pattern=a.pattern, sigma=a.sigma, seed=a.seed)
    out.nnmend_meta = {**getattr(net, "nnmend_meta", {}), "fault": fault.to_dict()}
    save_network(out, a.out)
    print_json(fault.to_dict())
    return 0


def _fitting_data(a: argparse.Namespace, net, split: str):
    """``--data``'s split, checked against the network before any work: a network that cannot take its
    inputs, or has fewer outputs than the data has classes, is one line naming both."""
    from .._validation import check_input_fits
    from ..errors import DataError

    data = load_data(a, split)
    out = check_input_fits(net, data.x, what=f"network {a.model}")
    classes = int(data.y.max()) + 1 if len(data) else 0
    if out.dim() != 2 or out.shape[1] < classes:
        raise DataError(f"network {a.model} gives outputs of shape {tuple(out.shape[1:])} but --data {a.data} "
                        f"has {classes} classes")
    return data


def _check_network_out(a: argparse.Namespace, inputs: dict) -> None:
    """The ``--out`` network: a known format, not an input, not an existing file without ``--force``."""
    check_outputs(inputs, {a.out: "--out"}, a.force)
    check_suffix(a.out, "--out", NETWORK_SUFFIXES)


def _diagnose_outputs(a: argparse.Namespace) -> list[Path]:
    """Check and return the files ``diagnose --out`` writes (the JSON and its chart); none without --out."""
    if not a.out:
        return []
    outputs = [Path(a.out), Path(a.out).with_suffix(".png")]
    _check_diagnose(a, outputs)
    check_suffix(a.out, "--out", (".json",))
    return outputs


def _check_diagnose(a: argparse.Namespace, outputs: list[Path]) -> None:
    roles = {p: "--out" if p == Path(a.out) else "written beside --out" for p in outputs}
    check_outputs({"MODEL": a.model, "--reference": a.reference, "--data": a.data}, roles, a.force)


def _attack_spec(kind: str, eps: float | None, **kw):
    from ..attacks import SHNN_FGSM, SHNN_PGD, AttackSpec

    base = SHNN_FGSM if kind == "fgsm" else SHNN_PGD
    from dataclasses import replace

    spec = replace(base, eps=eps) if eps is not None else base
    return replace(spec, **kw) if kw else spec


def cmd_diagnose(a: argparse.Namespace) -> int:
    from .. import plots
    from ..diagnose import diagnose
    from ..errors import NnmendError
    from ..io.atomic import staged_outputs
    from ..nets import named_layers
    from ..report import write_json

    outputs = _diagnose_outputs(a)
    net = load_model(a.model)
    if a.list:
        for name, m in named_layers(net).items():
            print(f"{name}\t{m}")
        return 0
    if not (a.attack or a.reference):
        raise NnmendError("diagnose needs --reference (the healthy network) or --attack")
    ref = None if a.attack else load_model(a.reference)
    te = _fitting_data(a, net, "test")
    if a.attack:
        adv = _attack_spec(a.attack, a.eps).run(net, te.x, te.y)
        d = diagnose(net, net, te.x, x_other=adv, metric=a.metric or "mse", rule=a.rule or "peak", threshold=a.threshold)
    else:
        d = diagnose(ref, net, te.x, metric=a.metric or "mad", rule=a.rule or "first", threshold=a.threshold)
    scores = d.mad if d.metric == "mad" else d.mse
    print(f"{'layer':<12}{'MAD':>10}{'MSE':>12}")
    for n in d.mad:
        mark = "  <- localised" if n == d.localized else ""
        print(f"{n:<12}{d.mad[n]:>10.4f}{d.mse[n]:>12.4f}{mark}")
    print(f"localised layer: {d.localized} (rule {d.rule}, {d.metric} > {d.threshold})")
    if a.out:
        out = Path(a.out)
        with staged_outputs(out.parent, check=lambda paths: _check_diagnose(a, paths)) as stage:
            write_json(d.to_dict(), stage / out.name)
            plots.layer_bars(scores, stage / outputs[1].name, localized=d.localized, threshold=a.threshold,
                             ylabel=d.metric.upper())
    return 0


def cmd_heal(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..diagnose import diagnose
    from ..errors import NnmendError
    from ..io import save_network
    from ..repair.patch_layer import PatchAdvConfig, PatchConfig, heal_adversarial, heal_structural
    from ..train import accuracy

    _check_network_out(a, {"MODEL": a.model, "--reference": a.reference, "--data": a.data})
    net = load_model(a.model)
    ref = load_model(a.reference) if a.reference else None       # every network before the (larger) data
    te = _fitting_data(a, net, "test")
    tr = load_data(a, "train")
    layer = a.layer
    if a.adversarial:
        spec = _attack_spec(a.adversarial, a.eps)
        if layer == "auto":
            adv = spec.run(net, te.x[:100], te.y[:100])
            layer = diagnose(net, net, te.x[:100], x_other=adv, metric="mse", rule="peak").localized
        cfg = PatchAdvConfig(attack=spec, adversary=a.adversary, seed=a.seed)
        cfg = replace(cfg, epochs=a.epochs) if a.epochs else cfg
        res = heal_adversarial(net, layer, tr, cfg)
    else:
        if layer == "auto":
            if ref is None:
                raise NnmendError("--layer auto needs --reference to localise the damage")
            layer = diagnose(ref, net, te.x[:100]).localized
            if layer is None:
                raise NnmendError("no layer deviates from the reference by more than the threshold: nothing to heal")
        cfg = PatchConfig(target=a.target, seed=a.seed)
        cfg = replace(cfg, epochs=a.epochs) if a.epochs else cfg
        res = heal_structural(net, layer, tr, reference=ref, config=cfg)
    before, after = accuracy(net, te), accuracy(res.network, te)
    res.network.nnmend_meta = {**getattr(net, "nnmend_meta", {}), "healed_layer": layer, "method": res.method}
    save_network(res.network, a.out)
    print(f"patched {layer} in {res.seconds:.1f}s: test accuracy {100 * before:.2f}% -> {100 * after:.2f}%  -> {a.out}")
    return 0


def cmd_attack(a: argparse.Namespace) -> int:
    import numpy as np

    from ..io.atomic import atomic_write
    from ..train import accuracy

    if a.save:
        check_outputs({"MODEL": a.model, "--data": a.data}, {a.save: "--save"}, a.force)
        check_suffix(a.save, "--save", (".npz",))
    net = load_model(a.model)
    te = _fitting_data(a, net, "test")
    spec = _attack_spec(a.attack, a.eps, **({} if a.attack == "fgsm" else dict(
        alpha=a.alpha, steps=a.steps, random_start=not a.no_random_start, restarts=a.restarts, seed=a.seed)))
    adv = spec.run(net, te.x, te.y)
    clean, robust = accuracy(net, te), accuracy(net, (adv, te.y))
    print(f"{spec.describe()} on {len(te)} samples: clean {100 * clean:.2f}%  adversarial {100 * robust:.2f}%")
    if a.save:
        with atomic_write(a.save) as fh:
            np.savez(fh, x=adv.numpy(), y=te.y.numpy())
    return 0
