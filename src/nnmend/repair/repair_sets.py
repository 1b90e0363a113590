"""PGD repair sets for provable local-robustness repair (PatchPro / AdvRepair, paper 002; research B.5).

For each candidate origin ``x`` (a clean training image the original network classifies correctly), an
L∞ PGD attack of radius ``r`` (step ``2/255``, random start, clipped to [0, 1]) runs on the original
network for ``steps`` iterations; every *distinct* iterate that is misclassified is kept. An origin is
used only if at least ``1 + per_origin`` such inputs exist: the ``(1 + per_origin)``-th is its **repair
sample**, the first ``per_origin`` (10 in the paper) are its **held-out** adversarial samples (RGR).
The first ``n`` usable origins of the pool (training images 40000… in the paper's generalisation setup)
form the set. Each origin gives one property: the ball of radius ``r`` around it, clipped to [0, 1],
keeps the origin's label.

All candidates of a chunk are attacked at once (no loop over samples); only the iterations loop.

Example::

    rs = build_repair_set(pretrained("fnn_small"), load_dataset("mnist", "train"), n=50, radius=0.05)
    props = rs.properties()                  # list of LocalRobustness
    lo, hi = rs.boxes()                      # (n, 1, 28, 28) each
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .._validation import check_positive
from ..attacks.base import attack_loss, eval_mode, project
from ..data import Dataset
from ..errors import DataError, RepairError
from ..properties import LocalRobustness

__all__ = ["RepairSet", "build_repair_set", "collect_adversarial_iterates"]


@dataclass(frozen=True, eq=False)
class RepairSet:
    """``n`` local-robustness properties with their adversarial samples.

    Attributes:
        origins (n, *s): clean centres. labels (n,): their labels (the original network gets them right).
        repair_x (n, *s): one adversarial sample per origin (the paper's repair set).
        wrong (n,): the original network's label on ``repair_x`` (PatchPro's patch tag).
        test_x (n·k, *s), test_y (n·k,): ``k`` held-out adversarial samples per origin, flattened in
            origin order (sample ``i·k + j`` belongs to origin ``i``).
        radius: L∞ radius r. per_origin: k. indices: the origins' indices in the pool dataset.
        stats: how many candidates were attacked / usable, seconds.
    """

    origins: torch.Tensor
    labels: torch.Tensor
    repair_x: torch.Tensor
    wrong: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    radius: float
    per_origin: int
    indices: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def properties(self, clip: bool = True) -> list[LocalRobustness]:
        """One :class:`LocalRobustness` per origin (ball clipped to [0, 1] unless ``clip=False``)."""
        lo, hi = (0.0, 1.0) if clip else (None, None)
        return [LocalRobustness(x, self.radius, int(y), lo, hi) for x, y in zip(self.origins, self.labels)]

    def boxes(self, clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The properties' input boxes, ``(lo, hi)`` each (n, *s)."""
        lo, hi = self.origins - self.radius, self.origins + self.radius
        return (lo.clamp(0, 1), hi.clamp(0, 1)) if clip else (lo, hi)

    def subset(self, n: int) -> "RepairSet":
        """The first ``n`` properties (the paper's sets are nested: n = 50 ⊂ 100 ⊂ … ⊂ 1000)."""
        k = self.per_origin
        return RepairSet(self.origins[:n], self.labels[:n], self.repair_x[:n], self.wrong[:n], self.test_x[:n * k],
                         self.test_y[:n * k], self.radius, k, self.indices[:n], dict(self.stats))


def collect_adversarial_iterates(network: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                                 keep: int, steps: int = 200, alpha: float = 2 / 255, seed: int = 0
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run L∞ PGD (CE loss, random start) and keep up to ``keep`` distinct misclassified iterates per input.

    Args:
        x (B, *s), y (B,): clean inputs and labels. eps: radius. steps: PGD iterations (paper: > 200).
        alpha: step size (paper 2/255). seed: random start.
    Returns:
        ``(found (B, keep, *s), count (B,))`` — iterates in the order found; ``count`` may be < ``keep``.
    """
    gen = torch.Generator().manual_seed(seed)
    lf = attack_loss("ce")
    B = len(x)
    found = x.new_zeros((B, keep, *x.shape[1:]))
    count = torch.zeros(B, dtype=torch.long)
    last = x.clone()
    rows = torch.arange(B)
    with eval_mode(network):
        xa = project(x + (2 * torch.rand(x.shape, generator=gen) - 1) * eps, x, eps)
        for _ in range(steps):
            xa.requires_grad_(True)
            logits = network(xa)
            grad, = torch.autograd.grad(lf(logits, y).sum(), xa)
            with torch.no_grad():
                wrong = logits.argmax(1) != y
                # distinct: differs from the last kept iterate of that input (PGD revisits points when it oscillates)
                new = wrong & ((xa.detach() - last).flatten(1).abs().amax(1) > 0) & (count < keep)
                idx = rows[new]
                found[idx, count[idx]] = xa.detach()[idx]
                last[idx] = xa.detach()[idx]
                count[idx] += 1
                if bool((count >= keep).all()):
                    break
                xa = project(xa.detach() + alpha * grad.sign(), x, eps)
    return found, count


def build_repair_set(network: nn.Module, pool: Dataset | tuple[torch.Tensor, torch.Tensor], n: int, radius: float, *,
                     per_origin: int = 10, start: int = 40000, steps: int = 200, alpha: float = 2 / 255,
                     chunk: int = 500, seed: int = 0) -> RepairSet:
    """The first ``n`` usable origins of ``pool[start:]`` with their repair and held-out adversarial samples.

    Args:
        network: the original (unrepaired) classifier. pool: a :class:`Dataset` or ``(x, y)``.
        n: number of properties. radius: L∞ radius r (paper 0.05, 0.1, 0.3).
        per_origin: held-out samples per origin (paper 10). start: first pool index (paper 40000 when
            the pool is the MNIST training set; use 0 for small pools). steps, alpha: PGD (paper ≥200, 2/255).
        chunk: candidates attacked at once. seed: PGD random starts (chunk ``c`` uses ``seed + c``).
    Raises:
        RepairError: the pool runs out before ``n`` usable origins are found.
    """
    import time

    check_positive("radius", radius)
    x_all, y_all = (pool.x, pool.y) if isinstance(pool, Dataset) else pool
    if len(x_all) != len(y_all):
        raise DataError(f"build_repair_set: {len(x_all)} inputs but {len(y_all)} labels")
    if not (isinstance(n, int) and n > 0):
        raise DataError(f"build_repair_set: n={n!r} must be a positive integer")
    start = start if start < len(x_all) else 0
    t0 = time.perf_counter()
    keep = per_origin + 1
    parts: list[tuple[torch.Tensor, ...]] = []
    got, attacked = 0, 0
    for c, i in enumerate(range(start, len(x_all), chunk)):
        x, y = x_all[i:i + chunk].float(), y_all[i:i + chunk]
        idx = torch.arange(i, i + len(x))
        with torch.no_grad(), eval_mode(network):
            ok = network(x).argmax(1) == y
        x, y, idx = x[ok], y[ok], idx[ok]
        attacked += len(x)
        found, count = collect_adversarial_iterates(network, x, y, radius, keep=keep, steps=steps, alpha=alpha,
                                                    seed=seed + c)
        use = count >= keep
        parts.append((x[use], y[use], found[use], idx[use]))
        got += int(use.sum())
        if got >= n:
            break
    if got < n:
        raise RepairError(f"build_repair_set: only {got} of {attacked} candidate origins have {keep} distinct PGD "
                          f"adversarial inputs at radius {radius}; need n={n} (a larger pool or radius)")
    origins, labels, found, idx = (torch.cat([p[j] for p in parts])[:n] for j in range(4))
    repair_x = found[:, per_origin]
    with torch.no_grad(), eval_mode(network):
        wrong = network(repair_x).argmax(1)
    test_x = found[:, :per_origin].flatten(0, 1)
    test_y = labels.repeat_interleave(per_origin)
    stats = {"candidates_attacked": attacked, "usable": got, "seconds": round(time.perf_counter() - t0, 2),
             "steps": steps, "alpha": alpha, "seed": seed, "start": start}
    return RepairSet(origins, labels, repair_x, wrong, test_x, test_y, float(radius), per_origin, idx, stats)
