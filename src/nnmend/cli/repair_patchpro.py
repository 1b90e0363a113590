"""``nnmend repair --method patchpro``: options, runner and summary for the shared repair command.

    nnmend repair --method patchpro MODEL --property P.vnnlib --out OUT.pt
    nnmend repair --method patchpro MODEL --robustness SAMPLES.pt --eps R --out OUT.pt

``SAMPLES.pt`` is a weights-only torch file ``{"x": (n, *in_shape) in [0, 1], "y": (n,) labels}``
(optionally ``"wrong"`` (n,): the patch tags' wrong labels). Writes ``OUT.pt`` (checkpoint),
``OUT.onnx`` (piecewise-linear: exact on the region boxes, written by the shared command),
``OUT.certificate.json`` and the report ``OUT.json`` — only when the harness
(:func:`nnmend.repair.run`) proved every property on the saved network, or with ``--keep-failed``. A property
the network already satisfies is reported and nothing is written; one left unproved is reported with the
open boxes.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..errors import DataError, PropertyError
from ._common import add_option_once


_add_once = add_option_once


def options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("patchpro (paper 002: provable patches, box indicator, CROWN safety distance)")
    _add_once(g, "--property", type=Path, metavar="P.vnnlib", help="safety property (VNN-LIB) to repair")
    _add_once(g, "--robustness", type=Path, metavar="SAMPLES.pt",
              help='local robustness around samples: a torch file {"x": (n, ...), "y": (n,)}')
    _add_once(g, "--eps", type=float, help="L∞ radius for --robustness")
    g.add_argument("--patchpro-preset", choices=("auto", "mnist", "acasxu"), default="auto",
                   help="hyper-parameters: auto = acasxu for --property, mnist for --robustness")
    g.add_argument("--patchpro-epochs", type=int, default=None, metavar="N", help="override max epochs")
    g.add_argument("--patchpro-max-boxes", type=int, default=None, metavar="N", help="override the box budget")
    g.add_argument("--patchpro-initial-boxes", type=int, default=None, metavar="N",
                   help="override the pre-split box count (acasxu preset: 5000; 300 is much faster)")
    g.add_argument("--feature-layer", default=None, metavar="K|NAME",
                   help="repair in feature space: cut the Sequential at this index or module name")
    g.add_argument("--feature-box", choices=("bounds", "empirical"), default="bounds",
                   help="feature box from sound bounds (default) or sampled min/max (NOT a proof)")


def _problem(args: argparse.Namespace, network):
    from ..properties import LocalRobustness, read_property

    if (args.property is None) == (args.robustness is None):
        raise DataError("patchpro: give exactly one of --property P.vnnlib or --robustness SAMPLES.pt")
    if args.property is not None:
        if args.eps is not None:
            raise DataError("patchpro: --eps belongs to --robustness, not to --property")
        return read_property(args.property)
    if args.eps is None:
        raise DataError("patchpro: --robustness needs --eps R (the L∞ radius)")
    path = args.robustness
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:                  # corrupt or not weights-only: refuse with the reason
        raise DataError(f"{path}: not a readable weights-only torch file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
        raise DataError(f'{path}: expected a dict with keys "x" (n, ...) and "y" (n,); got '
                        f"{sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
    x, y = torch.as_tensor(obj["x"]).float(), torch.as_tensor(obj["y"]).long().reshape(-1)
    if x.shape[0] != len(y) or len(y) == 0:
        raise DataError(f'{path}: "x" has {x.shape[0]} samples but "y" has {len(y)} labels')
    return [LocalRobustness(xi, float(args.eps), int(yi)) for xi, yi in zip(x, y)]


def run(args: argparse.Namespace, network):
    from ..repair import run as harness
    from ..repair.patchpro import PatchProConfig

    problem = _problem(args, network)
    preset = args.patchpro_preset
    if preset == "auto":
        preset = "acasxu" if args.property is not None else "mnist"
    overrides = {"seed": args.seed}
    for key, value in (("max_epochs", args.patchpro_epochs), ("max_boxes", args.patchpro_max_boxes),
                       ("initial_boxes", args.patchpro_initial_boxes)):
        if value is not None:
            overrides[key] = value
    if args.feature_layer is not None:
        layer = args.feature_layer
        overrides.update(feature_layer=int(layer) if layer.lstrip("-").isdigit() else layer, feature_box=args.feature_box)
    config = (PatchProConfig.acasxu if preset == "acasxu" else PatchProConfig.mnist)(**overrides)
    from .repair import overrides

    result = harness("patchpro", network, problem, config, seed=args.seed, **overrides(args, "patchpro"))
    d = result.details
    cert = {"verified": result.verified, "regions": d["n_regions"], "boxes": d.get("boxes"), "open_boxes": d.get("n_open"),
            "recheck_on_saved_network": result.certificate, "feature_box": d.get("feature_box"),
            "already_satisfied": d.get("already_satisfied")}
    report = {"method": "patchpro", "preset": preset, "seconds": round(result.seconds, 3), "patchpro": cert,
              "details": {k: v for k, v in d.items() if k not in ("history", "partition")},
              "history": d.get("history", [])}
    if d.get("already_satisfied"):
        return None, report                                 # nothing to repair, nothing written
    report["_files"] = {".certificate.json": json.dumps(cert, indent=2, default=str)}
    return result, report


def summary(report: dict) -> list[str]:
    c = report["patchpro"]
    if c.get("already_satisfied"):
        return [f"patchpro: the network already satisfies every property (proved by sound bounds on {c['boxes']} boxes); "
                "nothing was repaired and nothing written"]
    rec = c.get("recheck_on_saved_network") or {}
    lines = [f"patchpro ({report['preset']} preset): {c['regions']} region(s), {c['boxes']} boxes, {c['open_boxes']} open "
             f"after training, {report['seconds']:.1f} s; re-check on the saved network: {rec.get('verified')}/"
             f"{rec.get('regions')} verified" + (f", {rec.get('overlaps_verified')}/{rec.get('overlaps')} overlaps"
                                                  if rec.get("overlaps") else "")]
    for b in (report["details"].get("open_boxes") or [])[:5]:
        lines.append(f"  open box: region {b['region']} lo={[round(v, 4) for v in b['lo'][:5]]} "
                     f"hi={[round(v, 4) for v in b['hi'][:5]]}")
    if c.get("feature_box"):
        lines.append(f"  feature box: {c['feature_box']}")
    return lines


__all__ = ["options", "run", "summary", "PropertyError"]
