"""Region-wise ProRepair: counterexample-guided property refinement around proxy-box repair.

Each round (all leaves batched):

1. bound the edited features of every leaf (frozen-prefix relaxation, :mod:`.split`) and prove leaves
   whose feature box the head maps into the safe set; bound the rest on the whole edited network
   with CROWN (sound; those proofs count too);
2. stop when every leaf is proven; otherwise search counterexamples in the open leaves (box corners
   that minimise each row's CROWN lower bound, PGD through :func:`nnmend.attacks.pgd`, and uniform
   points over the union of the open leaves); leaves with one, and the leaves later split from them,
   *need repair*. A round without any asks one batched branch and bound over the open leaves for a
   counterexample or a proof of them all (which ends the loop);
3. split every open leaf once (CROWN slope × width, :func:`nnmend.bounds.bab.split_dims`);
4. synthesise proxy boxes for the counterexample points, for the leaves that need repair or are open
   once refinement made them small (``repair_depth``) and lie within ``target_reach`` of their proxy
   box, and for the leaves proven through the head (those get boxes containing their feature box: the
   term holds them in place), then train the edit layer on the bounded distance term plus the
   preservation term. Loose leaves far from their proxy boxes are only refined, never trained on.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..._progress import progress
from ...attacks import pgd
from ...bounds import bound
from ...bounds.bab import _BoxViolation, group_max, sample_boxes, split_dims, violation
from ...bounds.backward import crown_lower, intermediate_bounds
from ...bounds.graph import compile_network
from .config import ProRepairConfig
from .leaves import Leaves, split, uniform_split
from .proxy import affine_head, box_distance, box_min, synthesize
from .spec import RowSpec
from .split import edited_feature_bounds, fast_feature_path, prefix_relaxation


class RegionState:
    """The edited network cut into pieces, leaves, their cached prefix relaxations, and the spec rows."""

    def __init__(self, net: nn.Sequential, split_idx: int, edit_idx: list[int], in_shape: tuple[int, ...],
                 spec_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]):
        self.net, self.in_shape = net, in_shape
        self.h = nn.Sequential(*list(net)[:split_idx]).eval()
        self.g = nn.Sequential(*list(net)[split_idx:]).eval()
        self.fast = fast_feature_path(self.h, edit_idx)
        self.edit = edit_idx[0]
        self.prefix = nn.Sequential(*list(self.h)[: self.edit]).eval()
        self.relu = len(self.h) > self.edit + 1
        self.C, self.d, self.groups, self.k = spec_rows
        self.rel: dict | None = None
        self.argmin = getattr(net, "nnmend_meta", {}).get("advisory") == "argmin"   # api may override

    def spec(self, n: int) -> RowSpec:
        return RowSpec(self.C.expand(n, -1, -1), self.d.expand(n, -1), self.groups, self.k)

    def shaped(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(len(flat), *self.in_shape)

    def add_relaxations(self, leaves: Leaves) -> None:
        if not self.fast:
            return
        rel = prefix_relaxation(self.prefix, self.shaped(leaves.lo), self.shaped(leaves.hi))
        self.rel = rel if self.rel is None else {k: torch.cat([self.rel[k], v]) for k, v in rel.items()}

    def keep_relaxations(self, idx: torch.Tensor) -> None:
        if self.rel is not None:
            self.rel = {k: v[idx] for k, v in self.rel.items()}

    def features(self, leaves: Leaves, idx: torch.Tensor, rel: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sound bounds of the edited features over leaves ``idx``; differentiable in the edited weights."""
        if self.fast:
            rel = {k: v[idx] for k, v in (self.rel if rel is None else rel).items()}
            return edited_feature_bounds(self.h[self.edit], self.relu, rel)
        return bound(self.h, self.shaped(leaves.lo[idx]), self.shaped(leaves.hi[idx]), method="crown")

    @torch.no_grad()
    def proven_by_head(self, flo: torch.Tensor, fhi: torch.Tensor) -> torch.Tensor:
        n = len(flo)
        lin = affine_head(self.g)
        if lin is not None:
            spec = self.spec(n)
            a = spec.C @ lin.weight
            beta = spec.C @ lin.bias - spec.d
            lb = box_min(a, beta, flo, fhi)
        else:
            lb, _ = bound(self.g, flo, fhi, self.C, method="crown")
            lb = lb - self.d
        return (group_max(lb, self.groups, self.k) > 0).all(1)

    @torch.no_grad()
    def crown_whole(self, leaves: Leaves, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CROWN on the whole edited network: (proven (n,), row lb - d (n, R), input slopes (n, R, d))."""
        lo, hi = self.shaped(leaves.lo[idx]), self.shaped(leaves.hi[idx])
        nodes = compile_network(self.net)
        pre = intermediate_bounds(nodes, lo, hi, "crown")
        A = self.C.reshape(1, len(self.d), -1).expand(len(idx), -1, -1)
        lb, A_in = crown_lower(nodes, lo, hi, A, pre)
        lb = lb - self.d
        return (group_max(lb, self.groups, self.k) > 0).all(1), lb, A_in.flatten(2)

    def counterexamples(self, leaves: Leaves, idx: torch.Tensor, lb: torch.Tensor, A_in: torch.Tensor,
                        cfg: ProRepairConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which leaves ``idx`` hold a concrete input the edited network gets wrong: (n,) bool, and those
        inputs (flat, one per such leaf)."""
        lo, hi = leaves.lo[idx], leaves.hi[idx]
        n = len(idx)
        corners = torch.where(A_in >= 0, lo.unsqueeze(1), hi.unsqueeze(1))               # (n, R, d)
        cand = torch.cat([((lo + hi) / 2).unsqueeze(1), corners], 1)
        spec = (self.C, self.d, self.groups, self.k)
        with torch.no_grad():
            v = _violation(self.net(self.shaped(cand.reshape(-1, lo.shape[1]))), spec).reshape(n, -1)
        found = (v <= 0).any(1)
        points = cand[torch.arange(n), v.argmin(1)]
        if cfg.pgd_steps and (~found).any():
            rest = torch.nonzero(~found).squeeze(1)
            worst = group_max(lb[rest], self.groups, self.k).min(1).values
            sel = rest[worst.topk(min(cfg.pgd_boxes, len(rest)), largest=False).indices]
            plo, phi = self.shaped(lo[sel]), self.shaped(hi[sel])
            adapter = _BoxViolation(self.net, plo, phi, spec)
            u = pgd(adapter, torch.full_like(plo, 0.5), torch.zeros(len(sel), dtype=torch.long), 0.5,
                    steps=cfg.pgd_steps, loss="margin", seed=seed, batch_size=len(sel))
            with torch.no_grad():
                xs = (plo + u * (phi - plo)).flatten(1)
                hit = (_violation(self.net(self.shaped(xs)), spec) <= 0) & ~found[sel]
            points[sel[hit]] = xs[hit]
            found[sel] |= hit
        points = points[found]
        if cfg.sample_points:
            s_found, s_points = self.sample_open(lo, hi, cfg, seed)
            found |= s_found
            points = torch.cat([points, s_points])
        return found, points

    @torch.no_grad()
    def sample_open(self, lo: torch.Tensor, hi: torch.Tensor, cfg: ProRepairConfig, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform points over the union of the open leaves ``[lo, hi]`` (each leaf by volume): which leaves
        hold a violating one (n,) bool, and up to ``cfg.sample_keep`` violating points (flat, the worst first)."""
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + seed)
        found = torch.zeros(len(lo), dtype=torch.bool)
        x, leaf = sample_boxes(lo, hi, cfg.sample_points, gen)
        v = _violation(self.net(self.shaped(x.to(self.C.dtype))), (self.C, self.d, self.groups, self.k))
        bad = torch.nonzero(v <= 0).squeeze(1)
        found[leaf[bad]] = True
        bad = bad[v[bad].argsort()[: cfg.sample_keep]]
        return found, x[bad].to(lo.dtype)


def decision_margin(y: torch.Tensor, cls: torch.Tensor, argmin: bool) -> torch.Tensor:
    """How far class ``cls`` leads the runner-up (positive when it is the decision)."""
    s = -y if argmin else y
    own = s.gather(1, cls[:, None]).squeeze(1)
    other = s.scatter(1, cls[:, None], -float("inf")).max(1).values
    return own - other


def preservation(y: torch.Tensor, y0: torch.Tensor, y_var: torch.Tensor, argmin: bool) -> torch.Tensor:
    """Logit MSE (relative to the logits' variance) plus a hinge that keeps half of each original
    decision's lead (relative to the median lead): small logit drift is cheap, decision flips are not."""
    cls = (y0.argmin(1) if argmin else y0.argmax(1))
    m0 = decision_margin(y0, cls, argmin)
    m = decision_margin(y, cls, argmin)
    flip = (0.5 * m0 - m).clamp(min=0) / m0.median().clamp(min=1e-12)
    return F.mse_loss(y, y0) / y_var + flip.mean()


def _bab_counterexamples(state: RegionState, lo: torch.Tensor, hi: torch.Tensor, cfg: ProRepairConfig, rnd: int,
                         seconds: float) -> tuple[torch.Tensor, bool]:
    """One batched branch and bound over the open leaves ``lo, hi`` (flat) for ``seconds``: a counterexample
    (flat, (0 or 1, d)), and whether it proved every one of them instead (the other leaves being proven,
    the whole property then holds on the edited network)."""
    from ...bounds.bab import BabConfig, bab_boxes

    out = bab_boxes(state.net, state.shaped(lo), state.shaped(hi), state.C, state.d, state.groups,
                    deadline=time.monotonic() + seconds, config=BabConfig(threads=None, seed=cfg.seed + rnd))
    found = [out.counterexample[0].float().reshape(-1)] if out.status == "falsified" else []
    return (torch.stack(found) if found else torch.zeros(0, lo.shape[1])), out.status == "verified"


def _violation(y: torch.Tensor, spec: tuple) -> torch.Tensor:
    """The shared :func:`nnmend.bounds.bab.violation` with the spec as one tuple ``(C, d, groups, k)``."""
    return violation(y, *spec)


def region_repair(state: RegionState, params: list[nn.Parameter], boxes: list[tuple[torch.Tensor, torch.Tensor]],
                  preserve_x: torch.Tensor, preserve_y: torch.Tensor, cfg: ProRepairConfig, log) -> dict:
    """Run the refinement/repair rounds in place on ``state.net``; returns a record of the run."""
    start = time.monotonic()
    leaves = uniform_split(*boxes[0], cfg.initial_splits)
    for lo, hi in boxes[1:]:
        leaves = leaves.cat(uniform_split(lo, hi, cfg.initial_splits))
    state.add_relaxations(leaves)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    record = {"rounds": [], "status": "budget"}
    points: Leaves | None = None
    point_rel: dict | None = None
    span = torch.stack([hi - lo for lo, hi in boxes]).max(0).values.clamp(min=1e-12)
    quiet = 0                             # consecutive rounds without a counterexample in the open leaves
    bab_spent = 0.0                       # seconds spent in the in-loop branch and bound
    for rnd in progress(range(cfg.max_rounds + 1), desc="prorepair: rounds", total=cfg.max_rounds + 1):
        all_idx = torch.arange(len(leaves))
        with torch.no_grad():
            flo, fhi = state.features(leaves, all_idx)
        by_head = state.proven_by_head(flo, fhi)
        open_idx = torch.nonzero(~by_head).squeeze(1)
        by_crown = torch.zeros(len(leaves), dtype=torch.bool)
        lb = A_in = None
        if len(open_idx):
            ok, lb, A_in = state.crown_whole(leaves, open_idx)
            by_crown[open_idx] = ok
            keep = ~ok
            open_idx, lb, A_in = open_idx[keep], lb[keep], A_in[keep]
        row = {"round": rnd, "leaves": len(leaves), "proven_by_head": int(by_head.sum()),
               "proven_by_crown": int(by_crown.sum()), "open": len(open_idx), "seconds": round(time.monotonic() - start, 2)}
        if not len(open_idx):
            record["rounds"].append(row)
            record["status"], record["proof"] = "proven", "leaves"
            break
        if rnd == cfg.max_rounds or time.monotonic() - start > cfg.time_budget:
            record["rounds"].append(row)
            break
        found, cex = state.counterexamples(leaves, open_idx, lb, A_in, cfg, seed=rnd)
        quiet = 0 if found.any() else quiet + 1
        if not found.any() and cfg.bab_seconds > 0:
            # rare violations: ask branch and bound, twice as long after each round without a counterexample
            # (capped at half the budget left): once the network is safe, a proof ends the loop before more
            # training steps move it (measured on N2,1: the loop ran out of budget with 719 leaves open and
            # further training, the certificate then proved the saved network by branch and bound in 8 s)
            # and never more than half the loop's own (non-BaB) time so far, so branch and bound takes at most a
            # third of the run: on N4,1 uncapped doubling spent 160 of 300 s in searches that did not finish
            elapsed = time.monotonic() - start
            left = cfg.time_budget - elapsed
            seconds = min(cfg.bab_seconds * 2 ** (quiet - 1), max(left / 2, cfg.bab_seconds),
                          max((elapsed - bab_spent) / 2, cfg.bab_seconds))
            t_bab = time.monotonic()
            cex, proved = _bab_counterexamples(state, leaves.lo[open_idx], leaves.hi[open_idx], cfg, rnd, seconds)
            bab_spent += time.monotonic() - t_bab
            row["bab_counterexamples"] = len(cex)
            row["bab_seconds"] = round(seconds, 1)
            if proved:                    # branch and bound proved the open leaves: every leaf is proven
                record["rounds"].append(row)
                record["status"], record["proof"] = "proven", "leaves and branch and bound"
                break
        if len(cex):                      # counterexamples become point items (zero-width leaves)
            new = Leaves(cex, cex.clone(), torch.ones(len(cex), dtype=torch.bool))
            rel = prefix_relaxation(state.prefix, state.shaped(cex), state.shaped(cex)) if state.fast else None
            points = new if points is None else points.cat(new)
            point_rel = rel if point_rel is None else {k: torch.cat([point_rel[k], v]) for k, v in rel.items()}
        leaves.needs_repair[:] = False                      # only this round's counterexamples steer the edit
        leaves.needs_repair[open_idx[found]] = True
        row["counterexample_leaves"] = int(found.sum())
        # refine: split the open leaves (most open first when the leaf budget binds)
        room = max(cfg.max_leaves - len(leaves), 0)
        if room:
            worst = group_max(lb, state.groups, state.k).min(1).values
            order = worst.argsort()[:room]
            sel = open_idx[order]
            proven_rows = group_max(lb[order], state.groups, state.k) > 0
            dim, ok = split_dims(lb[order], A_in[order], proven_rows, state.groups, state.k,
                                 leaves.hi[sel] - leaves.lo[sel], cfg.min_width)
            sel, dim = sel[ok], dim[ok]
            if len(sel):
                rest = torch.ones(len(leaves), dtype=torch.bool)
                rest[sel] = False
                kept = torch.nonzero(rest).squeeze(1)
                children = split(leaves.take(sel), dim)
                state.keep_relaxations(kept)
                leaves = leaves.take(kept)
                leaves = leaves.cat(children)
                state.add_relaxations(children)
                by_head = torch.cat([by_head[kept], torch.zeros(len(children), dtype=torch.bool)])
        # repair: proxy boxes for leaves that need it and for the head-proven ones (held in place)
        # leaves join the repair only once refinement made them small (their bounds tight): a loose
        # leaf's proxy box would demand a large, non-surgical edit; counterexample points join at once
        depth = -torch.log2(((leaves.hi - leaves.lo) / span).clamp(min=1e-30)).sum(1)
        is_open = torch.ones(len(leaves), dtype=torch.bool)
        is_open[torch.nonzero(by_head).squeeze(1)] = False
        targets = torch.nonzero((leaves.needs_repair | is_open) & (depth >= cfg.repair_depth)).squeeze(1)
        hold = torch.nonzero(by_head & ~leaves.needs_repair).squeeze(1)
        row["repair_leaves"] = len(targets)
        row["repair_points"] = 0 if points is None else len(points)
        if points is not None:
            row.update(_train(state, params, opt, leaves, targets, hold, points, point_rel,
                              preserve_x, preserve_y, cfg, gen))
        record["rounds"].append(row)
        log(row)
    record["leaves"] = leaves
    record["seconds"] = time.monotonic() - start
    return record


def _train(state: RegionState, params, opt, leaves: Leaves, targets: torch.Tensor, hold: torch.Tensor,
           points: Leaves, point_rel: dict | None, preserve_x: torch.Tensor, preserve_y: torch.Tensor,
           cfg: ProRepairConfig, gen: torch.Generator) -> dict:
    idx = torch.cat([targets, hold])
    pidx = torch.arange(len(points))

    def feats(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # items: [point items | target leaves | hold leaves]; sel indexes that list
        p = sel[sel < len(points)]
        q = sel[sel >= len(points)] - len(points)
        plo, phi = state.features(points, pidx[p], point_rel)
        llo, lhi = state.features(leaves, idx[q])
        return torch.cat([plo, llo]), torch.cat([phi, lhi])

    n_items = len(points) + len(idx)
    with torch.no_grad():
        flo, fhi = feats(torch.arange(n_items))
        scale = state.h(preserve_x[:4096]).flatten(1).std(0).mean().clamp(min=1e-6)  # feature units: clean spread
        y_var = preserve_y.var(0).mean().clamp(min=1e-12)
    proxies = synthesize(state.g, state.spec(n_items), flo, fhi, margin=cfg.proxy_margin * float(scale),
                         iters=cfg.dykstra_iters, steps=cfg.growth_steps)
    nt = len(points) + len(targets)
    # a leaf whose feature bounds lie far outside its proxy box is open because its bounds are loose, not because
    # the network is wrong there: pulling it in would need a large edit (measured on N2,9: once 16-deep leaves
    # joined, the mean pull jumped from 0 to 326 spreads, preservation rose 10x and new counterexamples appeared);
    # such leaves are left to refinement
    with torch.no_grad():
        reach = box_distance(flo[len(points):nt], fhi[len(points):nt], type(proxies)(
            proxies.lo[len(points):nt], proxies.hi[len(points):nt], proxies.certified[len(points):nt]), scale).sqrt()
    tgt = torch.cat([torch.arange(len(points)), len(points) + torch.nonzero(reach <= cfg.target_reach).squeeze(1)])
    n_use = len(tgt)
    hold_cap = 4 * cfg.batch_size
    last = {}
    for step in range(cfg.steps):
        h_sel = torch.randperm(len(hold), generator=gen)[:hold_cap] if len(hold) else torch.zeros(0, dtype=torch.long)
        use = torch.cat([tgt, nt + h_sel])
        lo, hi = feats(use)
        sub = type(proxies)(proxies.lo[use], proxies.hi[use], proxies.certified[use])
        dist = box_distance(lo, hi, sub, scale)
        # square root per item: every item pulls with a bounded force, so a few loose leaves far from
        # their proxy boxes cannot dominate the edit (still zero exactly inside the box)
        d_rep = (dist[:n_use] + 1e-12).sqrt().mean() if n_use else dist.new_zeros(())
        d_hold = dist[n_use:].mean() if len(h_sel) else dist.new_zeros(())
        b = torch.randint(len(preserve_x), (cfg.batch_size,), generator=gen)
        keep = preservation(state.net(preserve_x[b]), preserve_y[b], y_var, state.argmin)
        loss = d_rep + d_hold + cfg.preserve_weight * keep
        opt.zero_grad()
        loss.backward()
        opt.step()
        last = {"distance": float(d_rep.detach()), "hold": float(d_hold.detach()), "preserve": float(keep.detach()),
                "steps": step + 1}
        if float(dist.max().detach()) == 0.0:
            break
    last["proxy_certified"] = int(proxies.certified.sum())
    last["far_leaves"] = int((reach > cfg.target_reach).sum())
    return last
