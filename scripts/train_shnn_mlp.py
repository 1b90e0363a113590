"""Train the SHNN MLP (784-256-128-64-10; Adam, 10 epochs, batch 128) on bundled MNIST and ship it.

Writes src/nnmend/_assets/models/shnn_mlp_mnist.pt (weights-only checkpoint with its test accuracy).
"""
from __future__ import annotations

import argparse
import time

from nnmend import accuracy, fit, load_dataset, shnn_mlp
from nnmend.io import save_checkpoint
from nnmend.nets import pretrained_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--name", default="shnn_mlp_mnist")
    a = ap.parse_args()
    tr, te = load_dataset(a.dataset, "train"), load_dataset(a.dataset, "test")
    import torch

    torch.manual_seed(a.seed)
    net = shnn_mlp()
    t0 = time.perf_counter()
    fit(net, tr, epochs=10, batch_size=128, lr=1e-3, seed=a.seed, progress_bar=True)
    acc = accuracy(net, te)
    meta = {"arch": "shnn_mlp", "dataset": a.dataset, "seed": a.seed, "epochs": 10, "test_accuracy": acc,
            "train_seconds": round(time.perf_counter() - t0, 1), "input_shape": [1, 28, 28]}
    save_checkpoint(net, pretrained_path(a.name), meta)
    print(meta)


if __name__ == "__main__":
    main()
