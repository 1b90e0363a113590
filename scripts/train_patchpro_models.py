"""Train and ship PatchPro's three MNIST models (paper 002, research B.3): FNN_small, FNN_big, CNN_small.

Run once: ``python scripts/train_patchpro_models.py [--epochs 10]``; writes
``src/nnmend/_assets/models/{fnn_small,fnn_big,cnn_small}.pt`` (load with ``nets.pretrained(name)``).

Paper setting, used here: Adam lr 1e-3, batch 256, 50 epochs, plain cross-entropy, no input
normalisation; seed 0.
Weights are stored in float16 (``load_state_dict`` copies them into the float32 model) so that each file
stays under 1 MB; the accuracy recorded in the metadata is measured *after* that rounding, i.e. on
exactly the network that ``pretrained`` returns.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nnmend.data import load_dataset
from nnmend.io.atomic import atomic_write
from nnmend.io.checkpoint import FORMAT, VERSION, module_spec
from nnmend.nets import build
from nnmend.train import accuracy, fit

OUT = Path(__file__).resolve().parents[1] / "src" / "nnmend" / "_assets" / "models"
NAMES = ("fnn_small", "fnn_big", "cnn_small")


def save_half(net: torch.nn.Module, path: Path, meta: dict) -> None:
    """A weights-only nnmend checkpoint with float16 tensors (half the size; loads into float32)."""
    import json

    payload = {"format": FORMAT, "version": VERSION, "spec": json.dumps(module_spec(net)),
               "meta": json.dumps(meta), "state_dict": {k: v.detach().half().clone() for k, v in net.state_dict().items()}}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--only", choices=NAMES, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    for name in NAMES if args.only is None else (args.only,):
        torch.manual_seed(0)
        net = build(name)
        t0 = time.perf_counter()
        fit(net, train, epochs=args.epochs, batch_size=256, lr=1e-3, seed=0, desc=name)
        with torch.no_grad():               # round to float16 now, so the metadata describes the shipped net
            for p in net.parameters():
                p.copy_(p.half().float())
        acc = accuracy(net, test)
        meta = {"arch": name, "dataset": "mnist", "test_accuracy": acc, "epochs": args.epochs, "paper_epochs": 50,
                "batch_size": 256, "lr": 1e-3, "seed": 0, "weights": "float16", "input_shape": [1, 28, 28],
                "train_seconds": round(time.perf_counter() - t0, 1), "source": "scripts/train_patchpro_models.py"}
        save_half(net, OUT / f"{name}.pt", meta)
        (OUT / f"{name}.pt").chmod(0o644)
        print(f"{name}: test accuracy {acc:.4f}, {meta['train_seconds']} s, {(OUT / f'{name}.pt').stat().st_size} bytes")


if __name__ == "__main__":
    main()
