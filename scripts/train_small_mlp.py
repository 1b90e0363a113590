"""Train and ship the bundled ``small_mlp_mnist`` checkpoint (784-100-10 ReLU MLP, the NCA talk's scale).

Run once: ``python scripts/train_small_mlp.py``; writes ``src/nnmend/_assets/models/small_mlp_mnist.pt``.
Fixed seed 0, Adam lr 1e-3, batch 128, 5 epochs on the full MNIST training set.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from nnmend.data import load_dataset
from nnmend.io import save_checkpoint
from nnmend.nets import small_mlp
from nnmend.train import accuracy, fit

OUT = Path(__file__).resolve().parents[1] / "src" / "nnmend" / "_assets" / "models" / "small_mlp_mnist.pt"


def main() -> None:
    torch.manual_seed(0)
    net = small_mlp()
    t0 = time.perf_counter()
    fit(net, load_dataset("mnist", "train"), epochs=5, batch_size=128, lr=1e-3, seed=0)
    acc = accuracy(net, load_dataset("mnist", "test"))
    meta = {"arch": "small_mlp", "dataset": "mnist", "test_accuracy": acc, "epochs": 5, "seed": 0,
            "train_seconds": round(time.perf_counter() - t0, 1), "input_shape": [1, 28, 28]}
    save_checkpoint(net, OUT, meta=meta)
    print(f"wrote {OUT} (test accuracy {acc:.4f})")


if __name__ == "__main__":
    main()
