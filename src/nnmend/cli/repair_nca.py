"""Command-line glue for NCA repair (no method logic): loading rules and masks, the runner of
``nnmend repair --method nca`` (through the harness, :func:`nnmend.repair.run`) and ``cli_repair``.

``cli_repair(args)`` is what the shared ``nnmend repair --method nca`` dispatcher calls. It reads
``args.model`` (tampered network), ``args.rule`` (rule checkpoint), ``args.out``, and optionally
``args.layer`` (default: the layer the rule was trained for), ``args.mask`` (trusted mask file:
True/1 = trusted; informed mode), ``args.steps`` and ``args.seed``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, RepairError
from ..io import load_checkpoint, load_network, save_network
from ..repair import run as harness
from ..repair.nca import NCAProblem, NCARepairConfig, NCARule, storage_bytes


def load_rule(path: str | Path) -> NCARule:
    """Load a rule checkpoint written by ``nnmend nca train`` (weights-only)."""
    model = load_checkpoint(path).model
    if not isinstance(model, NCARule):
        raise ModelError(f"{path}: not an NCA rule (it holds a {type(model).__name__}); "
                         "make one with `nnmend nca train`")
    return model


def load_mask(path: str | Path) -> torch.Tensor:
    """A trusted mask from ``.npy`` or a weights-only ``.pt`` (a tensor, or a dict with key ``mask``)."""
    path = Path(path)
    if not path.exists():
        raise RepairError(f"{path}: mask file not found")
    try:
        if path.suffix.lower() == ".npy":
            mask = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            mask = obj.get("mask") if isinstance(obj, dict) else obj
    except Exception as exc:  # unreadable file of any kind → one clear line
        raise RepairError(f"{path}: cannot read the mask ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(mask, torch.Tensor):
        raise RepairError(f"{path}: expected a tensor (or a dict with key 'mask'), got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        if not torch.isin(mask.float().unique(), torch.tensor([0.0, 1.0])).all():
            raise RepairError(f"{path}: a trusted mask must hold only 0/1 or booleans")
        mask = mask.bool()
    return mask


def run_repair(args: Any):
    """Repair ``args.model`` with the rule ``args.rule``; returns the harness's result and a JSON-able report.

    Reads ``args.rule``, optional ``args.layer`` (default: the rule's layer), ``args.mask`` (trusted
    mask: True/1 = trusted; informed mode), ``args.steps``, ``args.seed``. Writes nothing.
    """
    rule_path = getattr(args, "rule", None)
    if not rule_path:
        raise RepairError("--method nca needs --rule RULE (train one with `nnmend nca train`)")
    rule = load_rule(rule_path)
    network = load_network(args.model, allow_nonfinite=True)  # NaN/Inf weights are repaired, not refused
    layer = getattr(args, "layer", None) or rule.meta.get("layer")
    if not layer:
        raise RepairError(f"{rule_path}: the rule does not name its layer; pass --layer")
    mask = load_mask(args.mask) if getattr(args, "mask", None) else None
    cfg = NCARepairConfig(steps=getattr(args, "steps", None), seed=getattr(args, "seed", None) or 0)
    from .repair import overrides

    result = harness("nca", network, NCAProblem(layer, rule, mask), cfg, **overrides(args, "nca"))
    d = result.details
    report = {"method": "nca", "mode": d["mode"], "layer": layer, "steps": d["steps"],
              "seconds": round(result.seconds, 3), "nonfinite_cells": d["nonfinite_cells"],
              "storage": storage_bytes(rule), "regenerated_fraction": round(d["regenerated_fraction"], 6),
              "shrink_alpha": round(d["shrink_alpha"], 4), "out": str(args.out)}
    if d["mode"] == "blind":
        report["cells_flagged"] = int(d["detected"].sum())
    return result, report


def cli_repair(args: Any) -> int:
    """``nnmend repair --method nca MODEL --rule RULE [--mask MASK] [--layer L] [--steps N] --out OUT``."""
    result, report = run_repair(args)
    save_network(result.network, args.out)
    print(json.dumps(report, indent=2))
    return 0
