"""Train ProRepair's poisoned MNIST CNNs once, with a fixed seed, and ship them as small checkpoints.

Writes ``src/nnmend/_assets/models/``:

* ``prorepair_badnets_cnn.pt`` — a small CNN (Conv(1,8,k4,s2,p1)-ReLU-Conv(8,16,k4,s2,p1)-ReLU-
  Flatten-64-10, about 55 k parameters) trained 3 epochs on all 60,000 MNIST training images with
  10 % carrying the BadNets square (3×3 of 250/255 at rows/cols 24–26) relabelled 0;
* ``prorepair_blend_cnn.pt`` — the same with the blended trigger (α = 0.1 random pattern, seed 0)
  on 10 % of the images (α = 0.2 for training so the backdoor takes; α = 0.2 at test time too).

Architecture scale follows the VeRe/ProRepair MNIST backdoor setting (a small CNN with a dense head,
research notes A.3); the exact ``cnn8`` is not published. Run once:
``python scripts/train_prorepair_models.py`` (about a minute per model on two cores).
"""
from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from nnmend import load_dataset
from nnmend.data import Trigger, poison, triggered_test
from nnmend.io import save_checkpoint
from nnmend.train import accuracy, fit

OUT = Path(__file__).resolve().parents[1] / "src" / "nnmend" / "_assets" / "models"
SEED = 0
TARGET = 0
TRIGGERS = {"badnets": Trigger(kind="square"), "blend": Trigger(kind="blend", alpha=0.2, seed=0)}


def backdoor_cnn() -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 4, stride=2, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 4, stride=2, padding=1)), ("relu2", nn.ReLU()), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 7 * 7, 64)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(64, 10))]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=list(TRIGGERS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    for name, trig in TRIGGERS.items():
        if args.only and name not in args.only:
            continue
        data, _ = poison(train, TARGET, fraction=0.1, trigger=trig, first=False, seed=SEED)
        torch.manual_seed(SEED)
        net = backdoor_cnn()
        t0 = time.perf_counter()
        fit(net, data, epochs=3, batch_size=128, lr=1e-3, seed=SEED, progress_bar=True, desc=name)
        net.eval()
        acc = accuracy(net, test)
        asr = accuracy(net, (triggered_test(test, TARGET, trig).x, torch.full((len(test.y[test.y != TARGET]),), TARGET)))
        meta = {"train": f"mnist train, 10% poisoned ({name}, target {TARGET})", "epochs": 3, "seed": SEED,
                "trigger": {"kind": trig.kind, "alpha": trig.alpha, "seed": trig.seed}, "target": TARGET,
                "test_accuracy": round(acc, 4), "attack_success_rate": round(asr, 4),
                "train_seconds": round(time.perf_counter() - t0, 1), "input_shape": [1, 28, 28]}
        path = OUT / f"prorepair_{name}_cnn.pt"
        save_checkpoint(net, path, meta=meta)
        print(f"{name}: clean accuracy {acc:.4f}, ASR {asr:.4f} -> {path}", flush=True)


if __name__ == "__main__":
    main()
