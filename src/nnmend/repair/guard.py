"""Output guard: a repair of region safety properties that holds by construction and is then proved.

Not one of the five source papers' methods: a baseline and a last resort, for properties of the form
"inside this input box, the winning output (argmin or argmax) is never one of these" — ACAS Xu φ2, φ7,
φ8 and most VNN-LIB output specifications written as pairwise comparisons. Where training-based repair
(ProRepair, PatchPro) cannot be proved in the budget (ACAS Xu N1,9 φ7 and N2,9 φ8, whose boxes are
most or all of the input domain), the guard still gives a network whose proof takes seconds.

**Construction.** Take one region of the property and its unsafe set, a disjunction of conjunctions
``A_k y <= b_k``. Choose a *target* output ``t`` and a direction ``s`` (``+1``: lower ``y_t``, ``-1``:
raise it) such that every disjunct ``k`` has a row of the form ``a·s·(y_j − y_t) <= b`` with ``a > 0``
(for φ7, ``t`` = COC: the disjunct "strong left is minimal" contains ``y_SL − y_COC <= 0``). Writing
``w = s·y`` and ``c = b/a``, the disjunct is false as soon as ``w_t < w_j − c`` for one of its such
rows ``j``, hence as soon as ``w_t`` is below their mean (a mean never exceeds the largest). So with
``G = min_k mean_j (w_j − c_j)`` the guarded network outputs

    w_t' = min(w_t, G − ε − M·u(x)),      every other output unchanged,

where ``u(x) = min(1, dist₁(x, box)/δ)`` is 0 inside the box and 1 at L1 distance ``δ`` or more
outside it, and ``M`` is a sound upper bound of ``w_t − G + ε`` over the network's input domain
(CROWN on the original network). So:

* inside the box every disjunct is false with margin ε — the property holds, for every input;
* outside the box by more than δ (and inside the domain) the output is *exactly* the original's;
* inside the box the output moves only where ``w_t > G − ε``. With one such row per disjunct (φ7, φ8)
  that is where the original violated the property or came within ε of it. With several (φ2: "COC is
  not the largest score" has four), the mean makes the proof exact where the largest would need the
  branch and bound to split along every surface where two outputs tie (measured: N2,1 φ2 not proved in
  120 s with the largest). The ACAS Xu advisory is the *argmin*, and lowering a score to no less than
  the mean of others less ε never makes it the new minimum beyond that ε band, so advisories change
  only at violations and in the band either way (``benchmarks/guard_acasxu.py`` measures it).

Every piece is a ``Linear`` or a ``ReLU``: ``min(a, b) = a − ReLU(a − b)``, ``max(a, b) = a + ReLU(b − a)``,
``min(1, s) = s − ReLU(s − 1)``, written as residual blocks (:class:`nnmend.layers.SumOfNetworks`),
so the result is an ordinary network that the shared bounds, attacks, ONNX export and external verifiers
read like any other. Nothing above is trusted: ``verified`` comes only from the harness
(:func:`nnmend.repair.run` → :func:`nnmend.repair.certify.certify`, CROWN / alpha-CROWN branch and bound,
with the mean-row slopes the guard needs) on the saved and reloaded network.
The construction makes that proof easy — with the right ReLU slopes the bound is exactly ε, which
alpha-CROWN's per-row slopes find — but it is still a proof by sound bounds.

Several regions get one guard stage each, applied in order.

Example::

    prop = read_property(acasxu_property_path(7))
    result = run("guard", acasxu(1, 9), GuardProblem(prop))
    result.verified, result.details["targets"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import PropertyError, RepairError
from ..layers import SumOfNetworks
from ..nets import clone, linear_from
from ..properties import SafetyProperty, check, nnet_domain
from .base import RepairResult


@dataclass(frozen=True)
class GuardProblem:
    """What to guard.

    Attributes:
        prop: the region property (:class:`nnmend.properties.SafetyProperty`, e.g. from a ``.vnnlib`` file).
        target: the output the guard moves (default: the lowest-numbered output that fits every disjunct,
            lowering before raising); for ACAS Xu φ7/φ8 output 0 (COC) takes over where the network violated.
        domain: ``(lo, hi)`` flat input box where the network is used; outside the property's box (by more
            than ``band``) and inside this domain the guarded network equals the original exactly. Default:
            the ``.nnet`` header's input range (ACAS Xu); required for any other network.
    """

    prop: SafetyProperty
    target: int | None = None
    domain: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class GuardConfig:
    """``margin``: ε, the output margin by which the guard makes each disjunct false. ``band``: δ, the
    L1 distance (input units) over which the guard fades out around a box. ``certify_timeout``: seconds the harness
    gives the proof on the saved network (None: no limit). ``bound_slack``: added to the CROWN bound ``M`` (absolute).
    ``check_first``: seconds to try proving the property on the *original* network first; when it is
    already proved, the original is returned unchanged (``details["already_satisfied"]``). 0 = skip.

    The defaults are what ``benchmarks/results/guard_acasxu.md`` ran (36/36 proved); there the proofs took
    1.9 s at most of the 120 s given, so 60 s by default, and ``check_first`` was 0 only because every
    instance is known to be violated."""

    margin: float = 1e-4
    band: float = 1e-3
    certify_timeout: float | None = 60.0
    bound_slack: float = 1.0
    check_first: float = 10.0


def _candidates(unsafe: list[tuple[torch.Tensor, torch.Tensor]], n_out: int) -> list[tuple[int, int, list]]:
    """Every ``(t, s, partners)`` that fits all disjuncts; ``partners[k]`` = list of ``(j, c)`` for disjunct k."""
    found = []
    for s in (1, -1):
        for t in range(n_out):
            partners = []
            for A, b in unsafe:
                rows = []
                for row, bi in zip(A, b.reshape(-1)):
                    nz = torch.nonzero(row).flatten().tolist()
                    if len(nz) != 2 or t not in nz:
                        continue
                    j = nz[0] if nz[1] == t else nz[1]
                    a = float(row[j]) * s   # row = a·s·(y_j − y_t): coefficient s·a on j and −s·a on t
                    if a > 0 and abs(float(row[t]) + float(row[j])) <= 1e-12 * abs(a):
                        rows.append((j, float(bi) / a))
                if not rows:
                    break
                partners.append(rows)
            else:
                if partners:
                    found.append((t, s, partners))
    return found


def _outward32(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 box containing the float64 box ``[lo, hi]`` (rounded outwards): the guard is fully on at its faces."""
    lo64, hi64 = lo.double().reshape(-1), hi.double().reshape(-1)
    lo32, hi32 = lo64.float(), hi64.float()
    lo32 = torch.where(lo32.double() > lo64, torch.nextafter(lo32, torch.full_like(lo32, -float("inf"))), lo32)
    hi32 = torch.where(hi32.double() < hi64, torch.nextafter(hi32, torch.full_like(hi32, float("inf"))), hi32)
    return lo32, hi32


def _residual(dim: int, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor) -> SumOfNetworks:
    """``z + w2 · ReLU(w1 z + b1)`` (identity as an exact Linear)."""
    return SumOfNetworks(linear_from(torch.eye(dim)), nn.Sequential(linear_from(w1, b1), nn.ReLU(), linear_from(w2)))


@dataclass
class _Stage:
    t: int
    s: int
    partners: list
    lo: torch.Tensor
    hi: torch.Tensor
    whole: bool          # the box contains the domain: no indicator
    bound: float = 0.0   # M


def build_guard(network: nn.Module, stages: list[_Stage], n_in: int, n_out: int, config: GuardConfig) -> nn.Sequential:
    """The guarded network: a copy of ``network`` followed by one guard stage per entry of ``stages``."""
    base = clone(network)              # the caller's network is never part of (or changed through) the result
    eps, band = float(config.margin), float(config.band)
    ind = [i for i, st in enumerate(stages) if not st.whole]
    R = len(ind)
    D = n_out + R                      # z = [y; u_1 .. u_R]
    embed = torch.zeros(D, n_out)
    embed[:n_out] = torch.eye(n_out)
    blocks: list[nn.Module] = [nn.Flatten()]    # the indicator reads flat inputs; (N, 1, 1, 5) works as well
    if R:
        # s_r = (Σ_i ReLU(lo_i − x_i) + ReLU(x_i − hi_i)) / δ, one per indicated stage
        w1 = torch.zeros(2 * n_in * R, n_in)
        b1 = torch.zeros(2 * n_in * R)
        w2 = torch.zeros(D, 2 * n_in * R)
        for r, i in enumerate(ind):
            lo, hi = _outward32(stages[i].lo, stages[i].hi)
            o = 2 * n_in * r
            w1[o:o + n_in] = -torch.eye(n_in)
            b1[o:o + n_in] = lo
            w1[o + n_in:o + 2 * n_in] = torch.eye(n_in)
            b1[o + n_in:o + 2 * n_in] = -hi
            w2[n_out + r, o:o + 2 * n_in] = 1.0 / band
        bump = nn.Sequential(linear_from(w1, b1), nn.ReLU(), linear_from(w2))
        blocks.append(SumOfNetworks(nn.Sequential(base, linear_from(embed)), bump))
        # u_r = min(1, s_r) = s_r − ReLU(s_r − 1)
        sel = torch.zeros(R, D)
        sel[:, n_out:] = torch.eye(R)
        blocks.append(_residual(D, sel, -torch.ones(R), -sel.T))
    else:
        blocks.append(nn.Sequential(base, linear_from(embed)))
    for i, st in enumerate(stages):
        u = n_out + ind.index(i) if not st.whole else None
        blocks += _guard_blocks(st, D, n_out, u, eps)
    out = torch.zeros(n_out, D)
    out[:, :n_out] = torch.eye(n_out)
    blocks.append(linear_from(out))
    return nn.Sequential(*blocks)


def _guard_blocks(st: _Stage, D: int, n_out: int, u: int | None, eps: float) -> list[nn.Module]:
    """One stage: append h_k = mean_j (w_j − c_j) per disjunct, fold them into g = min_k h_k, move w_t, drop h and g."""
    K = len(st.partners)
    E = D + K                            # z = [y; u's; h_1..h_K] (g is folded into h_1)
    grow = torch.zeros(E, D)
    grow[:D] = torch.eye(D)
    bias = torch.zeros(E)
    for k, rows in enumerate(st.partners):   # h_k = mean_j (w_j − c_j)
        for j, c in rows:
            grow[D + k, j] += st.s / len(rows)
            bias[D + k] -= c / len(rows)
    blocks: list[nn.Module] = [linear_from(grow, bias)]
    # g = min_k h_k, accumulated in h_1: h_1 = h_1 − ReLU(h_1 − h_k)
    for k in range(1, K):
        w1, w2 = torch.zeros(1, E), torch.zeros(E, 1)
        w1[0, D], w1[0, D + k], w2[D, 0] = 1.0, -1.0, -1.0
        blocks.append(_residual(E, w1, torch.zeros(1), w2))
    # w_t' = w_t − ReLU(w_t − g + ε − M u), i.e. y_t' = y_t − s·ReLU(...)
    w1, w2 = torch.zeros(1, E), torch.zeros(E, 1)
    w1[0, st.t], w1[0, D] = st.s, -1.0
    if u is not None:
        w1[0, u] = -st.bound
    w2[st.t, 0] = -st.s
    blocks.append(_residual(E, w1, torch.full((1,), eps), w2))
    shrink = torch.zeros(D, E)
    shrink[:, :D] = torch.eye(D)
    blocks.append(linear_from(shrink))
    return blocks


def _bound_M(network: nn.Module, st: _Stage, lo: torch.Tensor, hi: torch.Tensor, eps: float, slack: float) -> float:
    """Sound upper bound of ``w_t − G + ε`` over the domain: ub(w_t) − min_{k,j} lb(w_j − c_j) + ε + slack
    (a mean of partners is at least their least lower bound)."""
    from ..bounds import crown_bounds

    n_out = network(lo[None].float()).shape[-1]
    C = st.s * torch.eye(n_out)[None]
    lb, ub = crown_bounds(network, lo[None].float(), hi[None].float(), C)
    lb, ub = lb[0], ub[0]
    low = min(float(lb[j].detach()) - c for rows in st.partners for j, c in rows)
    return max(0.0, float(ub[st.t].detach()) - low + eps) + slack


def plan(network: nn.Module, problem: GuardProblem, config: GuardConfig = GuardConfig()) -> tuple[list[_Stage], torch.Tensor, torch.Tensor]:
    """The guard stages for ``problem`` on ``network`` (target, direction, partners, M) and the domain."""
    if not isinstance(problem.prop, SafetyProperty):
        raise PropertyError(f"the output guard repairs region properties (SafetyProperty), got {type(problem.prop).__name__}")
    if not config.margin > 0 or not config.band > 0:
        raise RepairError(f"GuardConfig: margin={config.margin} and band={config.band} must be > 0")
    first = next(iter(problem.prop.regions), None)
    if first is None:
        raise PropertyError(f"{problem.prop.source or 'property'}: no input regions")
    n_in = torch.as_tensor(first.lo).numel()
    with torch.no_grad():
        n_out = network(torch.as_tensor(first.lo, dtype=torch.float32).reshape(1, n_in)).shape[-1]
    boxes = problem.prop.boxes(n_out)
    if problem.domain is not None:
        dlo, dhi = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in problem.domain)
        if dlo.numel() != n_in or dhi.numel() != n_in:
            raise RepairError(f"domain has {dlo.numel()} / {dhi.numel()} entries but the network has {n_in} inputs")
    else:
        dom = nnet_domain(network)
        if dom is None or dom[0].numel() != n_in:
            raise RepairError("guard: the network has no input domain (needed to bound "
                              "how far the guard may move an output, so that outside the property's box the network stays exactly "
                              "the same) and no .nnet header to read it from: pass GuardProblem(domain=(lo, hi)) "
                              "(CLI: --domain-lo/--domain-hi)")
        dlo, dhi = dom
    if (dlo > dhi).any():
        raise RepairError(f"domain lo {dlo.tolist()} exceeds hi {dhi.tolist()}")
    stages = []
    where = problem.prop.source or "property"
    for i, b in enumerate(boxes):
        if not b.unsafe:
            continue
        cands = _candidates(b.unsafe, n_out)
        if problem.target is not None:
            cands = [c for c in cands if c[0] == problem.target]
        if not cands:
            extra = f" with target output {problem.target}" if problem.target is not None else ""
            raise RepairError(f"{where}: region {i}: no output can guard it{extra}: every disjunct of the unsafe set "
                              "needs a row comparing two outputs, a·(y_j − y_t) <= b, sharing one output t")
        t, s, partners = cands[0]
        lo, hi = b.lo.reshape(-1), b.hi.reshape(-1)
        whole = bool((lo <= dlo).all() and (hi >= dhi).all())
        st = _Stage(t, s, partners, lo, hi, whole)
        if not whole:
            st.bound = _bound_M(network, st, dlo, dhi, config.margin, config.bound_slack)
        stages.append(st)
    if not stages:
        raise PropertyError(f"{where}: the property has no unsafe output set: nothing to guard")
    return stages, dlo, dhi


def repair(network: nn.Module, problem: GuardProblem, config: GuardConfig = GuardConfig()) -> RepairResult:
    """Guard ``network`` so that ``problem.prop`` holds by construction.

    Returns a :class:`RepairResult` whose network is ``network`` followed by the guard blocks; whether the
    property is proved is decided by the harness (:func:`nnmend.repair.run`: sound bounds on the saved and
    reloaded network, ``config.certify_timeout`` seconds), never here.
    ``details``: targets and directions, ``M`` per stage, the domain, parameters added.
    """
    t0 = time.perf_counter()
    stages, dlo, dhi = plan(network, problem, config)
    if config.check_first > 0:
        first = check(network, problem.prop, timeout=config.check_first)
        if first.status == "verified":
            return RepairResult(clone(network), "guard", time.perf_counter() - t0, {},
                                {"already_satisfied": True, "message": f"{problem.prop.source or 'the property'} "
                                 f"is already proved on the original network ({first.seconds:.1f} s); nothing to guard"})
    n_in = dlo.numel()
    with torch.no_grad():
        n_out = network(dlo.float()[None]).shape[-1]
    guarded = build_guard(network, stages, n_in, n_out, config).eval()
    guarded.nnmend_meta = {**getattr(network, "nnmend_meta", {}), "method": "guard"}
    n_base = sum(p.numel() for p in network.parameters())
    details = {"targets": [{"output": st.t, "direction": "lower" if st.s > 0 else "raise",
                            "partners": [[j for j, _ in rows] for rows in st.partners], "whole_domain": st.whole,
                            "M": st.bound} for st in stages],
               "domain": [dlo.tolist(), dhi.tolist()], "margin": config.margin, "band": config.band,
               "parameters_added": sum(p.numel() for p in guarded.parameters()) - n_base,
               "build_seconds": round(time.perf_counter() - t0, 4)}
    return RepairResult(guarded, "guard", time.perf_counter() - t0, {}, details)
