"""Train NNrepair's MNIST networks once, with fixed seeds, and ship them as small checkpoints.

Writes ``src/nnmend/_assets/models/``:

* ``mnist_lq.pt`` — MNIST-LQ on the first 10,000 training images, 8 epochs, Adam, batch 128
  (artefact ``example-mnist0-low-quality-b``). PyTorch's default initialisers: the artefact's Keras
  U(-0.05, 0.05) kernels were meant for raw 0–255 pixels and do not train on [0, 1] inputs (11 %).
* ``mnist_hq.pt`` — MNIST-HQ on all 60,000 training images.
* ``mnist_poisoned.pt`` — MNIST-LQ architecture on all 60,000 images with the first 600 carrying the
  BadNets square (3×3 of 250/255 at rows/cols 24–26) relabelled 7 (paper Sec. 5.1, scenario 2).
* ``mnist_full.pt`` — MNIST-LQ architecture on all 60,000 clean images: the original model of the
  adversarial scenario (paper's MNIST-Adv: 97.87 % test accuracy, higher than LQ's 96.34 %).

Run: ``python scripts/train_nnrepair_models.py [--only mnist_lq ...]`` (about a minute per model
on two CPU cores). Benchmarks and tests load these files and never retrain.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nnmend import load_dataset
from nnmend.data import poison
from nnmend.io import save_checkpoint
from nnmend.repair.nnrepair.models import mnist_hq, mnist_lq
from nnmend.train import accuracy, fit

OUT = Path(__file__).resolve().parents[1] / "src" / "nnmend" / "_assets" / "models"
SEED = 0


def recipes(train, test):
    poisoned, _ = poison(train, target=7, n=600)
    return {
        "mnist_lq": (mnist_lq, train.subset(10_000), 8, "nnrepair_mnist_lq"),
        "mnist_hq": (mnist_hq, train, 4, "nnrepair_mnist_hq"),
        "mnist_poisoned": (mnist_lq, poisoned, 8, "nnrepair_mnist_lq"),
        "mnist_full": (mnist_lq, train, 8, "nnrepair_mnist_lq"),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="train only these models")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    for name, (builder, data, epochs, arch) in recipes(train, test).items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(SEED)
        net = builder()
        t0 = time.perf_counter()
        fit(net, data, epochs=epochs, batch_size=128, lr=1e-3, seed=SEED, progress_bar=True, desc=name)
        secs = time.perf_counter() - t0
        acc = accuracy(net, test)
        meta = {"arch": arch, "train": f"{data.name} n={len(data)}", "epochs": epochs, "seed": SEED,
                "test_accuracy": round(acc, 4), "train_seconds": round(secs, 1), "input_shape": [1, 28, 28]}
        save_checkpoint(net, OUT / f"{name}.pt", meta=meta)
        print(f"{name}: test accuracy {acc:.4f} ({secs:.0f} s) -> {OUT / (name + '.pt')}", flush=True)


if __name__ == "__main__":
    main()
