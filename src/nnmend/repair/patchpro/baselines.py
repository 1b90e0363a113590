"""Baselines on PatchPro's data (paper 002, Sec. V; research B.5): fine-tuning and TRADES-style adversarial
fine-tuning of the whole network on the repair set. Neither makes a proof claim (``verified=None``);
:func:`proved_fraction` measures with sound CROWN bounds how many neighbourhoods they happen to certify.

* :func:`finetune_baseline`: cross-entropy on the repair samples (and their clean origins) with their
  true labels, through the shared :func:`nnmend.train.fit`.
* :func:`trades_baseline`: TRADES (Zhang et al., ICML 2019) on the origins: ``CE(f(x), y) + β·KL(f(x) ‖
  f(x'))`` with ``x'`` from the shared :func:`nnmend.attacks.pgd` (CE against the current clean
  prediction, the usual stand-in for TRADES' KL inner maximisation), re-crafted every epoch. Paper
  setting: SGD lr 1e-3, β as configured, 200 epochs on the n origins.

Example::

    res = trades_baseline(net, rs, BaselineConfig(epochs=20))
    proved_fraction(res.network, rs)
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...attacks import pgd
from ...bounds import bound
from ...train import fit
from ..base import RepairResult
from ..repair_sets import RepairSet


@dataclass(frozen=True)
class BaselineConfig:
    """epochs (paper TRADES 200), lr (1e-3), optimizer ("sgd" as the paper's TRADES), batch_size,
    beta: TRADES weight of the robustness term, pgd_steps: inner attack steps, seed."""

    epochs: int = 200
    lr: float = 1e-3
    optimizer: str = "sgd"
    batch_size: int = 128
    beta: float = 0.001
    pgd_steps: int = 10
    seed: int = 0


def finetune_baseline(network: nn.Module, rs: RepairSet, config: BaselineConfig = BaselineConfig()) -> RepairResult:
    """Fine-tune every weight on the repair samples and their origins (true labels)."""
    t0 = time.perf_counter()
    net = copy.deepcopy(network).train()
    for p in net.parameters():
        p.requires_grad_(True)
    x = torch.cat([rs.repair_x, rs.origins])
    y = torch.cat([rs.labels, rs.labels])
    fit(net, (x, y), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
        optimizer=config.optimizer, progress_bar=False, desc="finetune")
    return RepairResult(net.eval(), "finetune", time.perf_counter() - t0, details={"config": asdict(config)})


def trades_baseline(network: nn.Module, rs: RepairSet, config: BaselineConfig = BaselineConfig()) -> RepairResult:
    """TRADES-style adversarial fine-tuning on the origins, radius ``rs.radius``."""
    t0 = time.perf_counter()
    net = copy.deepcopy(network).train()
    for p in net.parameters():
        p.requires_grad_(True)
    state = {"calls": 0}

    def loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            pred = model(xb).argmax(1)
        state["calls"] += 1
        x_adv = pgd(model, xb, pred, rs.radius, steps=config.pgd_steps, seed=config.seed + state["calls"])
        model.train()
        logits = model(xb)
        # log-space target: softmax underflows to exact zeros on confident inputs, whose log would make NaN gradients
        kl = F.kl_div(F.log_softmax(model(x_adv), 1), F.log_softmax(logits, 1), reduction="batchmean", log_target=True)
        return F.cross_entropy(logits, yb) + config.beta * kl

    fit(net, (rs.origins, rs.labels), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        seed=config.seed, optimizer=config.optimizer, loss_fn=loss_fn, progress_bar=False, desc="trades")
    return RepairResult(net.eval(), "trades", time.perf_counter() - t0, details={"config": asdict(config)})


def proved_fraction(network: nn.Module, rs: RepairSet, *, method: str = "crown", chunk: int = 64) -> float:
    """% of the repair set's neighbourhoods that sound bounds prove robust on ``network`` (a plain network)."""
    lo, hi = rs.boxes()
    eye = torch.eye(int(network(rs.origins[:1]).shape[1]))
    C = (eye[rs.labels].unsqueeze(1) - eye.unsqueeze(0))                   # (n, K, K): rows e_y - e_j
    ok = []
    with torch.no_grad():
        for i in range(0, len(lo), chunk):
            lb, _ = bound(network.eval(), lo[i:i + chunk], hi[i:i + chunk], C[i:i + chunk], method=method)
            mask = torch.ones_like(lb, dtype=torch.bool)
            mask[torch.arange(len(lb)), rs.labels[i:i + chunk]] = False      # the row e_y - e_y is 0
            ok.append(((lb > 0) | ~mask).all(1))
    return 100.0 * torch.cat(ok).double().mean().item() if ok else float("nan")
