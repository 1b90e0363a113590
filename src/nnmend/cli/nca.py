"""``nnmend nca train MODEL --layer NAME --out RULE``: train an NCA rule for one dense layer."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..errors import DataError
from ..io import save_checkpoint
from ._common import add_force_arg, check_outputs, check_suffix, load_model, reading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nca", help="neural cellular automata for weight repair")
    nsub = p.add_subparsers(dest="nca_command", metavar="SUBCOMMAND")
    t = nsub.add_parser("train", help="train an NCA rule on a clean layer's weights")
    t.add_argument("model", help="clean network (.pt / .onnx / .nnet)")
    t.add_argument("--layer", required=True, help="dense layer name (see named_layers)")
    t.add_argument("--out", required=True, help="where to write the rule checkpoint (.pt)")
    t.add_argument("--layout", choices=["matrix", "receptive_field", "correlation"], default=None)
    t.add_argument("--iterations", type=int, default=None)
    t.add_argument("--hidden-channels", type=int, default=None)
    t.add_argument("--width", type=int, default=None)
    t.add_argument("--dilations", type=int, nargs="+", default=None,
                   help="perception filter dilations (multi-scale; default 1 2 4; 1 = 3×3 only)")
    t.add_argument("--function-weight", type=float, default=None,
                   help="share of the loss in function space (layer outputs on --data images; default 0.7, "
                        "which needs --data; 0 trains on weights alone)")
    t.add_argument("--data", default=None, help="dataset for the function-space loss (mnist, fashion-mnist, "
                                                  "digits or a path); its training split is used")
    t.add_argument("--seed", type=int, default=0)
    add_force_arg(t)
    t.set_defaults(func=run_train)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_train(args: argparse.Namespace) -> int:
    from ..repair.nca import NCATrainConfig, storage_bytes, train_rule

    names = {f.name for f in fields(NCATrainConfig)}
    overrides = {k: v for k, v in {"layout": args.layout, "iterations": args.iterations,
                                   "hidden_channels": args.hidden_channels, "width": args.width,
                                   "seed": args.seed, "function_weight": args.function_weight,
                                   "dilations": tuple(args.dilations) if args.dilations else None}.items()
                 if v is not None and k in names}
    cfg = NCATrainConfig(**overrides)
    check_outputs({"MODEL": args.model, "--data": args.data}, {args.out: "--out"}, args.force)
    check_suffix(args.out, "--out", (".pt", ".pth"))
    network = load_model(args.model)
    data = None
    if args.data:
        from ..data import load_dataset

        with reading(args.data, DataError):
            data = load_dataset(args.data, "train", limit=cfg.function_samples).x
    rule, hist = train_rule(network, args.layer, cfg, data=data)
    save_checkpoint(rule, args.out, meta={"kind": "nca_rule", "layer": args.layer, "model": str(args.model)})
    print(json.dumps({"layer": args.layer, "layout": rule.meta["layout"], "parameters": rule.n_parameters(),
                      "storage": storage_bytes(rule), "final_loss": rule.meta["final_loss"],
                      "blind_threshold": round(rule.meta["blind_threshold"], 4),
                      "shrink": dict(zip(rule.meta["shrink"]["fractions"], (round(a, 3) for a in rule.meta["shrink"]["alpha"]))),
                      "seconds": round(hist.seconds, 1), "out": str(args.out)}, indent=2))
    return 0
