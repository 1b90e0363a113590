"""Repairing a tampered dense layer with a trained NCA rule.

Three modes, one code path:

* **blind** — no knowledge of which cells are bad: trust channel 0.5 everywhere, nothing clamped; the
  rule must detect and correct. The per-cell correction ``|ŵ − w_tampered|`` is returned as a detection
  score (AUROC in the benchmark). Non-finite weights are always known bad (trust 0, value 0).
* **informed** — a trusted mask (e.g. from per-tile checksums): trusted cells are clamped to their
  stored value after every step, the others are regenerated.
* **reconstruction** — a known fraction of weights (the paper's model-extraction question): informed
  mode with the unknown cells zeroed.

Example::

    problem = NCAProblem(layer="fc1", rule=rule)                      # blind
    result = repair(tampered_net, problem, NCARepairConfig())
    result.network, result.details["storage"]
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ...errors import RepairError
from ...nets import clone, get_layer, weight_matrix
from ..base import RepairResult
from .layout import Layout, positional_channels
from .rule import BAD, TRUSTED, UNKNOWN, NCARule, storage_bytes


@dataclass(frozen=True)
class NCARepairConfig:
    """Hyper-parameters of NCA repair.

    Attributes:
        steps: CA steps of every pass; None = ``horizon_multiple`` × the rule's training horizon
            (``steps_max``) for the final pass and 1× for blind detection passes.
        horizon_multiple: steps of the final pass in units of the training horizon when ``steps`` is
            None (3: ``benchmarks/nca_ablation.py`` — informed accuracy at 90 % scatter keeps rising
            to ~3× the horizon: 86.3 % at 1×, 88.7 % at 2×, 89.4 % at 3×).
        average_last: average the weight channel over the last this-many steps (smooths the
            stochastic firing; 1 = last state only).
        seed: seeds the stochastic firing.
        detect_threshold: blind mode flags cells whose normalised correction ``|ŵ − w|/σ`` exceeds
            this as corrupted (``details["detected"]``); None (default) = the rule's calibrated
            ``meta["blind_threshold"]`` (:func:`calibrate_blind`, run at the end of training: 0.1 % of the
            clean weight's cells flagged), or 1.0 for a rule trained before calibration existed. Measured on
            SHNN fc3: 1.0 flags 29 % of the *clean* cells and blind repair at 1 % scatter × zero fell from
            0.980 to 0.860; the calibrated 4.21 keeps 0.979 (0.797 vs 0.136 at 90 %). The scores themselves
            are always returned.
        shrink: scale each regenerated cell's deviation from the weight mean by the rule's calibrated
            factor α(f) for the share f of cells regenerated (``meta["shrink"]``, :func:`calibrate_shrink`,
            run at the end of training): the least-squares factor measured on the clean weight, clipped to
            [0, 1]. A rule that cannot predict a layer (hidden layers: correlation 0.06 with the truth on
            SHNN fc2) then falls back towards mean fill instead of writing confident noise (SHNN fc2, 90 %
            scatter × zero: 0.32 unshrunk, 0.78 with α = 0.13; mean fill 0.79); where it can (small MLP fc1,
            α ≈ 1) nothing changes. α depends on the run length (a tiny rule's α is 3.0 at 1× its horizon,
            0.6 at 3×), so it is applied only to a pass of the calibrated length (the default final pass);
            never to an uncalibrated rule.
        blind_strategy: how blind mode detects corrupted cells before an informed pass that trusts
            the unflagged ones (so intact weights cannot drift):
            ``"cross_check"`` — two informed passes, each hiding a random half of the cells and
            predicting it from the other half; a cell's score is how far its stored value is from
            what its neighbourhood predicts (self-consistency);
            ``"rule"`` — one blind pass (trust 0.5 everywhere), score = the rule's own correction;
            ``"none"`` — the blind pass's output as is (no detection, no refinement).
    """

    steps: int | None = None
    horizon_multiple: float = 3.0
    average_last: int = 8
    seed: int = 0
    detect_threshold: float | None = None
    shrink: bool = True
    blind_strategy: str = "cross_check"


@dataclass(frozen=True)
class NCAProblem:
    """What to repair: the layer, the rule trained for it, and optionally which cells are trusted.

    Attributes:
        layer: the dense layer's name (:func:`nnmend.nets.named_layers`).
        rule: an :class:`NCARule` trained on that layer's clean weights.
        trusted_mask: bool ``(out, in)``, True = trusted (informed mode); None = blind.
    """

    layer: str
    rule: NCARule
    trusted_mask: torch.Tensor | None = None


def rule_layout(rule: NCARule) -> Layout:
    m = rule.meta
    return Layout(m["layout"], tuple(m["weight_shape"]), tuple(m["grid_shape"]), rule.row_perm, rule.col_perm)


def check_rule_fits(rule: NCARule, weight: torch.Tensor, layer: str) -> None:
    want = tuple(rule.meta.get("weight_shape", ()))
    if tuple(weight.shape) != want:
        trained = rule.meta.get("layer") or "?"
        raise RepairError(f"the NCA rule was trained for a layer of shape {want} (layer {trained!r}) but layer "
                          f"{layer!r} has weight shape {tuple(weight.shape)}; train a rule for this layer")


@torch.no_grad()
def repair_weight(rule: NCARule, weight: torch.Tensor, trusted_mask: torch.Tensor | None = None, *,
                  config: NCARepairConfig = NCARepairConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the CA on a tampered ``(out, in)`` weight; returns ``(repaired weight, detection score)``.

    The score is the normalised per-cell correction ``|ŵ − w|/σ`` (non-finite cells score +inf).
    """
    (repaired,), score = repair_trajectory(rule, weight, trusted_mask, (final_steps(rule, config),), config=config)
    return repaired, score


def blind_threshold(rule: NCARule, config: NCARepairConfig) -> float:
    """The detection threshold blind mode uses: ``config.detect_threshold``, else the rule's calibrated one, else 1.0."""
    if config.detect_threshold is not None:
        return float(config.detect_threshold)
    return float(rule.meta.get("blind_threshold", 1.0))


@torch.no_grad()
def calibrate_blind(rule: NCARule, clean_weight: torch.Tensor, *, false_positive: float = 1e-3, seed: int = 0) -> float:
    """Set ``rule.meta["blind_threshold"]`` so that blind detection flags ``false_positive`` of the *clean* weight's
    cells (the quantile of their blind scores); returns it. Needs the clean weight, so training calls it."""
    if not 0.0 < false_positive < 1.0:
        raise RepairError(f"false_positive={false_positive} must be in (0, 1)")
    check_rule_fits(rule, clean_weight, str(rule.meta.get("layer", "?")))
    _, score = repair_trajectory(rule, clean_weight, None, (1,), config=NCARepairConfig(seed=seed, blind_strategy="cross_check"))
    thr = float(torch.quantile(score.flatten().double(), 1.0 - false_positive))
    rule.meta["blind_threshold"] = thr
    rule.meta["blind_false_positive"] = false_positive
    return thr


SHRINK_FRACTIONS = (0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95)


@torch.no_grad()
def calibrate_shrink(rule: NCARule, clean_weight: torch.Tensor, *, fractions: tuple[float, ...] = SHRINK_FRACTIONS,
                     patterns: tuple[str, ...] = ("scatter", "patch"), seed: int = 0) -> list[float]:
    """Set ``rule.meta["shrink"]``: for each corruption fraction f, the least-squares factor α(f) ∈ [0, 1] with
    which the rule's informed regeneration, as a deviation from the weight mean, best predicts the clean weight
    (corruptions of ``patterns`` pooled; a run as long as the default :class:`NCARepairConfig`'s final pass,
    recorded as ``steps``: repairs of another length are not shrunk). Returns the αs."""
    from ...corruption import corruption_mask  # repair-time code does not need the sampler

    check_rule_fits(rule, clean_weight, str(rule.meta.get("layer", "?")))
    if not fractions or not all(0.0 < f < 1.0 for f in fractions) or list(fractions) != sorted(fractions):
        raise RepairError(f"fractions={fractions} must be increasing, each in (0, 1)")
    w = clean_weight.detach().float().cpu()
    mu, gen = float(rule.meta["mu"]), torch.Generator().manual_seed(seed)
    cfg = NCARepairConfig(seed=seed, shrink=False)
    steps, alphas = final_steps(rule, cfg), []
    for f in fractions:
        num = den = 0.0
        for pattern in patterns:
            mask = corruption_mask(w, pattern, f, gen)
            (out,), _ = repair_trajectory(rule, w, ~mask, (steps,), config=cfg)
            p, t = (out - mu)[mask].double(), (w - mu)[mask].double()
            num, den = num + float((p * t).sum()), den + float((p * p).sum())
        alphas.append(min(1.0, max(0.0, num / den)) if den > 0 else 0.0)
    rule.meta["shrink"] = {"fractions": list(fractions), "alpha": alphas, "steps": steps}
    return alphas


def shrink_factor(rule: NCARule, fraction: float, steps: int | None = None) -> float:
    """α for ``fraction`` of the cells regenerated (linear in between the calibrated fractions); 1.0 for an
    uncalibrated rule or a run of ``steps`` other than the calibrated length."""
    cal = rule.meta.get("shrink")
    if not cal or (steps is not None and int(steps) != int(cal.get("steps", -1))):
        return 1.0
    fs, al = cal["fractions"], cal["alpha"]
    if fraction <= fs[0]:
        return float(al[0])
    for f0, f1, a0, a1 in zip(fs, fs[1:], al, al[1:]):
        if fraction <= f1:
            return float(a0 + (a1 - a0) * (fraction - f0) / (f1 - f0))
    return float(al[-1])


def applied_shrink(rule: NCARule, config: NCARepairConfig, regenerated: torch.Tensor, steps: int, blind_final: bool) -> float:
    """The α a pass of ``steps`` applies to the ``regenerated`` cells (bool mask); 1.0 when it applies none
    (shrinkage off, blind ``"none"`` — which regenerates intact cells too — or nothing regenerated)."""
    if not config.shrink or blind_final or not bool(regenerated.any()):
        return 1.0
    return shrink_factor(rule, float(regenerated.float().mean()), steps)


def calibrate(rule: NCARule, clean_weight: torch.Tensor, *, false_positive: float = 1e-3, seed: int = 0) -> dict:
    """Both calibrations training runs at its end (:func:`calibrate_shrink`, :func:`calibrate_blind`)."""
    calibrate_shrink(rule, clean_weight, seed=seed)
    calibrate_blind(rule, clean_weight, false_positive=false_positive, seed=seed)
    return {"shrink": rule.meta["shrink"], "blind_threshold": rule.meta["blind_threshold"]}


def final_steps(rule: NCARule, config: NCARepairConfig) -> int:
    """CA steps of the final repair pass under ``config`` (see :class:`NCARepairConfig`)."""
    if config.steps is not None:
        return int(config.steps)
    return max(1, round(config.horizon_multiple * int(rule.meta.get("horizon", 40))))


@torch.no_grad()
def repair_trajectory(rule: NCARule, weight: torch.Tensor, trusted_mask: torch.Tensor | None,
                      checkpoints: tuple[int, ...], *, config: NCARepairConfig = NCARepairConfig()
                      ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`repair_weight` read at several step counts of one run (stability: 1×, 5×, 20× the horizon).

    Blind detection (``config.blind_strategy``) runs ``config.steps`` (default: the horizon); the
    final, clamped pass is one trajectory of ``max(checkpoints)`` steps, read (averaged over its last
    ``config.average_last`` steps) at each checkpoint — the same as separate runs of that many steps
    up to the stochastic firing draws. Returns ``([weight at each checkpoint], detection score)``.
    """
    layout = rule_layout(rule)
    weight = weight.detach().float().cpu()
    finite = torch.isfinite(weight)
    w0 = torch.where(finite, weight, torch.zeros(()))
    if trusted_mask is None:
        trust_w = torch.where(finite, UNKNOWN, BAD)
    else:
        if tuple(trusted_mask.shape) != tuple(weight.shape):
            raise RepairError(f"trusted mask has shape {tuple(trusted_mask.shape)} but the layer's weight has "
                              f"shape {tuple(weight.shape)}")
        trust_w = torch.where(trusted_mask.bool() & finite, TRUSTED, BAD)
    steps = int(config.steps if config.steps is not None else rule.meta.get("horizon", 40))
    checkpoints = tuple(int(c) for c in checkpoints)
    if steps < 1 or config.average_last < 1 or not checkpoints or min(checkpoints) < 1:
        raise RepairError(f"steps={steps}, checkpoints={checkpoints} and average_last={config.average_last} "
                          "must be >= 1")
    if config.blind_strategy not in ("cross_check", "rule", "none"):
        raise RepairError(f"blind_strategy={config.blind_strategy!r} is not one of 'cross_check', 'rule', 'none'")
    gen = torch.Generator().manual_seed(config.seed)
    sigma = float(rule.meta["sigma"])
    blind_final = trusted_mask is None and config.blind_strategy == "none"
    if trusted_mask is None and config.blind_strategy == "cross_check":
        half = torch.rand(weight.shape, generator=gen) < 0.5
        pred = torch.zeros_like(w0)
        for hidden in (half, ~half):
            t = torch.where(hidden | ~finite, BAD, TRUSTED)
            pred = torch.where(hidden, _run(rule, layout, w0, t, (steps,), config.average_last, gen)[0], pred)
        score = (pred - w0).abs() / sigma
    elif not blind_final:
        first = _run(rule, layout, w0, trust_w, (steps,) if trusted_mask is None else checkpoints,
                     config.average_last, gen)
        score = (first[0] - w0).abs() / sigma
    if trusted_mask is None:
        if config.blind_strategy != "none":
            trust_w = torch.where(score > blind_threshold(rule, config), BAD, TRUSTED)
        outs = _run(rule, layout, w0, trust_w, checkpoints, config.average_last, gen)
        if blind_final:
            score = (outs[0] - w0).abs() / sigma
    else:
        outs = first
    score = score.masked_fill(~finite, float("inf"))
    regen, mu = trust_w != TRUSTED, float(rule.meta["mu"])
    outs = [mu + applied_shrink(rule, config, regen, c, blind_final) * (r - mu) for r, c in zip(outs, checkpoints)]
    # trusted cells are exactly what was stored
    return [torch.where(regen, r, w0) for r in outs], score


def _run(rule: NCARule, layout: Layout, w0: torch.Tensor, trust_w: torch.Tensor, checkpoints: tuple[int, ...],
         average_last: int, gen: torch.Generator) -> list[torch.Tensor]:
    # values known to be bad carry no information: start them at the mean (0 in normalised units)
    z = layout.to_grid(torch.where(trust_w == BAD, 0.0, rule.normalise(w0)))
    trust = layout.to_grid(trust_w)
    pos = positional_channels(layout.grid_shape, rule.frequencies)
    state = rule.initial_state(z)
    pos_term = rule.position_term(pos)
    outs: dict[int, torch.Tensor] = {}
    acc = {c: torch.zeros_like(z) for c in checkpoints}
    for t in range(1, max(checkpoints) + 1):
        state = rule.step(state, pos, trust, gen, clamp=z, pos_term=pos_term)
        for c in checkpoints:  # average the last few states before each checkpoint (stochastic firing)
            if c - min(average_last, c) < t <= c:
                acc[c] += state[:, :1]
    for c in checkpoints:
        outs[c] = rule.denormalise(layout.from_grid(acc[c] / min(average_last, c)))
    return [outs[c] for c in checkpoints]


def repair(network: nn.Module, problem: NCAProblem, config: NCARepairConfig = NCARepairConfig()) -> RepairResult:
    """Repair ``problem.layer`` of the tampered ``network`` with ``problem.rule``; the input is not changed.

    Args:
        network: the tampered network.
        problem: layer, rule and optional trusted mask (:class:`NCAProblem`).
        config: :class:`NCARepairConfig`.

    Returns:
        :class:`RepairResult` with the repaired copy; ``details`` holds the mode, steps, storage overhead,
        the detection scores (``score``, same shape as the weight), the share of cells regenerated and the
        shrinkage α applied to them (1.0: none) and, in blind mode, ``detected`` and ``detect_threshold``.
    """
    if not isinstance(problem.rule, NCARule):
        raise RepairError(f"problem.rule must be an NCARule, got {type(problem.rule).__name__}")
    mod = get_layer(network, problem.layer)          # Linear, or a conv whose kernels form the matrix's rows
    weight = weight_matrix(mod)
    check_rule_fits(problem.rule, weight, problem.layer)
    trusted = problem.trusted_mask
    if trusted is not None and trusted.numel() == weight.numel():
        trusted = trusted.reshape(weight.shape)
    t0 = time.perf_counter()
    repaired, score = repair_weight(problem.rule, weight, trusted, config=config)
    out = clone(network)
    with torch.no_grad():
        get_layer(out, problem.layer).weight.copy_(repaired.to(mod.weight.dtype).reshape(mod.weight.shape))
    n_bad = int((~torch.isfinite(weight)).sum())
    mode = "blind" if problem.trusted_mask is None else "informed"
    details = {"mode": mode, "layer": problem.layer, "steps": final_steps(problem.rule, config),
               "config": asdict(config), "storage": storage_bytes(problem.rule), "nonfinite_cells": n_bad,
               "score": score}
    regenerated = ~torch.isfinite(weight.detach()).cpu()
    if mode == "blind":
        details["detected"] = score > blind_threshold(problem.rule, config)
        details["detect_threshold"] = blind_threshold(problem.rule, config)
        if config.blind_strategy != "none":
            regenerated |= details["detected"]
    else:
        regenerated |= ~trusted.bool().cpu()
    details["regenerated_fraction"] = float(regenerated.float().mean())
    details["shrink_alpha"] = applied_shrink(problem.rule, config, regenerated, details["steps"],
                                             blind_final=mode == "blind" and config.blind_strategy == "none")
    return RepairResult(out, "nca", time.perf_counter() - t0, {}, details, None)
