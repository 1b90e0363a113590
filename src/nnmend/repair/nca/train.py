"""Training an NCA rule to maintain and regenerate one layer's weight matrix.

Pool training with damage, as in Growing NCA's "Regenerating" experiment (Distill 2020), adapted to
weight grids (research notes §2.4.3): a pool of running repair states; in each iteration half of the
batch is replaced by freshly corrupted crops (hidden channels from the learned seed map, as at repair
time; the seed map is trained through these samples) and half
continues from the pool (teaching the CA to hold the matrix as an attractor over long horizons). The
corruptions come from the one shared sampler, :mod:`nnmend.corruption`: a random pattern (scatter,
patch, rows, cols), a random value rule (zero, Gaussian, shuffle, sign, bit flip) and a random fraction.
Each fresh sample is either *informed* (trust channel marks corrupted cells, trusted cells clamped) or
*blind* (trust 0.5 everywhere, nothing clamped), so one rule serves both repair modes.

Large grids train on tiles: crops of ``tile + 2·margin`` cells, loss only on the interior ``tile``
(cells a margin away from a crop edge that is not a true border see no false zero padding), with
positional channels in global coordinates; the rule is convolutional, so it then runs on the full grid.

The information limit (write it down before reading any number): the hidden channels are not stored,
so after corruption the only information about W is the surviving weights plus the rule's parameters
(MLP and per-unit seed map). Blind repair of scattered corruption can only recover what those encode —
structure that neighbours predict, or what the rule has memorised — and its parameters count as
storage overhead, so the fair comparison is a trusted copy of W in the same number of bytes
(``baselines.replica``). When most cells are corrupted, the corruption is the majority: blind
detection then flags the surviving weights instead (measured: AUROC < 0.5 at 90 % zeroing).

Example::

    rule, hist = train_rule(net, "fc1", NCATrainConfig(iterations=300))
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..._progress import progress
from ...corruption import corrupt_values, corruption_mask
from ...errors import RepairError
from ...nets import get_layer, named_layers, weight_matrix
from .function_loss import FunctionTarget, function_space_loss, function_target
from .layout import LAYOUTS, default_layout, make_layout, positional_channels
from .repair import calibrate
from .rule import BAD, TRUSTED, UNKNOWN, NCARule


@dataclass(frozen=True)
class NCATrainConfig:
    """Every hyper-parameter of NCA rule training.

    The defaults are the best rule of ``benchmarks/nca_ablation.py`` (variant ``fn_dil_long_hi``:
    function-space loss, dilated perception, 32–64-step horizon, corruption fractions 0.3–0.95,
    1200 iterations; ~30 min on one busy CPU core for a 784×100 layer). The function-space loss
    needs data: ``train_rule(..., data=images)``, or set ``function_weight=0``.

    Attributes:
        layout: ``"matrix"``, ``"receptive_field"``, ``"correlation"`` or None (receptive field for a
            first layer on square images, correlation ordering otherwise).
        image_shape: image ``(height, width)`` for the receptive-field layout (default: square).
        hidden_channels: hidden state channels (not stored; scratch memory of the repair).
        width: hidden width of the per-cell MLP.
        frequencies: positional sin/cos frequencies.
        fire_rate: stochastic update probability per cell and step (Distill: 0.5).
        iterations: optimisation steps.
        batch_size: crops per iteration.
        pool_size: running states kept in the pool.
        steps_min, steps_max: CA steps per iteration, drawn uniformly; ``steps_max`` is the horizon.
        tile: interior size of a training crop (per side) on grids larger than ``tile + 2·margin``.
        margin: real neighbouring cells around each crop's interior (no loss there).
        lr: Adam learning rate, cosine-decayed to ``lr · lr_final_ratio``.
        corrupted_weight: loss weight of corrupted cells relative to intact ones.
        hidden_penalty: L2 penalty on hidden channels (keeps them bounded).
        fraction_range: corruption fractions drawn uniformly from this range.
        patterns, kinds: corruption patterns and value rules drawn uniformly (:mod:`nnmend.corruption`).
        sigma: std of the Gaussian re-initialisation corruption (weight units).
        informed_share: share of fresh samples trained in informed mode (the rest blind).
        seed_resolution: side of the learned coarse hidden-seed map on single-grid layouts (matrix,
            correlation); the receptive-field layout learns one seed vector per unit instead.
        dilations: perception filter dilations (multi-scale perception; ``(1,)`` = 3×3 only).
        function_weight: share of the loss measured in function space (:mod:`.function_loss`: the change
            of the layer's pre-activations on real inputs, weighted by the logits' sensitivity); the
            rest is the weight-space MSE. > 0 needs data (``train_rule(..., data=)``).
        function_samples: inputs used by the function-space loss.
        seed: seeds the pool, the corruptions and the stochastic firing.
    """

    layout: str | None = None
    image_shape: tuple[int, int] | None = None
    hidden_channels: int = 11
    width: int = 64
    frequencies: int = 2
    fire_rate: float = 0.5
    iterations: int = 1200
    batch_size: int = 8
    pool_size: int = 64
    steps_min: int = 32
    steps_max: int = 64
    tile: int = 32
    margin: int = 12
    lr: float = 2e-3
    lr_final_ratio: float = 0.05
    corrupted_weight: float = 3.0
    hidden_penalty: float = 1e-4
    fraction_range: tuple[float, float] = (0.3, 0.95)
    patterns: tuple[str, ...] = ("scatter", "patch", "rows", "cols")
    kinds: tuple[str, ...] = ("zero", "gaussian", "shuffle", "sign", "bitflip")
    sigma: float = 0.1
    informed_share: float = 0.5
    seed_resolution: int = 8
    dilations: tuple[int, ...] = (1, 2, 4)
    function_weight: float = 0.7
    function_samples: int = 512
    seed: int = 0


@dataclass
class TrainHistory:
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _check_config(cfg: NCATrainConfig) -> None:
    if cfg.layout is not None and cfg.layout not in LAYOUTS:
        raise RepairError(f"layout={cfg.layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
    if not 1 <= cfg.steps_min <= cfg.steps_max:
        raise RepairError(f"need 1 <= steps_min <= steps_max, got {cfg.steps_min}, {cfg.steps_max}")
    for name in ("iterations", "batch_size", "pool_size", "tile", "width"):
        if getattr(cfg, name) < 1:
            raise RepairError(f"{name}={getattr(cfg, name)} must be >= 1")
    if not 0.0 <= cfg.function_weight <= 1.0:
        raise RepairError(f"function_weight={cfg.function_weight} must be in [0, 1]")
    lo, hi = cfg.fraction_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise RepairError(f"fraction_range={cfg.fraction_range} must satisfy 0 <= lo <= hi <= 1")


def corrupt_grid(clean: torch.Tensor, gen: torch.Generator, cfg: NCATrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt one ``(h, w)`` weight crop (weight units) → ``(corrupted, mask)``, via the shared sampler."""
    pat = cfg.patterns[int(torch.randint(len(cfg.patterns), (1,), generator=gen))]
    kind = cfg.kinds[int(torch.randint(len(cfg.kinds), (1,), generator=gen))]
    lo, hi = cfg.fraction_range
    frac = lo + (hi - lo) * float(torch.rand((), generator=gen))
    mask = corruption_mask(clean, pat, frac, gen)
    return corrupt_values(clean, mask, kind, gen, sigma=cfg.sigma), mask


class _Sampler:
    """Draws corrupted training crops of the (normalised) grid with matching positional channels."""

    def __init__(self, weight: torch.Tensor, rule: NCARule, layout, cfg: NCATrainConfig):
        self.cfg, self.rule = cfg, rule
        self.grid_w = layout.to_grid(weight.detach().float())  # (N, 1, H, W) weight units
        n, h, w = layout.grid_shape
        self.pos = positional_channels(layout.grid_shape, cfg.frequencies)
        self.ch, self.cw = min(h, cfg.tile + 2 * cfg.margin), min(w, cfg.tile + 2 * cfg.margin)
        r, c = layout.weight_shape  # which weight row (unit) / column (input) each grid cell holds
        self.row_of = layout.to_grid(torch.arange(r)[:, None].expand(r, c))[:, 0]
        self.col_of = layout.to_grid(torch.arange(c)[None, :].expand(r, c))[:, 0]

    def cells(self, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3)`` crop origins → ``(B, P)`` weight rows and columns of the crops' cells."""
        rows = torch.stack([self.row_of[g, r:r + self.ch, c:c + self.cw].flatten() for g, r, c in where.tolist()])
        cols = torch.stack([self.col_of[g, r:r + self.ch, c:c + self.cw].flatten() for g, r, c in where.tolist()])
        return rows, cols

    def draw(self, gen: torch.Generator) -> dict[str, torch.Tensor]:
        cfg, rule = self.cfg, self.rule
        n, _, h, w = self.grid_w.shape
        g = int(torch.randint(n, (1,), generator=gen))
        r0 = int(torch.randint(h - self.ch + 1, (1,), generator=gen))
        c0 = int(torch.randint(w - self.cw + 1, (1,), generator=gen))
        clean = self.grid_w[g, 0, r0:r0 + self.ch, c0:c0 + self.cw]
        bad, mask = corrupt_grid(clean, gen, cfg)
        bad = torch.nan_to_num(bad, nan=0.0, posinf=0.0, neginf=0.0)
        informed = float(torch.rand((), generator=gen)) < cfg.informed_share
        trust = torch.where(mask, BAD, TRUSTED) if informed else torch.full_like(clean, UNKNOWN)
        # interior: a margin away from crop edges that are not true grid borders
        interior = torch.ones_like(clean, dtype=torch.bool)
        m = cfg.margin
        if r0 > 0:
            interior[:m] = False
        if r0 + self.ch < h:
            interior[self.ch - m:] = False
        if c0 > 0:
            interior[:, :m] = False
        if c0 + self.cw < w:
            interior[:, self.cw - m:] = False
        z = torch.where(trust == BAD, 0.0, rule.normalise(bad))[None]  # known-bad values are discarded
        return {"state": torch.cat([z, torch.zeros(rule.hidden_channels, *z.shape[1:])]), "clamp": z, "trust": trust[None],
                "where": torch.tensor([g, r0, c0]), "fresh": torch.tensor(True),
                "target": rule.normalise(clean)[None], "pos": self.pos[g, :, r0:r0 + self.ch, c0:c0 + self.cw],
                "weight": (1.0 + (cfg.corrupted_weight - 1.0) * mask.float())[None] * interior[None]}


def _rule_for(weight: torch.Tensor, layer: str, layout, cfg: NCATrainConfig) -> NCARule:
    w = weight.detach().float()
    mu, sigma = float(w.mean()), float(w.std().clamp_min(1e-12))
    clip = float(((w - mu).abs().max() / sigma) * 1.5)
    meta = {"layer": layer, "weight_shape": list(w.shape), "layout": layout.kind,
            "grid_shape": list(layout.grid_shape), "mu": mu, "sigma": sigma, "clip": clip,
            "horizon": cfg.steps_max, "train_config": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in asdict(cfg).items()}}
    n, h, wd = layout.grid_shape
    seed_shape = (n, 1, 1) if n > 1 else (1, min(h, cfg.seed_resolution), min(wd, cfg.seed_resolution))
    rule = NCARule(cfg.hidden_channels, cfg.width, cfg.frequencies, cfg.fire_rate, meta,
                   n_rows=w.shape[0], n_cols=w.shape[1], seed_shape=seed_shape, dilations=cfg.dilations)
    rule.row_perm.copy_(layout.row_perm)
    rule.col_perm.copy_(layout.col_perm)
    return rule


def _warm_start(rule: NCARule, init: NCARule) -> None:
    if not isinstance(init, NCARule):
        raise RepairError(f"init must be an NCARule, got {type(init).__name__}")
    for key in ("weight_shape", "layout", "grid_shape"):
        if init.meta.get(key) != rule.meta.get(key):
            raise RepairError(f"init rule has {key}={init.meta.get(key)!r} but this training has "
                              f"{key}={rule.meta.get(key)!r}; a rule can only continue on the same layer geometry")
    mine, theirs = rule.state_dict(), init.state_dict()
    bad = [k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape]
    if bad or set(theirs) - set(mine):
        raise RepairError(f"init rule's architecture differs (parameters {sorted(bad or set(theirs) - set(mine))[:3]}); "
                          "use the same hidden_channels, width, frequencies, dilations and seed_resolution")
    rule.load_state_dict({k: v.float() for k, v in theirs.items()})
    rule.meta["init_from"] = {k: init.meta.get(k) for k in ("horizon", "train_seconds", "final_loss")}


def train_rule_for_weight(weight: torch.Tensor, cfg: NCATrainConfig = NCATrainConfig(), *, layer: str = "",
                          layer_index: int = 0, progress_bar: bool | None = None,
                          target: FunctionTarget | None = None, init: NCARule | None = None
                          ) -> tuple[NCARule, TrainHistory]:
    """Train a rule on a clean ``(rows, cols)`` weight matrix; returns ``(rule, history)``.

    ``target`` (:func:`.function_loss.function_target`) is needed when ``cfg.function_weight > 0``.
    ``init``: continue training this rule (same layer geometry and architecture) instead of starting
    from scratch — e.g. a longer horizon on a rule already trained; ``init`` itself is not changed.
    """
    _check_config(cfg)
    if cfg.function_weight > 0 and target is None:
        raise RepairError("function_weight > 0 needs a function target (train_rule(..., data=) records one)")
    if target is not None and (target.x.shape[1] != weight.shape[1] or target.g.shape[0] != weight.shape[0]):
        raise RepairError(f"function target of shape x {tuple(target.x.shape)}, g {tuple(target.g.shape)} does "
                          f"not fit a weight of shape {tuple(weight.shape)}")
    if weight.dim() != 2 or not torch.isfinite(weight).all():
        raise RepairError(f"training needs a finite 2-D clean weight, got shape {tuple(weight.shape)}")
    kind = cfg.layout or default_layout(layer_index, weight.shape[1])
    layout = make_layout(weight, kind, image_shape=cfg.image_shape)
    torch.manual_seed(cfg.seed)  # the rule's first-layer init
    rule = _rule_for(weight, layer, layout, cfg)
    if init is not None:
        _warm_start(rule, init)
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler = _Sampler(weight, rule, layout, cfg)
    pool = [sampler.draw(gen) for _ in range(cfg.pool_size)]
    opt = torch.optim.Adam(rule.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * i / cfg.iterations)))
    hist, t0 = TrainHistory(), time.perf_counter()
    rule.train()
    bar = progress(range(cfg.iterations), desc=f"nca train {layer}", enabled=progress_bar)
    for _ in bar:
        idx = torch.randperm(cfg.pool_size, generator=gen)[: cfg.batch_size].tolist()
        n_fresh = max(1, cfg.batch_size // 2)
        for i in idx[:n_fresh]:  # half of the batch restarts from a fresh corruption, hidden channels zero
            pool[i] = sampler.draw(gen)
        batch = {k: torch.stack([pool[i][k] for i in idx]) for k in pool[0]}
        # fresh samples start their hidden channels from the (learned) seed map, with gradient into it
        seed = rule.hidden_seed(*sampler.grid_w.shape[2:])
        g_, r_, c_ = batch["where"].T.tolist()
        seeds = torch.stack([seed[g, :, r:r + sampler.ch, c:c + sampler.cw] for g, r, c in zip(g_, r_, c_)])
        fresh = batch["fresh"].view(-1, 1, 1, 1)
        batch["state"] = torch.cat([batch["state"][:, :1], torch.where(fresh, seeds, batch["state"][:, 1:])], 1)
        steps = int(torch.randint(cfg.steps_min, cfg.steps_max + 1, (1,), generator=gen))
        state = rule.run(batch["state"], batch["pos"], batch["trust"], steps, gen, clamp=batch["clamp"])
        wsum = batch["weight"].sum().clamp_min(1.0)
        loss = ((state[:, :1] - batch["target"]) ** 2 * batch["weight"]).sum() / wsum
        if cfg.function_weight > 0:
            rows, cols = sampler.cells(batch["where"])
            err = (state[:, 0] - batch["target"][:, 0]).flatten(1)
            floss = function_space_loss(target, err, rows, cols, (batch["weight"][:, 0] > 0).flatten(1).float())
            loss = (1 - cfg.function_weight) * loss + cfg.function_weight * floss
        loss = loss + cfg.hidden_penalty * (state[:, 1:] ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in rule.parameters():  # per-tensor gradient normalisation (Distill)
                if p.grad is not None:
                    p.grad /= p.grad.norm() + 1e-8
        opt.step()
        sched.step()
        hist.loss.append(float(loss.detach()))
        detached = state.detach()
        for j, i in enumerate(idx):
            pool[i] = {**pool[i], "state": detached[j], "fresh": torch.tensor(False)}
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist.loss[-1]:.4f}")
    rule.eval()
    calibrate(rule, weight.detach().float(), seed=cfg.seed)  # shrinkage α(f); blind detection: 0.1 % of clean cells flagged
    hist.seconds = time.perf_counter() - t0
    rule.meta["train_seconds"] = round(hist.seconds, 2)
    rule.meta["final_loss"] = float(sum(hist.loss[-20:]) / max(1, len(hist.loss[-20:])))
    return rule, hist


def train_rule(network: nn.Module, layer: str, cfg: NCATrainConfig = NCATrainConfig(), *,
               data: torch.Tensor | None = None, progress_bar: bool | None = None,
               init: NCARule | None = None) -> tuple[NCARule, TrainHistory]:
    """Train a rule for ``network``'s dense layer ``layer`` (which must be clean).

    ``data``: network inputs (e.g. ``load_dataset(...).x``) for the function-space loss; the first
    ``cfg.function_samples`` are used. Needed when ``cfg.function_weight > 0``, ignored otherwise.
    ``init``: a rule for this layer to continue training (see :func:`train_rule_for_weight`).
    """
    mod = get_layer(network, layer)             # Linear, or a conv whose kernels form the matrix's rows
    if not isinstance(mod, nn.Linear) and cfg.function_weight > 0:
        raise RepairError(f"the function-space loss needs a dense (Linear) layer; {layer!r} is a "
                          f"{type(mod).__name__}: train its kernels as a matrix with function_weight=0")
    _check_config(cfg)
    index = list(named_layers(network)).index(layer)
    target = None
    if cfg.function_weight > 0:
        if data is None:
            raise RepairError(f"function_weight={cfg.function_weight} (default 0.7) needs data: pass "
                              "train_rule(..., data=images), or set function_weight=0")
        target = function_target(network, layer, data[: cfg.function_samples])
    return train_rule_for_weight(weight_matrix(mod).detach(), cfg, layer=layer, layer_index=index, progress_bar=progress_bar,
                                 target=target, init=init)
