"""Branch and bound on the input (ReluVal-style input splitting; Wang et al., USENIX Security 2018),
with CROWN / alpha-CROWN bounds and a counterexample search at every round.

The question decided for one input box ``[lo, hi]``: is there ``x`` in the box whose output ``y``
satisfies some disjunct of the unsafe set, a disjunct being a conjunction ``A_k y <= b_k``?
The rows of all disjuncts are stacked into one specification ``C y - d`` with a group index per row:
a disjunct is *unreachable* on a box when some row of it has a lower bound ``> 0``; a box is proven
when every disjunct is unreachable. A point is a counterexample when ``v(y) = min_k max_{i in k}
(C_i y - d_i) <= 0``.

Every round bounds all open boxes of a batch at once, drops the proven ones, looks for a
counterexample (each box's centre, the box corners that minimise each row's linear lower bound, and
PGD on ``v`` through :func:`nnmend.attacks.pgd`), and bisects the rest along the input dimension
with the largest ``|A_in| x width`` (the linear lower bound's slope times the box width: how much
the dimension can move the bound). A counterexample is reported only after the float64 network
confirms it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attacks import pgd
from .backward import crown_lower, intermediate_bounds
from .graph import compile_network
from .interval import interval_pass
from .optimized import alpha_crown_lower


@dataclass(frozen=True)
class BabConfig:
    """Branch-and-bound settings (defaults tuned on ACAS Xu, 2 CPU cores).

    batch_size: boxes bounded per round. alpha_iters: alpha-CROWN steps on boxes CROWN leaves open
    (0 = CROWN only), used once the search has run ``alpha_after`` seconds (default at once: measured on ACAS Xu
    phi2, N4,2 took 18 s and 26k boxes with alpha-CROWN from the start against 48 s and 366k boxes when it
    started after 40 s, and N3,3 32 s against 66 s; plain CROWN did not prove N4,2 in 150 s). The split
    dimension is always chosen from CROWN's slopes (see the search). split: "input" (bisect the input box),
    "relu" (split ReLU neurons, :mod:`nnmend.bounds.relu_split`) or "auto": the input up to
    ``input_split_max_dims`` input dimensions, ReLU neurons beyond (where the network has any). memory_gb: the memory one batch of bounds
    may take (default a quarter of the machine, at most 8 GB); the batch shrinks to fit it. pgd_steps / pgd_restarts / pgd_boxes: PGD on the violation per round, on the
    ``pgd_boxes`` open boxes with the worst bounds. samples: uniform points
    drawn in the initial box. sample_share / sample_chunk: after that, up to this share of the search's time
    goes to drawing ``sample_chunk`` uniform points at a time over the union of the open boxes (0 = off). proof_margin: a row counts as proven only when its lower bound exceeds
    this (guards against rounding). width_ratio: see :func:`split_dims`. min_width: boxes narrower than this in every dimension are not
    split further (the result becomes "unknown"). dtype: arithmetic of the bounds (float64 default). mean_rows: also
    bound, for every disjunct of several rows, the mean of its rows (a conjunction ``A y <= b`` implies
    ``mean(A) y <= mean(b)``, so a positive lower bound of the mean row refutes the disjunct as soundly as any one
    row; the violation value is unchanged, the mean never exceeding the largest row). Off by default: it did not
    pay on the original ACAS Xu networks (session-6 measurement), but the output guard's φ2 construction is
    safe exactly because of a mean (:mod:`nnmend.repair.guard`).
    alpha_preset: the alpha-CROWN preset (``"fast"``: output slopes only; ``"tight"``: intermediate slopes too,
    slower per step; see :class:`nnmend.bounds.optimized.AlphaConfig`); ``alpha_iters`` / ``alpha_lr`` override it.
    reuse_parent_bounds: ReLU splitting keeps each domain's parent's intermediate bounds instead of recomputing
    them (``None``: where the root's cost more than eight final-bound passes, see :mod:`nnmend.bounds.relu_split`).
    beta / beta_iters / beta_lr: ReLU splitting bounds each domain with its split constraints' Lagrange multipliers
    (beta-CROWN, :func:`nnmend.bounds.optimized.beta_crown_lower`): ``beta_iters`` Adam steps on the slopes and
    multipliers together, warm-started from the parent's, and the multipliers' step size (sri_resnet_b 4836, load
    4-7: 4 steps bounded 1,539 domains in 120 s with the open set shrinking, 8 steps 937 with it growing); off:
    alpha-CROWN on the clipped bounds alone.
    threads: torch intra-op threads during the search (restored afterwards); 1 by default because the
    many small tensor operations of a search run faster single-threaded, above all on a busy machine
    (measured: 20x on a shared 2-core host). ``None`` leaves torch's setting alone.
    """

    batch_size: int = 2048
    alpha_iters: int = 8
    alpha_after: float = 0.0
    alpha_lr: float = 0.5
    pgd_steps: int = 10
    pgd_restarts: int = 1
    pgd_boxes: int = 256
    samples: int = 20000
    sample_share: float = 0.2
    sample_chunk: int = 65536
    proof_margin: float = 1e-9
    width_ratio: float = 128.0
    min_width: float = 1e-9
    max_open: int = 5_000_000
    dtype: torch.dtype = torch.float64
    threads: int | None = 1
    seed: int = 0
    mean_rows: bool = False
    memory_gb: float | None = None
    split: str = "auto"
    input_split_max_dims: int = 16
    alpha_preset: str = "fast"
    reuse_parent_bounds: bool | None = None
    beta: bool = True
    beta_iters: int = 4
    beta_lr: float = 0.1


def memory_budget(config: "BabConfig") -> int:
    """Bytes the search may use for one batch of bounds: ``config.memory_gb``, else a quarter of the machine's
    memory (at most 8 GB)."""
    if config.memory_gb is not None:
        return int(config.memory_gb * 2**30)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(total // 4, 8 * 2**30))


def batch_limit(nodes, rows: int, itemsize: int, budget: int) -> int:
    """Boxes per batch so that the linear forms of one back-substitution (``rows`` specification rows and the
    intermediate bounds' slices, a few live copies of the widest node each) fit in ``budget`` bytes."""
    widest = max([1] + [math.prod(s) for n in nodes for s in n.in_shapes] + [math.prod(n.out_shape) for n in nodes])
    per_box = itemsize * widest * (2 * rows + 64) * 6
    return max(1, budget // per_box)


def with_mean_rows(C: torch.Tensor, d: torch.Tensor, groups: torch.Tensor, k: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``C, d, groups`` plus one mean row per disjunct that has two or more rows (see ``BabConfig.mean_rows``)."""
    extra_C, extra_d, extra_g = [], [], []
    for g in range(k):
        idx = torch.nonzero(groups == g).flatten()
        if len(idx) > 1:
            extra_C.append(C[idx].mean(0))
            extra_d.append(d[idx].mean(0))
            extra_g.append(g)
    if not extra_C:
        return C, d, groups
    return (torch.cat([C, torch.stack(extra_C)]), torch.cat([d, torch.stack(extra_d)]),
            torch.cat([groups, torch.tensor(extra_g, dtype=groups.dtype)]))


@dataclass
class BabOutcome:
    status: str                                      # verified / falsified / unknown / timeout
    counterexample: tuple[torch.Tensor, torch.Tensor] | None = None
    stats: dict = field(default_factory=dict)
    open_boxes: tuple[torch.Tensor, torch.Tensor] | None = None   # (lo, hi) still open at a timeout


def group_max(vals: torch.Tensor, groups: torch.Tensor, k: int) -> torch.Tensor:
    """Per-row values (B, R) → max over the rows of each group (B, k)."""
    out = vals.new_full((vals.shape[0], k), -float("inf"))
    return out.scatter_reduce(1, groups.expand(vals.shape[0], -1), vals, "amax", include_self=True)


def bisect(lo: torch.Tensor, hi: torch.Tensor, dim: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halve each flat box ``[lo, hi]`` (B, n) at the midpoint of dimension ``dim`` (B,).

    Returns ``(left_lo, left_hi, right_lo, right_hi)``, each (B, n); ``left_lo is lo``, ``right_hi is hi``.
    Shared by branch and bound and by repair methods that refine their property boxes (PatchPro).
    """
    rows = torch.arange(len(dim), device=lo.device)
    mid = (lo[rows, dim] + hi[rows, dim]) / 2
    left_hi, right_lo = hi.clone(), lo.clone()
    left_hi[rows, dim], right_lo[rows, dim] = mid, mid
    return lo, left_hi, right_lo, hi


def split_dims(lb: torch.Tensor, A_in: torch.Tensor, proven: torch.Tensor, groups: torch.Tensor, k: int,
               width: torch.Tensor, min_width: float, root_width: torch.Tensor | None = None,
               width_ratio: float = 128.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The dimension to bisect per box (ReluVal's smear with CROWN slopes): per open disjunct, the row
    closest to a proof decides; score ``|A_in| x width``. ``lb`` (B, R) row lower bounds minus ``d``,
    ``A_in`` (B, R, n) their input slopes, ``proven`` (B, k) disjuncts already unreachable, ``width`` (B, n).

    The slope only sees how the *bound* moves with a dimension, not how much of the relaxation's looseness
    the dimension causes, so the smear alone can starve a dimension forever (on ACAS Xu it leaves the
    heading angles at half their range while the other dimensions shrink to 1e-5). With ``root_width``
    (1, n) given, a box whose relatively widest dimension (width / root width) is more than ``width_ratio``
    times as wide as the smear's pick is bisected there instead.
    Returns ``(dim (B,), splittable (B,) bool)``, False where the chosen width is below ``min_width``.
    Shared by branch and bound and by ProRepair's property refinement."""
    B = lb.shape[0]
    row_open = ~proven.gather(1, groups.expand(B, -1))                            # (B, R)
    best = torch.where(row_open, lb, -float("inf"))
    is_best = (best == group_max(best, groups, k).gather(1, groups.expand(B, -1))) & row_open
    score = (A_in.abs() * is_best.unsqueeze(-1)).sum(1) * width                     # (B, n)
    score = torch.where(width > min_width, score + width * 1e-12, torch.zeros_like(score))
    dim = score.argmax(1)
    if root_width is not None:
        rel = width / root_width
        widest = rel.argmax(1)
        starved = rel.gather(1, widest[:, None]).squeeze(1) > width_ratio * rel.gather(1, dim[:, None]).squeeze(1)
        dim = torch.where(starved, widest, dim)
    return dim, width.gather(1, dim[:, None]).squeeze(1) > min_width


def violation(y: torch.Tensor, C: torch.Tensor, d: torch.Tensor, groups: torch.Tensor, k: int) -> torch.Tensor:
    """``v(y) = min_k max_{i in k} (C_i y - d_i)``: <= 0 exactly when ``y`` lies in the unsafe set."""
    return group_max(y.flatten(1) @ C.T - d, groups, k).min(1).values


class _BoxViolation(nn.Module):
    """Adapter so the shared PGD can minimise ``v`` over boxes: it sees ``u`` in [0, 1]^n (the box rescaled)
    and "logits" ``[0, -v]`` with label 0, whose margin loss is ``-v``. ``disjunct`` (B,): item ``b`` minimises
    only that disjunct's ``max_i (C_i y - d_i)`` (a targeted attack per disjunct: the gradient of the min over
    disjuncts follows only the currently closest one)."""

    def __init__(self, net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, spec: tuple,
                 disjunct: torch.Tensor | None = None):
        super().__init__()
        self.net, self.lo, self.width, self.spec, self.disjunct = net, lo, hi - lo, spec, disjunct

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = self.net(self.lo + u * self.width)
        if self.disjunct is None:
            v = violation(y, *self.spec)
        else:
            C, d, groups, k = self.spec
            per = group_max(y.flatten(1) @ C.T - d, groups, k)                        # (B, k)
            v = per.gather(1, self.disjunct[:, None]).squeeze(1)
        return torch.stack([torch.zeros_like(v), -v], 1)


def _confirm(net64: nn.Module, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, spec64: tuple
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first candidate that the float64 network confirms (inside the box, in the unsafe set)."""
    x = torch.max(torch.min(x.to(torch.float64), hi.to(torch.float64)), lo.to(torch.float64))
    with torch.no_grad():
        y = net64(x)
        bad = torch.nonzero(violation(y, *spec64) <= 0)
    if len(bad) == 0:
        return None
    i = bad[0, 0]
    return x[i].clone(), y[i].clone()


def bab_box(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
            groups: torch.Tensor, *, deadline: float, config: BabConfig = BabConfig()) -> BabOutcome:
    """Decide whether the unsafe set ``{y : some disjunct of C y <= d holds}`` is reachable from ``[lo, hi]``.

    Args:
        net: the network (eval mode); copied to ``config.dtype`` and to float64 for confirmation.
        lo, hi: one input box, shape ``in_shape``.
        C (R, n_out), d (R,): the stacked rows of all disjuncts; groups (R,): each row's disjunct index.
        deadline: ``time.monotonic()`` value at which to stop with "timeout".
    Returns:
        :class:`BabOutcome` with status "verified" (every box proven by sound bounds), "falsified" (with a
        float64-confirmed counterexample ``(x, y)``), "unknown" (boxes too small to split) or "timeout".
    """
    if config.split not in ("auto", "input", "relu"):
        raise ValueError(f"BabConfig.split must be 'auto', 'input' or 'relu', not {config.split!r}")
    wide = int((hi > lo).sum()) > config.input_split_max_dims
    if config.split == "relu" or (config.split == "auto" and wide and _has_relu(net, tuple(lo.shape))):
        from .relu_split import relu_split_box

        return relu_split_box(net, lo, hi, C, d, groups, deadline=deadline, config=config)
    big = sum(p.numel() for p in net.parameters()) > 100_000
    if wide or big:   # bisecting many dimensions rarely proves anything, and a large network's first bound is
        # slow (a CIFAR CNN behind 16 inputs: 370 s): an attack first (5 % of the time)
        from .falsify import falsify

        k = int(groups.max()) + 1
        spec64 = (C.double(), d.double(), groups, k)
        t0 = time.monotonic()
        cex = falsify(_copy(net, torch.float32), _copy(net, torch.float64), lo.unsqueeze(0), hi.unsqueeze(0),
                      (C.float(), d.float(), groups, k), spec64, deadline=deadline,
                      budget_s=max(1.0, 0.05 * (deadline - t0)), seed=config.seed, rounds=4)
        if cex is not None:
            return BabOutcome("falsified", cex, {"found_by": "pgd", "attack_seconds": round(time.monotonic() - t0, 3)})
    return bab_boxes(net, lo.unsqueeze(0), hi.unsqueeze(0), C, d, groups, deadline=deadline, config=config)


def _has_relu(net: nn.Module, in_shape: tuple[int, ...]) -> bool:
    return any(n.optimizable for n in compile_network(net, input_shape=in_shape))


def bab_boxes(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
              groups: torch.Tensor, *, deadline: float, config: BabConfig = BabConfig()) -> BabOutcome:
    """:func:`bab_box` for the union of ``B`` boxes ``lo, hi`` (B, *in_shape), searched as one batched branch and
    bound (e.g. the leaves of a partition that cheaper bounds left open): "verified" means every box is.
    ``proven_volume`` is then a share of the boxes' total volume (relative to their hull's widths)."""
    if lo.shape != hi.shape or lo.dim() < 2 or not len(lo):
        raise ValueError(f"bab_boxes: lo {tuple(lo.shape)} and hi {tuple(hi.shape)} must both be (B, *in_shape), B >= 1")
    before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _search(net, lo, hi, C, d, groups, deadline, config)
    finally:
        torch.set_num_threads(before)


def _search(net: nn.Module, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, d: torch.Tensor,
            groups: torch.Tensor, deadline: float, config: BabConfig) -> BabOutcome:
    cfg = config
    dt = cfg.dtype
    work = _copy(net, dt)
    net64 = work if dt == torch.float64 else _copy(net, torch.float64)
    nodes = compile_network(work, input_shape=tuple(lo.shape[1:]))
    k = int(groups.max()) + 1
    if cfg.mean_rows:
        C, d, groups = with_mean_rows(C, d, groups, k)
    spec = (C.to(dt), d.to(dt), groups, k)
    spec64 = (C.double(), d.double(), groups, k)
    gen = torch.Generator().manual_seed(cfg.seed)
    stats = {"rounds": 0, "boxes_bounded": 0, "max_open": len(lo), "pgd_calls": 0, "proven_volume": 0.0}
    lo, hi = lo.to(dt), hi.to(dt)
    root_width = (hi.flatten(1).max(0).values - lo.flatten(1).min(0).values)[None]   # the boxes' hull
    root_width = torch.where(root_width > 0, root_width, torch.ones_like(root_width))

    def volume(blo: torch.Tensor, bhi: torch.Tensor) -> float:
        """Volume of the boxes relative to the hull's widths (degenerate dimensions ignored)."""
        return float(((bhi - blo).flatten(1) / root_width).prod(1).sum())

    total = volume(lo, hi) or 1.0
    # round 0: uniform sampling of the boxes
    if time.monotonic() > deadline:   # deadline check (copying the network can take long)
        return BabOutcome("timeout", None, {**stats, "open_boxes": len(lo)}, (lo, hi))
    n_samples = min(cfg.samples, max(256, (1 << 22) // max(1, lo[0].numel())))     # at most ~4M coordinates
    if n_samples:
        if len(lo) == 1:          # (the same random stream as a single-box search always drew)
            x = lo + torch.rand((n_samples, *lo.shape[1:]), generator=gen, dtype=dt) * (hi - lo)
            idx = torch.zeros(n_samples, dtype=torch.long)
        else:
            x, idx = sample_boxes(lo, hi, n_samples, gen)
        cex = _screen_points(_copy(net, torch.float32), net64, x, lo, hi, idx, spec64, deadline)
        if cex is not None:
            return BabOutcome("falsified", cex, {**stats, "found_by": "sampling"})

    with torch.no_grad():
        interval_pass(nodes, lo[:1], hi[:1])           # every node's shape, for the memory estimate
    cap = batch_limit(nodes.nodes, len(d), torch.empty((), dtype=dt).element_size(), memory_budget(cfg))
    stats["batch_cap"] = cap
    open_lo, open_hi = lo, hi
    open_proven = torch.zeros((len(lo), k), dtype=torch.bool)
    open_pre: dict = {}          # every open box keeps its parent's pre-activation bounds (still valid inside)
    no_pre = len(lo)             # ... except the first ``no_pre`` open boxes: initial boxes not yet bounded
    too_small = 0
    started, sampling, net32 = time.monotonic(), 0.0, None
    while len(open_lo):
        if time.monotonic() > deadline:
            return BabOutcome("timeout", None, {**stats, "open_boxes": len(open_lo)}, (open_lo, open_hi))
        while cfg.sample_share and stats["rounds"] and sampling < cfg.sample_share * (time.monotonic() - started) \
                and time.monotonic() <= deadline:   # deadline check
            # rare violations (ACAS Xu N1,9 phi7: about one point in 10^6) escape PGD's local search but not
            # uniform sampling of the still-open region; it gets a fixed share of the search's time
            t0 = time.monotonic()
            net32 = _copy(net, torch.float32) if net32 is None else net32
            cex = _sample_open(net32, net64, open_lo, open_hi, cfg.sample_chunk, gen, spec64)
            sampling += time.monotonic() - t0
            stats["sampling_rounds"] = stats.get("sampling_rounds", 0) + 1
            if cex is not None:
                return BabOutcome("falsified", cex, {**stats, "found_by": "sampling open boxes"})
        take = min(cfg.batch_size, len(open_lo), cap)
        blo, bhi, bproven = open_lo[-take:], open_hi[-take:], open_proven[-take:]
        if take <= len(open_lo) - no_pre:
            known = {n: (l[-take:], u[-take:]) for n, (l, u) in open_pre.items()} or None
            open_pre = {n: (l[:-take], u[:-take]) for n, (l, u) in open_pre.items()}
        else:                    # the batch reaches into the initial boxes: bound it from scratch
            known, open_pre = None, {}
            no_pre = len(open_lo) - take
        open_lo, open_hi, open_proven = open_lo[:-take], open_hi[:-take], open_proven[:-take]
        stats["rounds"] += 1
        stats["boxes_bounded"] += take

        with torch.no_grad():
            pre = intermediate_bounds(nodes, blo, bhi, known=known)
            A = spec[0].reshape(1, len(d), *nodes[-1].out_shape).expand(take, len(d), *nodes[-1].out_shape)
            lb, A_in = crown_lower(nodes, blo, bhi, A, pre)
        if time.monotonic() > deadline:   # deadline check (bounding a large batch can take long)
            return BabOutcome("timeout", None, {**stats, "open_boxes": len(open_lo) + take},
                              (torch.cat([open_lo, blo]), torch.cat([open_hi, bhi])))
        lb = lb - spec[1]
        proven = bproven | (group_max(lb, groups, k) > cfg.proof_margin)
        todo = ~proven.all(1)
        use_alpha = cfg.alpha_iters and time.monotonic() - started >= cfg.alpha_after
        if use_alpha and todo.any() and time.monotonic() < deadline:
            idx = torch.nonzero(todo).squeeze(1)
            sub_pre = {n: (p[0][idx], p[1][idx]) for n, p in pre.items()}
            lb2, _ = alpha_crown_lower(nodes, blo[idx], bhi[idx], A[idx], sub_pre, iters=cfg.alpha_iters,
                                       lr=cfg.alpha_lr, deadline=deadline, config=cfg.alpha_preset)
            # the tighter bounds decide proofs; the branching keeps CROWN's slopes (with alpha-CROWN's input
            # slopes N2,7 phi1 was not proved in 60 s, against 1.5k boxes with CROWN's)
            lb2 = lb2.detach() - spec[1]
            lb[idx] = lb2
            proven[idx] |= group_max(lb2, groups, k) > cfg.proof_margin
            todo = ~proven.all(1)
        stats["proven_volume"] += volume(blo[~todo], bhi[~todo]) / total
        if not todo.any():
            continue
        blo, bhi, lb, A_in, proven = blo[todo], bhi[todo], lb[todo], A_in[todo].flatten(2), proven[todo]
        pre = {n: (l[todo], u[todo]) for n, (l, u) in pre.items()}
        B = len(blo)

        if time.monotonic() > deadline:   # deadline check (after alpha-CROWN)
            return BabOutcome("timeout", None, {**stats, "open_boxes": len(open_lo) + B},
                              (torch.cat([open_lo, blo]), torch.cat([open_hi, bhi])))
        # counterexample candidates: centres and, per row, the corner minimising its linear lower bound
        flo, fhi = blo.flatten(1), bhi.flatten(1)
        corners = torch.where(A_in >= 0, flo.unsqueeze(1), fhi.unsqueeze(1))          # (B, R, n)
        cand = torch.cat([((flo + fhi) / 2).unsqueeze(1), corners], 1).reshape(-1, *blo.shape[1:])
        rep = cand.shape[0] // B
        cex = _confirm(net64, cand, blo.repeat_interleave(rep, 0), bhi.repeat_interleave(rep, 0), spec64)
        if cex is None and cfg.pgd_steps and time.monotonic() <= deadline:   # (deadline check before PGD)
            # PGD on the boxes whose bounds are furthest from a proof (most likely to hold a counterexample)
            stats["pgd_calls"] += 1
            worst = group_max(lb, groups, k).masked_fill(proven, float("inf")).min(1).values
            sel = worst.topk(min(cfg.pgd_boxes, B), largest=False).indices
            plo, phi = blo[sel], bhi[sel]
            adapter = _BoxViolation(work, plo, phi, spec)
            u = pgd(adapter, torch.full_like(plo, 0.5), torch.zeros(len(sel), dtype=torch.long), 0.5,
                    steps=cfg.pgd_steps, restarts=cfg.pgd_restarts, loss="margin", seed=stats["rounds"],
                    batch_size=len(sel))
            cex = _confirm(net64, plo + u * (phi - plo), plo, phi, spec64)
        if cex is not None:
            return BabOutcome("falsified", cex, {**stats, "found_by": "bab"})

        dim, splittable = split_dims(lb, A_in, proven, groups, k, fhi - flo, cfg.min_width, root_width,
                                     cfg.width_ratio)
        too_small += int((~splittable).sum())
        flo, fhi, proven, dim = flo[splittable], fhi[splittable], proven[splittable], dim[splittable]
        pre = {n: (l[splittable], u[splittable]) for n, (l, u) in pre.items()}
        _, left_hi, right_lo, _ = bisect(flo, fhi, dim)
        shape = blo.shape[1:]
        open_lo = torch.cat([open_lo, flo.reshape(-1, *shape), right_lo.reshape(-1, *shape)])
        open_hi = torch.cat([open_hi, left_hi.reshape(-1, *shape), fhi.reshape(-1, *shape)])
        open_proven = torch.cat([open_proven, proven, proven])
        open_pre = {n: (torch.cat([open_pre[n][0], l, l]) if open_pre else torch.cat([l, l]),
                        torch.cat([open_pre[n][1], u, u]) if open_pre else torch.cat([u, u]))
                    for n, (l, u) in pre.items()}
        stats["max_open"] = max(stats["max_open"], len(open_lo))
        if len(open_lo) > cfg.max_open:
            return BabOutcome("unknown", None, {**stats, "reason": f"more than {cfg.max_open} open boxes"})
    if too_small:
        return BabOutcome("unknown", None, {**stats, "reason": f"{too_small} boxes narrower than min_width stay open"})
    return BabOutcome("verified", None, stats)


def sample_boxes(lo: torch.Tensor, hi: torch.Tensor, n: int, gen: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points uniform over the union of disjoint boxes ``[lo, hi]`` (B, *shape): each point's box drawn
    by volume (zero-width dimensions ignored), then a uniform point in it. Returns ``(x (n, *shape), box (n,))``."""
    width = (hi - lo).flatten(1)
    # volumes in log space: a product of 784 widths of 0.02 underflows to 0 (and NaN weights) in any float
    log_vol = torch.where(width > 0, width, torch.ones_like(width)).double().log().sum(1)
    idx = torch.multinomial(torch.softmax(log_vol, 0), n, replacement=True, generator=gen)
    x = lo[idx] + torch.rand(lo[idx].shape, generator=gen, dtype=lo.dtype) * (hi[idx] - lo[idx])
    return x, idx


@torch.no_grad()
def _screen_points(net32: nn.Module, net64: nn.Module, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   idx: torch.Tensor, spec64: tuple, deadline: float, chunk: int = 2048
                   ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first of the points ``x`` (each in box ``idx``) that violates the property, screened in float32 a chunk
    at a time (near-violations confirmed in float64); stops at the first one found or at ``deadline``."""
    C, d, groups, k = spec64
    C32, d32 = C.float(), d.float()
    for s in range(0, len(x), chunk):
        if time.monotonic() > deadline:
            return None
        xs, bs = x[s:s + chunk], idx[s:s + chunk]
        y = net32(xs.float())
        near = violation(y, C32, d32, groups, k) <= 1e-3 + 1e-5 * y.flatten(1).abs().amax(1)   # float32 rounding
        if near.any():
            cex = _confirm(net64, xs[near], lo[bs][near], hi[bs][near], spec64)
            if cex is not None:
                return cex
    return None


def _sample_open(net32: nn.Module, net64: nn.Module, lo: torch.Tensor, hi: torch.Tensor, n: int,
                 gen: torch.Generator, spec64: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``n`` points uniform over the union of the (disjoint) open boxes: a box by its volume, then a point in
    it. Screened in float32 (twice as many points per second); near-violations are confirmed in float64."""
    n = max(1, min(n, (1 << 22) // lo[0].numel()))            # at most 4M coordinates per draw
    x, idx = sample_boxes(lo, hi, n, gen)
    return _screen_points(net32, net64, x, lo, hi, idx, spec64, math.inf, chunk=len(x))


def _copy(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    import copy

    p = next(iter(net.parameters()), None)
    if p is not None and p.dtype == dtype:
        return net
    return copy.deepcopy(net).to(dtype).eval()
