"""CIFAR-10 pieces shared by the CIFAR benchmarks: the data and NNrepair's CIFAR CNN, trained once and cached.

* :func:`cifar10` — ``load_dataset("cifar10", split)`` when the library knows the name, else the shared
  ``.npz`` files read directly (the full test set; 20,000 training images, ``data_batch_1`` and ``_2``).
* :func:`nnrepair_cnn` — paper 004's CIFAR model: Conv32–Conv32–Pool–Conv64–Conv64–Pool–Dense512–Dense10
  (3×3 valid convolutions, ReLU, 2×2 max-pooling; 1,600 features into Dense(512); 890,410 parameters).
* :func:`models` — that CNN trained (seeded, Adam, batch 128; optionally with random crop + flip
  augmentation and a learning-rate schedule) on clean images, and a BadNets copy fine-tuned from it on
  poisoned images; loaded from ``benchmarks/results/models/`` when checkpoints for the same recipe are there.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnmend.data import Dataset, Trigger, load_dataset, poison
from nnmend.errors import DataError
from nnmend.io import load_network, save_checkpoint
from nnmend.train import accuracy, crop_flip, fit

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
MODELS = Path(__file__).resolve().parent / "results" / "models"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
POISON_TARGET, POISON_N = 7, 600   # NNrepair: the first 600 training images get the trigger, label 7 (horse)


def cifar10(split: str, limit: int | None = None) -> Dataset:
    """CIFAR-10 as (N, 3, 32, 32) float32 in [0, 1], labels int64."""
    try:
        return load_dataset("cifar10", split, limit=limit, root=DATA_DIR.parent)
    except (DataError, TypeError):   # a library without the name (or without root=): read the files here
        pass
    path = DATA_DIR / ("cifar10_test.npz" if split == "test" else "cifar10_train_20k.npz")
    if not path.exists():
        raise DataError(f"{path}: CIFAR-10 not found (see {DATA_DIR}/README.md)")
    with np.load(path, allow_pickle=False) as z:
        x, y = z["x"][:limit], z["y"][:limit]
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float().div_(255.0)
    return Dataset(x, torch.from_numpy(y.astype(np.int64)), "cifar10", split, CLASSES)


def nnrepair_cnn() -> nn.Sequential:
    """NNrepair's CIFAR-10 CNN (paper 004, Sec. 5; 890,410 parameters)."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 32, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(1600, 512)), ("relu5", nn.ReLU()),
        ("fc2", nn.Linear(512, 10)),
    ]))


def poisoned(train: Dataset) -> Dataset:
    """BadNets copy of ``train``: the first 600 images carry NNrepair's 3×3 square and are labelled 7."""
    return poison(train, target=POISON_TARGET, n=min(POISON_N, len(train)), trigger=Trigger())[0]


def trained_cnn(kind: str, train: Dataset, test: Dataset, *, epochs: int, seed: int = 0, base: nn.Module | None = None,
                cache: bool = True, augment: bool = False, schedule: str = "constant", lr: float = 1e-3,
                crop_pad: int = 4) -> tuple[nn.Module, dict]:
    """The CNN trained on ``train`` (``kind="clean"``) or on its poisoned copy (``"poisoned"``), from scratch or,
    given ``base``, fine-tuned from it (a BadNets backdoor implanted by poisoned fine-tuning). ``augment``: random
    ``crop_pad``-pixel crop + horizontal flip (:func:`nnmend.train.crop_flip`); ``schedule``/``lr`` as
    :func:`nnmend.train.fit`.

    A checkpoint in ``benchmarks/results/models/nnrepair_cifar_{kind}.pt`` is reused when its recorded
    recipe matches (a fine-tune's recipe holds its base's, so retraining the base retrains it too); with
    ``cache=False`` nothing is read or written. The returned network carries its meta as ``nnmend_meta``.
    """
    recipe = {"kind": kind, "train_images": len(train), "epochs": epochs, "seed": seed,
              "from": "clean model" if base is not None else "scratch"}
    if augment or schedule != "constant" or lr != 1e-3:   # the first recipe's keys stay as they were
        recipe.update(augment=f"crop{crop_pad}+flip" if augment else "none", schedule=schedule, lr=lr)
    base_recipe = (getattr(base, "nnmend_meta", None) or {}).get("recipe")
    if base_recipe is not None:
        recipe["base"] = base_recipe
    path = MODELS / f"nnrepair_cifar_{kind}.pt"
    if cache and path.exists():
        net = load_network(path)
        meta = getattr(net, "nnmend_meta", {}) or {}
        if meta.get("recipe") == recipe:
            return net.eval(), meta
    data = poisoned(train) if kind == "poisoned" else train
    torch.manual_seed(seed)
    net = nnrepair_cnn()
    if base is not None:
        net.load_state_dict(base.state_dict())
    t0 = time.perf_counter()
    hist = fit(net, data, epochs=epochs, batch_size=128, lr=lr, seed=seed, schedule=schedule,
               augment=crop_flip(crop_pad) if augment else None, desc=f"train cifar {kind}")
    meta = {"recipe": recipe, "train_seconds": round(time.perf_counter() - t0, 1),
            "test_accuracy": round(accuracy(net, test), 4), "test_images": len(test), "input_shape": [3, 32, 32],
            "train_loss": [round(v, 4) for v in hist.loss],
            "train": f"CIFAR-10, the first {len(train)} training images"}
    if cache:
        MODELS.mkdir(parents=True, exist_ok=True)
        save_checkpoint(net, path, meta=meta)
    net.nnmend_meta = meta
    return net.eval(), meta


def models(train: Dataset, test: Dataset, *, n_clean: int, n_poison: int, epochs: int, seed: int = 0,
           cache: bool = True, poisoned: bool = True, augment: bool = False, schedule: str = "constant",
           poison_epochs: int | None = None, poison_schedule: str | None = None, crop_pad: int = 4
           ) -> dict[str, tuple[nn.Module, dict]]:
    """``{"clean": (net, meta), "poisoned": (net, meta)}``: the clean CNN on the first ``n_clean`` images, and
    (when ``poisoned``) the poisoned one fine-tuned from it on the first ``n_poison`` (600 of them triggered,
    labelled 7; ``poison_epochs``/``poison_schedule`` default to the clean run's, never augmented: a shifted
    crop would move the trigger)."""
    out = {"clean": trained_cnn("clean", train.subset(n_clean), test, epochs=epochs, seed=seed, cache=cache,
                                augment=augment, schedule=schedule, crop_pad=crop_pad)}
    if poisoned:
        out["poisoned"] = trained_cnn("poisoned", train.subset(n_poison), test,
                                      epochs=epochs if poison_epochs is None else poison_epochs, seed=seed,
                                      base=out["clean"][0], cache=cache,
                                      schedule=schedule if poison_schedule is None else poison_schedule)
    return out
