"""Point-wise ProRepair: each repair input gets a proxy box around its feature; the edit layers of ``h``
are trained until every feature lies in its box (then the frozen head provably outputs the right label
for it), with the preservation term on clean inputs."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from ..._progress import progress
from .config import ProRepairConfig
from .proxy import box_distance, synthesize
from .regionwise import preservation
from .spec import label_spec


def point_repair(net: nn.Sequential, split_idx: int, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor,
                 clean_x: torch.Tensor, clean_y: torch.Tensor, cfg: ProRepairConfig, log) -> dict:
    """Train ``params`` of ``net`` in place; returns the run record (rounds, distances, seconds)."""
    start = time.monotonic()
    h = nn.Sequential(*list(net)[:split_idx]).eval()
    g = nn.Sequential(*list(net)[split_idx:]).eval()
    n_out = net(x[:1]).shape[1]
    spec = label_spec(y, n_out)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        scale = h(clean_x[:2048]).flatten(1).std(0).mean().clamp(min=1e-6)
        clean_logits = net(clean_x)
        y_var = clean_logits.var(0).mean().clamp(min=1e-12)
    record = {"rounds": [], "status": "budget"}
    for rnd in progress(range(cfg.max_rounds), desc="prorepair: rounds", total=cfg.max_rounds):
        with torch.no_grad():
            z = h(x).flatten(1)
            ok = (net(x).argmax(1) == y)
        boxes = synthesize(g, spec, z, z, margin=cfg.proxy_margin * float(scale), iters=cfg.dykstra_iters,
                           steps=cfg.growth_steps)
        with torch.no_grad():
            inside = box_distance(z, z, boxes) == 0
        row = {"round": rnd, "correct": int(ok.sum()), "inside_proxy": int(inside.sum()), "items": len(x),
               "proxy_certified": int(boxes.certified.sum()), "seconds": round(time.monotonic() - start, 2)}
        if bool(inside.all() & ok.all()) or time.monotonic() - start > cfg.time_budget:
            record["status"] = "repaired" if bool(ok.all()) else "budget"
            record["rounds"].append(row)
            break
        for _ in range(cfg.steps):
            b = torch.randint(len(x), (min(cfg.batch_size, len(x)),), generator=gen)
            zb = h(x[b]).flatten(1)
            sub = type(boxes)(boxes.lo[b], boxes.hi[b], boxes.certified[b])
            dist = (box_distance(zb, zb, sub, scale) + 1e-12).sqrt().mean()
            c = torch.randint(len(clean_x), (cfg.batch_size,), generator=gen)
            out = net(clean_x[c])
            keep = (F.cross_entropy(out, clean_y[c]) if cfg.preserve == "labels"
                    else preservation(out, clean_logits[c], y_var, argmin=False))
            loss = dist + cfg.preserve_weight * keep
            opt.zero_grad()
            loss.backward()
            opt.step()
        row["distance"] = float(dist.detach())
        row["preserve"] = float(keep.detach())
        record["rounds"].append(row)
        log(row)
    record["seconds"] = time.monotonic() - start
    return record
