"""NNrepair end to end: ``repair(network, problem, config) -> RepairResult`` (paper 004, Sec. 4).

For each label C an expert is built: choose failing and passing inputs of C, localise the faulty
neurons and edges, solve the linear constraints for the weight deltas with HiGHS, and check the
expert by a real forward pass. The experts are returned inside one :class:`ExpertEnsemble`.

Example::

    from nnmend.repair.nnrepair import NNRepairConfig, RepairProblem, repair
    res = repair(net, RepairProblem(train.x, train.y), NNRepairConfig(layer="fc2"))
    res.network(x).argmax(1); res.details["experts"][0]["solver"]["at_bound"]
"""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from ..._progress import progress
from ..._validation import check_finite_params
from ...errors import RepairError
from ...nets import clone, num_classes
from ..base import RepairResult
from .config import NNRepairConfig, RepairProblem
from .constraints import (KEEP, TARGET, decision_rows, keep_rows_intermediate, keep_rows_last, pattern_decision_rows,
                          pattern_rows, stack)
from .experts import ExpertEnsemble, f1_filter
from .localize import edge_scores, faulty_neurons, top_edges
from .patterns import Patterns, learn_patterns, tree_labels
from .record import Record, Split, record, split_network
from .solve import Infeasible, solve_system


class _Pool:
    """The repair pool and (optionally) the clean set, recorded, with failing/passing masks."""

    def __init__(self, split: Split, problem: RepairProblem):
        self.rec, self.y = record(split, problem.inputs), problem.labels.long()
        self.ok = self.rec.pred == self.y
        if problem.clean_inputs is not None:
            self.crec, self.cy = record(split, problem.clean_inputs), problem.clean_labels.long()
            self.cok = self.crec.pred == self.cy
        else:
            self.crec = self.cy = self.cok = None


def _sample(idx: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    return idx[torch.randperm(len(idx), generator=gen)[:n]] if len(idx) > n else idx


def _cat(*recs: Record) -> Record:
    recs = [r for r in recs if r is not None and len(r.a)]
    return Record(*(torch.cat(t) for t in zip(*[(r.a, r.z, r.logits) for r in recs])))


def _learn(pool: _Pool, cfg: NNRepairConfig, C: int) -> Patterns:
    sig, y, pred = pool.rec.signature, pool.y, pool.rec.pred
    if pool.crec is not None:
        sig, y, pred = torch.cat([sig, pool.crec.signature]), torch.cat([y, pool.cy]), torch.cat([pred, pool.crec.pred])
    if cfg.pattern_samples is not None and len(y) > cfg.pattern_samples:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.pattern_samples]
        wrong = torch.nonzero(pred != y).squeeze(1)           # every failing input stays in
        keep = torch.unique(torch.cat([keep, wrong]))
        sig, y, pred = sig[keep], y[keep], pred[keep]
    return learn_patterns(sig, tree_labels(y, pred, C, cfg.pattern_by), num_classes=C, min_support=cfg.min_support,
                          min_purity=cfg.min_purity, max_depth=cfg.tree_max_depth, seed=cfg.tree_seed)


def _others(pool: _Pool, c: int, n: int, gen: torch.Generator) -> Record | None:
    """Passing inputs of other classes for the non-interference rows: from the clean set when there is
    one (the decisions a deployment cares about), else from the pool."""
    if n == 0:
        return None
    if pool.crec is not None:
        return pool.crec.take(_sample(torch.nonzero(pool.cok & (pool.cy != c)).squeeze(1), n, gen))
    return pool.rec.take(_sample(torch.nonzero(pool.ok & (pool.y != c)).squeeze(1), n, gen))


def _intermediate_expert(split: Split, pool: _Pool, pats: Patterns, c: int, cfg: NNRepairConfig,
                         gen: torch.Generator, margin: float) -> tuple[dict, object, object]:
    """Select inputs, localise, build the system for label c. Returns (info, system, None) or a skip."""
    if c not in pats.correct:
        return {"skipped": f"no correct-classification pattern for label {c} with support >= {cfg.min_support}"}, None, None
    sigma = pats.correct[c][0]
    fail = torch.nonzero((pool.y == c) & ~pool.ok).squeeze(1)
    cands = pats.incorrect.get(c, []) if cfg.pattern_by == "ideal" else [p for ps in pats.incorrect.values() for p in ps]
    if not cands:
        return {"skipped": f"no incorrect-classification pattern for label {c}"}, None, None
    hits = [p.satisfied(pool.rec.signature[fail]) for p in cands]
    best = int(np.argmax([h.sum().item() for h in hits]))
    sel_fail = fail[hits[best]]
    if len(sel_fail) < cfg.min_failing:
        return {"skipped": f"{len(sel_fail)} failing inputs of label {c} match its incorrect pattern, "
                           f"fewer than min_failing={cfg.min_failing}"}, None, None
    pass_idx = torch.nonzero((pool.y == c) & pool.ok & sigma.satisfied(pool.rec.signature)).squeeze(1)
    n_pass = len(sel_fail) + cfg.passing_extra
    sel_pass = _sample(pass_idx, n_pass, gen)
    parts = [pool.rec.take(sel_fail), pool.rec.take(sel_pass)]
    want = max(n_pass - len(sel_pass), 0) + cfg.extra_clean       # top up from the clean set
    if want and pool.crec is not None:
        cidx = torch.nonzero((pool.cy == c) & pool.cok & sigma.satisfied(pool.crec.signature)).squeeze(1)
        parts.append(pool.crec.take(_sample(cidx, want, gen)))
    rows_rec = _cat(*parts)
    neurons_all = torch.as_tensor(sigma.neurons)
    faulty = faulty_neurons(sigma.disagreeing(pool.rec.signature[sel_fail]), neurons_all, cfg.neurons)
    if len(faulty) == 0:
        return {"skipped": f"the failing inputs of label {c} already satisfy its pattern"}, None, None
    W = split.linear.weight.detach()
    k = max(1, int(cfg.edge_fraction * W.shape[1]))
    edges = top_edges(edge_scores(pool.rec.a[sel_fail], rows_rec.a[len(sel_fail):], W[faulty]), k)
    position = {int(n): i for i, n in enumerate(sigma.neurons)}
    on = torch.as_tensor(sigma.on)[[position[f] for f in faulty.tolist()]]
    systems = [pattern_rows(rows_rec.a, rows_rec.z, faulty, edges, on[None].expand(len(rows_rec.a), -1), margin)]
    readout = split.readout()
    if cfg.decision_rows:
        if readout is None:
            raise RepairError(f"decision_rows needs the repaired layer {split.layer!r} to be followed by ReLU and "
                              "the final Linear only")
        systems.append(pattern_decision_rows(pool.rec.take(sel_fail), c, faulty, edges, on,
                                             readout.weight.detach(), margin))
    others = _others(pool, c, cfg.non_interference, gen)
    if others is not None:
        systems += keep_rows_intermediate(others.a, others.z, others.logits, faulty, edges,
                                          None if readout is None else readout.weight.detach(), margin,
                                          cfg.bound_intermediate)
    info = {"pattern": sigma.to_dict(), "failing": len(sel_fail), "passing": len(rows_rec.a) - len(sel_fail),
            "faulty_neurons": faulty.tolist(), "edges_per_neuron": k,
            "check_inputs": (rows_rec, len(sel_fail))}
    return info, stack(systems), None


def _last_expert(split: Split, pool: _Pool, c: int, cfg: NNRepairConfig, gen: torch.Generator, margin: float):
    fail = torch.nonzero((pool.y == c) & ~pool.ok).squeeze(1)
    if len(fail) < cfg.min_failing:
        return {"skipped": f"{len(fail)} failing inputs of label {c}, fewer than min_failing={cfg.min_failing}"}, None, None
    sel_fail = _sample(fail, cfg.last_failing, gen)
    parts = [pool.rec.take(sel_fail), pool.rec.take(_sample(torch.nonzero((pool.y == c) & pool.ok).squeeze(1),
                                                            cfg.last_passing, gen))]
    if pool.crec is not None:
        short = cfg.last_passing - len(parts[1].a)
        want = max(short, 0) + cfg.extra_clean
        if want:
            parts.append(pool.crec.take(_sample(torch.nonzero((pool.cy == c) & pool.cok).squeeze(1), want, gen)))
    rows_rec = _cat(*parts)
    W = split.linear.weight.detach()
    edges = top_edges(edge_scores(rows_rec.a[:len(sel_fail)], rows_rec.a[len(sel_fail):], W[c:c + 1]),
                      cfg.last_edges)[0]
    systems = [decision_rows(rows_rec.a, rows_rec.logits, c, edges, margin)]
    others = _others(pool, c, cfg.non_interference, gen)
    if others is not None:
        systems.append(keep_rows_last(others.a, others.logits, c, edges, margin, cfg.bound_last))
    info = {"failing": len(sel_fail), "passing": len(rows_rec.a) - len(sel_fail), "edges": edges.tolist(),
            "check_inputs": (rows_rec, len(sel_fail))}
    return info, stack(systems), None


@torch.no_grad()
def _check(split: Split, flat_idx: torch.Tensor, delta: torch.Tensor, rows_rec: Record, n_fail: int, c: int) -> dict:
    """Re-run the real forward from the recorded layer inputs with the expert's weights."""
    lin = split.linear
    w = lin.weight.detach().clone().view(-1)
    w[flat_idx] += delta
    z = nn.functional.linear(rows_rec.a, w.view_as(lin.weight), lin.bias)
    pred = (split.head[1:](z) if len(split.head) > 1 else z).argmax(1)
    return {"failing_fixed": int((pred[:n_fail] == c).sum()), "passing_kept": int((pred[n_fail:] == c).sum())}


def repair(network: nn.Module, problem: RepairProblem, config: NNRepairConfig = NNRepairConfig()) -> RepairResult:
    """Build one expert per label and return them combined (see the module docstring).

    Args:
        network: a trained ``nn.Sequential`` classifier; left unchanged.
        problem: the repair data (:class:`RepairProblem`).
        config: :class:`NNRepairConfig` (paper defaults).
    Returns:
        :class:`RepairResult` whose ``network`` is an :class:`ExpertEnsemble`; ``details`` holds, per
        expert, the inputs used, the localised neurons/edges, the solver record (rows satisfied,
        deltas at their bound, seconds) and the real-forward check.
    Raises:
        RepairError: unsplittable network, layer without ReLU, a hard system that is infeasible (unless
            ``on_infeasible="soft"``), or no label with enough failing inputs.
    """
    t_start = time.perf_counter()
    config.validate()
    if not isinstance(network, nn.Module):
        raise RepairError(f"network must be an nn.Module, got {type(network).__name__}")
    check_finite_params(network, what="network")
    net = clone(network)
    C = num_classes(net)
    problem.validate(C)
    split = split_network(net, config.layer, problem.inputs[:1])
    pool = _Pool(split, problem)
    last = split.last
    mode, bound = config.mode_for(last), config.bound_for(last)
    scale = (pool.rec.logits if last else pool.rec.z).abs().mean().item()
    margin = config.margin * scale
    t_pat = time.perf_counter()
    pats = None if last else _learn(pool, config, C)
    pattern_seconds = time.perf_counter() - t_pat
    classes = list(range(C)) if config.classes is None else list(config.classes)
    bad = [c for c in classes if not 0 <= c < C]
    if bad:
        raise RepairError(f"classes {bad} are outside 0..{C - 1}")
    n_in = split.linear.weight.shape[1]
    experts, idx_list, val_list, labels = [], [], [], []
    for c in progress(classes, desc="nnrepair: experts", total=len(classes)):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(config.seed * 1000 + c)
        info, system, _ = (_last_expert(split, pool, c, config, gen, margin) if last
                           else _intermediate_expert(split, pool, pats, c, config, gen, margin))
        info = {"label": c, **info}
        if system is None:
            experts.append(info)
            continue
        used = mode
        try:
            sol = solve_system(system, mode=mode, objective=config.objective, bound=bound,
                               soft_weight=config.soft_weight, time_limit=config.time_limit)
        except Infeasible as exc:
            if config.on_infeasible != "soft":
                raise RepairError(f"expert for label {c} on layer {split.layer!r}: the hard constraint system is "
                                  f"infeasible ({exc}); rerun with mode='soft' or 'maxsat', or on_infeasible='soft' "
                                  "to fall back to the soft mode") from None
            used = "soft (fallback: hard was infeasible)"
            try:
                sol = solve_system(system, mode="soft", objective=config.objective, bound=bound,
                                   soft_weight=config.soft_weight, time_limit=config.time_limit)
            except Infeasible as exc2:
                raise RepairError(f"expert for label {c} on layer {split.layer!r}: the soft fallback failed too "
                                  f"({exc2})") from None
        flat = torch.as_tensor(system.var_out * n_in + system.var_in, dtype=torch.long)
        delta = torch.as_tensor(sol.delta, dtype=torch.float32)
        rows_rec, n_fail = info.pop("check_inputs")
        tgt = system.kind == TARGET
        info.update(solver={**sol.to_dict(), "mode": used, "variables": int(system.shape[1]),
                            "target_rows": int(tgt.sum()), "target_rows_satisfied": int(sol.satisfied[tgt].sum()),
                            "keep_rows": int((system.kind == KEEP).sum()),
                            "keep_rows_satisfied": int(sol.satisfied[system.kind == KEEP].sum())},
                    check=_check(split, flat, delta, rows_rec, n_fail, c))
        info["seconds"] = round(time.perf_counter() - t0, 4)
        experts.append(info)
        labels.append(c), idx_list.append(flat), val_list.append(delta)
    if not labels:
        reasons = "; ".join(e["skipped"] for e in experts)
        raise RepairError(f"no expert could be built on layer {split.layer!r}: {reasons}")
    width = max(len(i) for i in idx_list)
    index = torch.stack([nn.functional.pad(i, (0, width - len(i))) for i in idx_list])
    value = torch.stack([nn.functional.pad(v, (0, width - len(v))) for v in val_list])
    ens = ExpertEnsemble(split.trunk, split.head, torch.tensor(labels), index, value,
                         strategy=config.strategy, merge="sum" if last else "mean").eval()
    if config.f1_filter:
        fx, fy = problem.inputs, problem.labels
        if problem.clean_inputs is not None:
            fx, fy = torch.cat([fx, problem.clean_inputs[:10_000]]), torch.cat([fy, problem.clean_labels[:10_000]])
        ens.active = f1_filter(ens, fx, fy.long())
    details = {
        "layer": split.layer, "layer_kind": "last" if last else "intermediate", "scenario": problem.scenario,
        "mode": mode, "bound": bound, "margin": margin, "pattern_seconds": round(pattern_seconds, 3),
        "patterns": None if pats is None else {"tree_depth": pats.tree_depth, "tree_leaves": pats.tree_leaves,
                                               "labels_with_pattern": sorted(pats.correct)},
        "experts": experts, "active": ens.active.tolist(), "config": asdict(config),
        "seconds_per_expert": [e["seconds"] for e in experts if "seconds" in e],
        "deltas_at_bound": int(sum(e["solver"]["at_bound"] for e in experts if "solver" in e)),
        "deltas_nonzero": int(sum(e["solver"]["nonzero"] for e in experts if "solver" in e)),
    }
    return RepairResult(ens, "nnrepair", time.perf_counter() - t_start, {}, details, None)
