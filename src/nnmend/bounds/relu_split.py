"""Branch and bound on ReLU neurons, for inputs too wide to split (images, long feature vectors).

A domain is the input box plus a sign for some unstable neurons: *active* (pre-activation ``>= 0``) or
*inactive* (``<= 0``). Its bounds are the ordinary CROWN / alpha-CROWN bounds with the split neurons' input
bounds clipped at 0 (``intermediate_bounds(…, known=…)``): every relaxation used is valid for every point of
the domain, so a lower bound that proves the property on both children of every split proves it on the
box (the children cover it). A domain whose clipped bounds cross (``l > u``) is empty and proven. Where the
root's intermediate bounds cost more than eight passes of the final bound (deep CNNs, ResNets), a domain keeps
its parent's intermediate bounds, the split neuron's clipped, instead of recomputing them (still valid in the
child: it lies inside the parent), so many more domains are bounded per second. This is
the branch and bound of Bunel et al. (JMLR 2020) with CROWN bounds, tightened by beta-CROWN's split multipliers
(Wang et al., NeurIPS 2021; ``BabConfig.beta``): each split constraint enters the domain's final bound with a
multiplier ``beta >= 0``, optimised with the output slopes and warm-started from the parent's
(:func:`nnmend.bounds.optimized.beta_crown_lower`; sound for every ``beta >= 0``). On mnistfc 256x2 prop_6 this
took the search from a timeout at 120 s (2,303 domains bounded, 2,026 open at 60 s) to a proof after 21 domains.

The branching neuron is the unstable one whose relaxation gap ``-l u / (u - l)`` weighted by the size of its
coefficient in the domain's bound is largest (a simple form of BaBSR's score). A counterexample search
(:func:`nnmend.bounds.falsify.falsify` on the whole box) runs first, from the root bound's corners after
the first round, and between rounds for up to a tenth of the search's time.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .backward import backsub, concretize, intermediate_bounds
from .bab import BabConfig, BabOutcome, _confirm, _copy, batch_limit, group_max, memory_budget
from .falsify import falsify
from .graph import compile_network
from .interval import interval_pass
from .optimized import alpha_crown_lower, beta_crown_lower


def relu_split_box(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
                   groups: torch.Tensor, *, deadline: float, config: BabConfig = BabConfig()) -> BabOutcome:
    """Decide whether ``{y : some disjunct of C y <= d}`` is reachable from the box ``[lo, hi]`` (``in_shape``)
    by splitting ReLU neurons; the same contract as :func:`nnmend.bounds.bab.bab_box`."""
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _search(net, lo.unsqueeze(0), hi.unsqueeze(0), C, d, groups, deadline, config)
    finally:
        torch.set_num_threads(before)


def split_signs(graph, pre: dict) -> dict:
    """Per ReLU node, the domain's split constraints read off its input bounds (B, *in_shape): +1 where the lower
    bound was clipped to 0 (``z >= 0``), -1 where the upper was (``z <= 0``), 0 elsewhere. Any neuron whose valid
    bounds give it a sign satisfies that constraint on the domain, so the multipliers stay sound whatever marks
    it."""
    out = {}
    for n in graph:
        if n.optimizable and n in pre:
            l, u = pre[n]
            out[n] = torch.where((l == 0) & (u > 0), 1.0, torch.where((u == 0) & (l < 0), -1.0, 0.0)).to(l.dtype)
    return out


def _start_params(pre: dict, R: int) -> tuple[dict, dict]:
    """beta-CROWN's starting point for domains without a parent's: CROWN's adaptive slopes, ``beta = 0``; each
    (B, R, *in_shape) per ReLU node."""
    alphas = {n: n.initial_alpha(l, u).unsqueeze(1).expand(-1, R, *n.in_shape) for n, (l, u) in pre.items()
              if n.optimizable}
    return alphas, {n: torch.zeros_like(a) for n, a in alphas.items()}


def _scores(graph, pre: dict, lam: dict) -> tuple[torch.Tensor, list]:
    """Per domain, the flat (node, neuron) with the largest weighted relaxation gap; -inf where none is unstable."""
    scores, nodes = [], []
    for n in graph:
        if not n.optimizable or n not in pre:
            continue
        l, u = pre[n]
        l, u = l.flatten(1), u.flatten(1)
        unstable = (l < 0) & (u > 0)
        gap = torch.where(unstable, -l * u / (u - l).clamp_min(1e-30), torch.full_like(l, -float("inf")))
        if n in lam:
            gap = torch.where(unstable, gap * (1e-6 + lam[n].flatten(1)), gap)
        scores.append(gap)
        nodes.append(n)
    return torch.cat(scores, 1), nodes


def _relu_weights(graph, A: torch.Tensor, pre: dict) -> dict:
    """``|A|`` summed over the specification rows at each ReLU (how much each neuron moves the bound)."""
    forms: dict = {}
    backsub(A, graph, len(graph) - 1, pre, record=forms)
    return {n: f.abs().sum(1) for n, f in forms.items() if n.optimizable}


def _linear_domain(graph, lo: torch.Tensor, hi: torch.Tensor, pre: dict, spec: tuple) -> str | torch.Tensor:
    """Decide one domain whose ReLUs are all fixed, where the network is affine: an LP per disjunct.

    Every neuron's sign is a linear constraint on ``x`` (exact affine forms by back-substitution through the
    now exact ReLUs). For each disjunct, minimise ``t`` with every row ``<= t`` over the box and the signs: an
    optimum above the proof margin (or an empty domain) refutes it. Returns ``"proven"``, a candidate input
    (to confirm on the network) or ``"unknown"`` (a non-ReLU non-linearity, or the LP failed)."""
    from scipy.optimize import linprog

    if any(n.nonlinear and not n.optimizable for n in graph):
        return "unknown"
    C, d, groups, k = spec
    n_in = lo[0].numel()
    rows_A, rows_b = [], []
    for n in graph:
        if not n.optimizable:
            continue
        l, u = (x.flatten(1)[0] for x in pre[n])
        sign = torch.where(l >= 0, 1.0, torch.where(u <= 0, -1.0, 0.0)).to(lo.dtype)
        idx = torch.nonzero(sign != 0).squeeze(1)
        if not len(idx):
            continue
        eye = torch.zeros(1, len(idx), l.numel(), dtype=lo.dtype)
        eye[0, torch.arange(len(idx)), idx] = sign[idx]
        j = n.inputs[0]
        if j < 0:
            A_in, c = eye.reshape(1, len(idx), *lo.shape[1:]), eye.new_zeros(1, len(idx))
        else:
            A_in, c = backsub(eye.reshape(1, len(idx), *graph.nodes[j].out_shape), graph, j, pre)
        rows_A.append(-A_in.reshape(len(idx), n_in))          # sign * z(x) >= 0  ->  -sign*A x <= sign*c
        rows_b.append(c.reshape(-1))
    A_out, c_out = backsub(C.reshape(1, len(d), *graph.nodes[-1].out_shape), graph, len(graph) - 1, pre)
    A_out, c_out = A_out.reshape(len(d), n_in), c_out.reshape(-1) - d
    G = torch.cat(rows_A) if rows_A else torch.zeros(0, n_in, dtype=lo.dtype)
    h = torch.cat(rows_b) if rows_b else torch.zeros(0, dtype=lo.dtype)
    bounds = list(zip(lo.flatten().tolist(), hi.flatten().tolist())) + [(None, None)]
    for g in range(k):
        sel = groups == g
        Ag, cg = A_out[sel], c_out[sel]
        # rows: A_g x + c_g <= t ; signs: G x <= h ; minimise t
        A_ub = torch.cat([torch.cat([Ag, -torch.ones(len(Ag), 1, dtype=lo.dtype)], 1),
                          torch.cat([G, torch.zeros(len(G), 1, dtype=lo.dtype)], 1)]).numpy()
        b_ub = torch.cat([-cg, h]).numpy()
        cost = [0.0] * n_in + [1.0]
        res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.status == 2:          # infeasible: the domain is empty
            return "proven"
        if res.status != 0:
            return "unknown"
        if res.fun <= 1e-6:
            return torch.as_tensor(res.x[:n_in], dtype=lo.dtype).reshape(lo.shape)
    return "proven"


def _search(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
            groups: torch.Tensor, deadline: float, cfg: BabConfig) -> BabOutcome:
    dt = cfg.dtype
    work = _copy(net, dt)
    net64 = work if dt == torch.float64 else _copy(net, torch.float64)
    graph = compile_network(work, input_shape=tuple(lo.shape[1:]))
    k = int(groups.max()) + 1
    spec = (C.to(dt), d.to(dt), groups, k)
    spec64 = (C.double(), d.double(), groups, k)
    lo, hi = lo.to(dt), hi.to(dt)
    started = time.monotonic()
    stats = {"mode": "relu split", "rounds": 0, "domains_bounded": 0, "max_open": 1, "pgd_calls": 0}
    R = len(d)
    with torch.no_grad():
        interval_pass(graph, lo, hi)
    cap = max(1, min(cfg.batch_size, batch_limit(graph.nodes, R, torch.empty((), dtype=dt).element_size(),
                                                 memory_budget(cfg))))
    stats["batch_cap"] = cap

    net32 = _copy(net, torch.float32)
    attack_s = [0.0]

    def attack(seed: int, rounds: int, share: float, seeds: tuple | None = None) -> tuple | None:
        """:func:`nnmend.bounds.falsify.falsify` on the whole box: at most ``rounds`` rounds and ``share`` of the
        time left (at least 0.5 s)."""
        stats["pgd_calls"] += 1
        t0 = time.monotonic()
        budget = max(0.5, share * (deadline - t0))
        cex = falsify(net32, net64, lo, hi, spec, spec64, deadline=deadline, budget_s=budget, seeds=seeds,
                      seed=seed, steps=max(cfg.pgd_steps, 40), rounds=rounds)
        attack_s[0] += time.monotonic() - t0
        return cex

    cex = attack(0, 1, 0.03)
    if cex is not None:
        return BabOutcome("falsified", cex, {**stats, "found_by": "pgd"})

    open_known: dict = {}          # node -> (l, u) stacked over open domains
    open_warm: tuple | None = ({}, {})   # beta-CROWN's (alphas, betas) per open domain (float32), the parent's best
    warm_cap = memory_budget(cfg) // 4   # bytes the warm starts may take; beyond, they are dropped
    n_open = 1
    open_proven = torch.zeros((1, k), dtype=torch.bool)
    first, reuse = True, False
    while n_open:
        if time.monotonic() > deadline:
            return BabOutcome("timeout", None, {**stats, "open_domains": n_open})
        take = min(cap, n_open)
        known = None if first else {n: (l[-take:], u[-take:]) for n, (l, u) in open_known.items()}
        if not first:
            open_known = {n: (l[:-take], u[:-take]) for n, (l, u) in open_known.items()}
        warm = None
        if open_warm is not None and open_warm[0]:
            warm = tuple({n: v[-take:] for n, v in d.items()} for d in open_warm)
            open_warm = tuple({n: v[:-take] for n, v in d.items()} for d in open_warm)
        bproven = open_proven[-take:]
        open_proven = open_proven[:-take]
        n_open -= take
        stats["rounds"] += 1
        stats["domains_bounded"] += take
        blo, bhi = lo.expand(take, *lo.shape[1:]), hi.expand(take, *hi.shape[1:])
        t_pre = time.monotonic()
        if reuse and known is not None:
            pre = known                    # the parent's bounds, the split neuron's clipped: valid in the child
        else:
            with torch.no_grad():
                pre = intermediate_bounds(graph, blo, bhi, known=known)
        t_pre = time.monotonic() - t_pre
        empty = torch.zeros(take, dtype=torch.bool)
        for l, u in pre.values():          # crossed bounds (beyond rounding): the splits contradict
            empty |= (l > u + 1e-7 * (1 + u.abs())).flatten(1).any(1)
        A = spec[0].reshape(1, R, -1).expand(take, -1, -1).reshape(take, R, *graph.nodes[-1].out_shape)
        params, forms = None, {}
        if not first and cfg.beta_iters and cfg.beta:
            # only the rows some domain of the batch still needs are bounded (the others' disjuncts are refuted)
            live = ~bproven.gather(1, groups.expand(take, -1))
            cols = torch.nonzero(live.any(0)).squeeze(1)
            params = tuple({n: v.float().clone() for n, v in d.items()}
                           for d in (warm if warm is not None else _start_params(pre, R)))
            lb_s, _, *best_ab = beta_crown_lower(
                graph, blo, bhi, A[:, cols], pre, split_signs(graph, pre), iters=cfg.beta_iters, lr=cfg.alpha_lr,
                lr_beta=cfg.beta_lr, warm=tuple({n: v[:, cols] for n, v in d.items()} for d in params),
                done=~live[:, cols], target=spec[1][cols], deadline=deadline, record=forms)
            for d, new in zip(params, best_ab):
                for n, v in new.items():
                    d[n][:, cols] = v.float()
            lb = lb_s.new_full((take, R), -float("inf"))
            lb[:, cols] = lb_s
            A_in = None
        elif first or cfg.alpha_iters:
            iters = max(cfg.alpha_iters, 20 if first else 0)
            t_bound = time.monotonic()
            lb, A_in = alpha_crown_lower(graph, blo, bhi, A, pre, iters=iters,
                                         lr=cfg.alpha_lr, deadline=deadline, config=cfg.alpha_preset)
            lb = lb.detach()
            if first:
                # a deep network's intermediate bounds cost many final bounds (resnet_4b: 60 s against 0.2 s per
                # pass): its domains then keep their parent's bounds instead of recomputing them
                reuse = (t_pre > 8 * (time.monotonic() - t_bound) / (iters + 1) if cfg.reuse_parent_bounds is None
                         else cfg.reuse_parent_bounds)
                stats["reuse_parent_bounds"] = reuse
        else:
            with torch.no_grad():
                A_in, c = backsub(A, graph, len(graph) - 1, pre)
                lb = concretize(A_in, c, blo, bhi)
        lb = lb - spec[1]
        proven = bproven | (group_max(lb, groups, k) > cfg.proof_margin)
        todo = ~proven.all(1) & ~empty
        if todo.any() and time.monotonic() > deadline:     # no time to branch: answer within the deadline
            return BabOutcome("timeout", None, {**stats, "open_domains": n_open + int(todo.sum())})
        if first and todo.any() and time.monotonic() < deadline:
            # seeds: per open row, the corner of the box that minimises its linear lower bound
            rows = ~proven[0].gather(0, groups)
            corners = torch.where(A_in[0].detach() >= 0, lo, hi)[rows]
            cex = attack(1, 1, 0.05, (corners, groups[rows]))
            if cex is not None:
                return BabOutcome("falsified", cex, {**stats, "found_by": "pgd from the bound's corners"})
        first = False
        if not todo.any():
            continue
        idx = torch.nonzero(todo).squeeze(1)
        pre = {n: (l[idx], u[idx]) for n, (l, u) in pre.items()}
        params = None if params is None else tuple({n: v[idx] for n, v in d.items()} for d in params)
        with torch.no_grad():
            if forms:       # the optimised bound's own forms at the ReLUs (beta-CROWN's pass): no extra pass
                lam = {n: f[idx].abs().sum(1) for n, f in forms.items() if n.optimizable}
            else:
                live = ~proven[idx].gather(1, groups.expand(len(idx), -1))     # weigh only the rows still open
                lam = _relu_weights(graph, A[idx] * live.reshape(*live.shape, *[1] * (A.dim() - 2)), pre)
        score, nodes = _scores(graph, pre, lam)
        best = score.argmax(1)
        splittable = torch.isfinite(score.gather(1, best[:, None]).squeeze(1))
        if not splittable.all():
            # every ReLU of the domain is fixed: the network is affine there, decided exactly by an LP
            for i in torch.nonzero(~splittable).squeeze(1).tolist():
                with torch.no_grad():
                    verdict = _linear_domain(graph, lo, hi, {n: (l[i:i + 1], u[i:i + 1]) for n, (l, u) in pre.items()}, spec)
                stats["lp_domains"] = stats.get("lp_domains", 0) + 1
                if isinstance(verdict, torch.Tensor):
                    cex = _confirm(net64, verdict[None], lo, hi, spec64)
                    if cex is not None:
                        return BabOutcome("falsified", cex, {**stats, "found_by": "lp"})
                    verdict = "unknown"
                if verdict == "unknown":
                    stats["stuck_domains"] = stats.get("stuck_domains", 0) + 1
            keep = torch.nonzero(splittable).squeeze(1)
            idx, best = idx[keep], best[keep]
            pre = {n: (l[keep], u[keep]) for n, (l, u) in pre.items()}
            params = None if params is None else tuple({n: v[keep] for n, v in d.items()} for d in params)
            if not len(idx):
                continue
        sizes = [pre[n][0][0].numel() for n in nodes]
        offsets = torch.tensor([0] + sizes).cumsum(0)
        children = {n: (torch.cat([l, l]), torch.cat([u, u])) for n, (l, u) in pre.items()}
        for t, n in enumerate(nodes):
            l, u = (x.flatten(1) for x in pre[n])
            mine = (best >= offsets[t]) & (best < offsets[t + 1])
            col = (best - offsets[t]).clamp(0, l.shape[1] - 1)
            rows = torch.arange(len(best))
            la, ua = l.clone(), u.clone()       # active child: l >= 0
            li, ui = l.clone(), u.clone()       # inactive child: u <= 0
            la[rows[mine], col[mine]] = 0.0
            ui[rows[mine], col[mine]] = 0.0
            shape = pre[n][0].shape
            children[n] = (torch.cat([la, li]).reshape(2 * len(best), *shape[1:]),
                           torch.cat([ua, ui]).reshape(2 * len(best), *shape[1:]))
        p = proven[idx]
        if open_known:
            open_known = {n: (torch.cat([open_known[n][0], children[n][0]]), torch.cat([open_known[n][1], children[n][1]]))
                          for n in children}
        else:
            open_known = children
        open_proven = torch.cat([open_proven, p, p])
        n_open += 2 * len(idx)
        if open_warm is not None and cfg.beta and cfg.beta_iters:
            # both children start from the parent's best alphas and betas (the new split's beta at 0); the root's
            # children from CROWN's slopes
            if params is None:
                params = _start_params(pre, R)
            kids = tuple({n: torch.cat([v, v]).float() for n, v in d.items()} for d in params)
            open_warm = kids if not open_warm[0] else tuple(
                {n: torch.cat([open_warm[i][n], kids[i][n]]) for n in kids[i]} for i in range(2))
            if sum(v.numel() for d in open_warm for v in d.values()) * 4 > warm_cap:
                open_warm = None
                stats["warm_starts_dropped_at"] = n_open
        stats["max_open"] = max(stats["max_open"], n_open)
        if n_open > cfg.max_open:
            return BabOutcome("unknown", None, {**stats, "reason": f"more than {cfg.max_open} open domains"})
        if attack_s[0] < 0.1 * (time.monotonic() - started) and time.monotonic() < deadline:
            cex = attack(stats["rounds"], 1, 0.05)
            if cex is not None:
                return BabOutcome("falsified", cex, {**stats, "found_by": "pgd"})
    if stats.get("stuck_domains"):
        cex = attack(stats["rounds"] + 1, 4, 0.5) if time.monotonic() < deadline else None
        if cex is not None:
            return BabOutcome("falsified", cex, {**stats, "found_by": "pgd"})
        return BabOutcome("unknown", None, {**stats, "reason": f"{stats['stuck_domains']} domains without unstable "
                                                               "neurons are not proven by their bounds"})
    return BabOutcome("verified", None, stats)
