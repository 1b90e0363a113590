"""alpha-CROWN (Xu et al., "Fast and Complete", ICLR 2021, Sec. 3.1): optimise the lower slopes of ReLU / LeakyReLU.

Any lower slope ``a`` in [s, 1] (``s`` the negative side's slope) gives a sound relaxation, so every ``a`` gives a
sound bound; projected Adam moves one slope per (box, specification row, unstable neuron) to maximise the lower
bound, and each row keeps the best bound (and slopes) seen. Starting from CROWN's adaptive slopes, the result is
never looser than CROWN.

The tightness/time dial is an :class:`AlphaConfig` (presets ``"fast"`` and ``"tight"``): steps, step size and its
decay, early stop on convergence, and whether the slopes used for the *intermediate* bounds (every ReLU's input
bounds, one set of slopes per neuron bounded) are optimised too. That last part is what makes auto_LiRPA's
``CROWN-optimized`` tight on ACAS Xu: the output bound is a differentiable function of the intermediate bounds,
which are recomputed from their own slopes at every step (never looser than CROWN's, with which they are
intersected); the best intermediate bounds seen are kept for the final pass.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch

from .backward import _jacobian, _onehot_backsub, _walk, _weight_depth, concretize, crown_lower
from .graph import BoundGraph, relu_ops


@dataclass(frozen=True)
class AlphaConfig:
    """alpha-CROWN's dial.

    iters: Adam steps (the cap). lr: step size; lr_decay: multiplied into it after every step (auto_LiRPA's 0.98).
    intermediate: also optimise the slopes behind every intermediate bound (tighter, costlier); inner_weight: the
    objective then also subtracts this times the summed width of the intermediate bounds (any weight is sound: it
    only steers the slopes; the output objective alone left them loose).
    patience / tol: stop once the mean best bound has gained less than ``tol * (1 + |mean|)`` over ``patience``
    steps (0 = run every step). max_alpha_elems: intermediate layers are optimised, in order, only while their
    slopes take at most this many numbers (the others keep CROWN's bounds).
    """

    iters: int = 20
    lr: float = 0.1
    lr_decay: float = 1.0
    intermediate: bool = False
    patience: int = 0
    tol: float = 1e-4
    max_alpha_elems: int = 1 << 26
    inner_weight: float = 0.0


PRESETS: dict[str, AlphaConfig] = {
    # the behaviour before presets existed: output slopes only, 20 steps
    "fast": AlphaConfig(),
    # intermediate slopes too, pushed both by the output bound and by the intermediate widths, decaying steps,
    # stop on convergence (ACAS Xu N1,1, 20 boxes of half-width 0.05: output slopes only 41.3 mean width; with the
    # intermediate ones on the output objective 34.6 (lr 0.5) / 24.8 (lr 0.05); plus the widths term 14.7)
    "tight": AlphaConfig(iters=100, lr=0.2, lr_decay=0.98, intermediate=True, patience=10, tol=1e-4,
                         inner_weight=1.0),
}


def alpha_config(preset: str | AlphaConfig = "fast", **overrides) -> AlphaConfig:
    """The preset's :class:`AlphaConfig` with ``overrides`` (fields left ``None`` are ignored)."""
    if isinstance(preset, AlphaConfig):
        cfg = preset
    elif preset in PRESETS:
        cfg = PRESETS[preset]
    else:
        raise ValueError(f"alpha-CROWN preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _adam_step(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int, lr: float,
               b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
    """One Adam step (Kingma & Ba, 2015) in place; written out because ``torch.optim``'s first use imports
    ``torch._dynamo`` (3-15 s on a busy machine) inside every verification process."""
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    step = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
    p.addcdiv_(m, v.sqrt().add_(eps * (1 - b2 ** t) ** 0.5), value=-step)


def _rows(graph: BoundGraph, pre: dict, B: int, budget: int) -> dict:
    """Per non-linear node whose input bounds back-substitution can tighten: ``(j, idx (B, r), valid (B, r))``,
    the neurons of node ``j``'s output it needs (padded to the batch's largest count), within ``budget`` slopes."""
    depth = _weight_depth(graph)
    relus = relu_ops(graph)
    rows, seen, used = {}, set(), 0
    for i, n in enumerate(graph):
        if not n.nonlinear:
            continue
        j = n.inputs[0]
        if j in seen or depth[j] <= 1:
            continue
        seen.add(j)
        need = n.needs_bounds(*pre[n])
        r = int(need.sum(1).max())
        if r == 0:
            continue
        cost = 2 * r * B * sum(math.prod(k.in_shape) for k in relus if graph.nodes.index(k) < i)
        if used + cost > budget:
            break
        used += cost
        valid, idx = need.to(torch.int8).topk(r, dim=1, sorted=False)
        rows[n] = (j, idx, valid.bool())
    return rows


def _tightened(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, pre0: dict, rows: dict, alphas: dict,
               jacs: dict) -> tuple[dict, torch.Tensor]:
    """Intermediate bounds with the slopes ``alphas[n]`` behind node ``n``'s, intersected with ``pre0``; and the
    summed width of the bounds this pass computed (before the intersection)."""
    pre: dict = {}
    gap = lo.new_zeros(())
    for n in graph:
        if not n.nonlinear:
            continue
        l, u = pre0[n]
        if n in rows:
            j, idx, valid = rows[n]
            r = idx.shape[1]
            A, c = _onehot_backsub(idx, valid.to(lo.dtype), graph, j, pre, n.in_shape, jacs[n], alphas[n])
            bd = concretize(A, c, lo, hi)
            inf = torch.full_like(bd[:, :r], math.inf)
            low = torch.where(valid, bd[:, :r], -inf)
            up = torch.where(valid, -bd[:, r:], inf)
            gap = gap - torch.where(valid, bd[:, :r] + bd[:, r:], 0.0).sum()
            l = l.flatten(1).scatter_reduce(1, idx, low, "amax").reshape(l.shape)
            u = u.flatten(1).scatter_reduce(1, idx, up, "amin").reshape(u.shape)
        pre[n] = (l, u)
    return pre, gap


def alpha_crown_lower(nodes: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict, *,
                      iters: int | None = None, lr: float | None = None, deadline: float | None = None,
                      config: str | AlphaConfig = "fast") -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`crown_lower` with optimised slopes; ``(lb (B, m), A_in)``, differentiable w.r.t. the
    network's parameters through the final pass (the slopes themselves are treated as constants).

    ``config``: a preset name or an :class:`AlphaConfig`; ``iters`` / ``lr`` override its fields.
    ``deadline`` (``time.monotonic()``) stops the optimisation early, keeping the best bound so far.
    """
    cfg = alpha_config(config, iters=iters, lr=lr)
    B, m = A.shape[:2]
    pre_d = {k: (v[0].detach(), v[1].detach()) for k, v in pre.items()}
    relus = relu_ops(nodes)

    def slopes(n_rows: int, among) -> dict:
        return {r: r.initial_alpha(*pre_d[r]).unsqueeze(1).expand(B, n_rows, *r.in_shape).clone().requires_grad_(True)
                for r in among}

    final = slopes(m, relus)
    rows = _rows(nodes, pre_d, B, cfg.max_alpha_elems) if cfg.intermediate else {}
    inner = {n: slopes(2 * idx.shape[1], [r for r in relus if nodes.nodes.index(r) < nodes.nodes.index(n)])
             for n, (j, idx, _) in rows.items()}
    jacs = {n: _jacobian(nodes.nodes[j], lo, B * idx.shape[1]) for n, (j, idx, _) in rows.items()}
    params = list(final.values()) + [a for d in inner.values() for a in d.values()]
    best = {r: a.detach().clone() for r, a in final.items()}
    best_pre = dict(pre_d)
    best_lb = torch.full((B, m), -math.inf, dtype=lo.dtype, device=lo.device)
    if params and cfg.iters > 0:
        A_d, lo_d, hi_d = A.detach(), lo.detach(), hi.detach()
        moments = [(torch.zeros_like(a), torch.zeros_like(a)) for a in params]
        history: list[float] = []
        step_lr = cfg.lr
        for step in range(1, cfg.iters + 2):
            with torch.enable_grad():
                cur, gap = _tightened(nodes, lo_d, hi_d, best_pre, rows, inner, jacs) if rows else (pre_d, 0.0)
                lb, _ = crown_lower(nodes, lo_d, hi_d, A_d, cur, final)
                grads = torch.autograd.grad(cfg.inner_weight * gap - lb.sum(), params, allow_unused=True)
            lb = lb.detach()
            better = lb > best_lb
            best_lb = torch.where(better, lb, best_lb)
            for r, a in final.items():
                best[r][better] = a.detach()[better]
            if rows:   # every step's intermediate bounds are sound (and include the best so far): a ratchet
                best_pre = {n: (l.detach(), u.detach()) for n, (l, u) in cur.items()}
            if deadline is not None and time.monotonic() > deadline:
                break
            if cfg.patience:
                history.append(float(best_lb.mean()))
                if len(history) > cfg.patience and \
                        history[-1] - history[-1 - cfg.patience] < cfg.tol * (1 + abs(history[-1])):
                    break
            if step > cfg.iters:
                break
            with torch.no_grad():
                for a, g, (m1, v1) in zip(params, grads, moments):
                    if g is not None:
                        _adam_step(a, g, m1, v1, step, step_lr)
                for d in [final, *inner.values()]:
                    for r, a in d.items():
                        a.clamp_(*r.alpha_range())
            step_lr *= cfg.lr_decay
    if not rows:
        return crown_lower(nodes, lo, hi, A, pre, best)
    # the final pass keeps gradients to the parameters; it may differ from the best step, so take the max
    pre_f = {n: (torch.max(pre[n][0], best_pre[n][0]), torch.min(pre[n][1], best_pre[n][1])) for n in pre}
    lb, A_in = crown_lower(nodes, lo, hi, A, pre_f, best)
    return torch.maximum(lb, best_lb), A_in


def split_lower(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict,
                alphas: dict | None, signs: dict, betas: dict, record: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bound of ``A · f(x)`` over the points of each box whose split neurons keep their signs, by
    Lagrangian relaxation of the split constraints (beta-CROWN; Wang et al., NeurIPS 2021).

    ``signs[n]`` (B, *in_shape): +1 where the domain requires ReLU ``n``'s input ``z >= 0``, -1 where ``z <= 0``,
    0 elsewhere; ``betas[n]`` (B, m, *in_shape), ``>= 0``. On the domain ``-beta s z <= 0``, so the minimum of
    ``A f(x) - sum beta s z(x)`` over the box (CROWN's back-substitution, with ``-beta s`` added to the form
    reaching ``z``) is a lower bound there for every ``beta >= 0``; ``beta = 0`` is CROWN. ``record`` as in
    :func:`nnmend.bounds.backward.backsub`. Returns ``(lb (B, m), A_in)``."""
    last = len(graph) - 1
    pending: dict = {last: A}
    for n, s in signs.items():
        j = n.inputs[0]
        term = -betas[n] * s.unsqueeze(1)
        pending[j] = pending[j] + term if j in pending else term
    A_in, const = _walk(pending, A.new_zeros(A.shape[:2]), graph, last, pre, alphas, record)
    return concretize(A_in, const, lo, hi), A_in


def beta_crown_lower(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict,
                     signs: dict, *, iters: int = 8, lr: float = 0.5, lr_beta: float = 0.05,
                     warm: tuple[dict, dict] | None = None, done: torch.Tensor | None = None,
                     target: torch.Tensor | float = 0.0, deadline: float | None = None, record: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """:func:`split_lower` with the output bound's ReLU lower slopes (alpha) and the split multipliers (beta)
    optimised jointly by projected Adam, batched over the boxes (domains); each row keeps its best bound.

    ``warm``: starting ``(alphas, betas)`` (e.g. the parent domain's best), each entry (B, m, *in_shape);
    default CROWN's adaptive slopes and ``beta = 0``. ``done`` (B, m): rows whose bound no longer matters (their
    disjunct is already refuted) and which are not optimised; ``target`` (m,): a row above it needs no more
    tightening (the property's threshold). ``record`` receives the last pass's forms at the non-linear nodes
    (as in :func:`nnmend.bounds.backward.backsub`). Returns ``(lb, A_in, best alphas, best betas)``
    (``A_in`` None past the deadline); the first step is the starting point, so the bound is never looser than :func:`split_lower` there.
    """
    B, m = A.shape[:2]
    pre = {k: (v[0].detach(), v[1].detach()) for k, v in pre.items()}
    relus = relu_ops(graph)
    if warm is None:
        alphas = {r: r.initial_alpha(*pre[r]).unsqueeze(1).expand(B, m, *r.in_shape).clone() for r in relus}
        betas = {n: lo.new_zeros((B, m, *n.in_shape)) for n in signs}
    else:
        alphas = {r: warm[0][r].to(lo.dtype).clone() for r in relus}
        betas = {n: warm[1][n].to(lo.dtype).clone() for n in signs}
    for r in relus:
        alphas[r].clamp_(*r.alpha_range())
    for b in betas.values():
        b.clamp_(min=0.0)
    params = [*alphas.values(), *betas.values()]
    rates = [lr] * len(alphas) + [lr_beta] * len(betas)
    best_a = {r: a.clone() for r, a in alphas.items()}
    best_b = {n: b.clone() for n, b in betas.items()}
    best_lb = torch.full((B, m), -math.inf, dtype=lo.dtype, device=lo.device)
    weight = None if done is None else (~done).to(lo.dtype)
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    A_d = A.detach()
    for step in range(1, iters + 2):
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            lb, _ = split_lower(graph, lo, hi, A_d, pre, alphas, signs, betas)
            # rows already positive are proven: only the others pull on the parameters
            obj = (lb - target).clamp(max=0.0) if weight is None else (lb - target).clamp(max=0.0) * weight
            grads = torch.autograd.grad(-obj.sum(), params, allow_unused=True)
        lb = lb.detach()
        better = lb > best_lb
        best_lb = torch.where(better, lb, best_lb)
        with torch.no_grad():
            for r, a in alphas.items():
                best_a[r][better] = a[better]
            for n, b in betas.items():
                best_b[n][better] = b[better]
        settled = best_lb > target if done is None else (best_lb > target) | done
        if step > iters or (deadline is not None and time.monotonic() > deadline) or bool(settled.all()):
            break
        with torch.no_grad():
            for p, g, (m1, v1), rate in zip(params, grads, moments, rates):
                p.requires_grad_(False)
                if g is not None:
                    _adam_step(p, g, m1, v1, step, rate)
            for r, a in alphas.items():
                a.clamp_(*r.alpha_range())
            for b in betas.values():
                b.clamp_(min=0.0)
    for p in params:
        p.requires_grad_(False)
    if deadline is not None and time.monotonic() > deadline:
        return best_lb, None, best_a, best_b          # out of time: the best bound seen, without its slopes
    with torch.no_grad():
        lb, A_in = split_lower(graph, lo, hi, A_d, pre, best_a, signs, best_b, record)
    return torch.maximum(lb, best_lb), A_in, best_a, best_b
