"""``nnmend repair --method METHOD MODEL ...``: one command for every repair method.

The command parses, dispatches on ``--method``, and prints; it holds no method logic. Each method has an
option group and a runner in ``_METHODS``; a runner builds the method's problem and config from the
options and calls the harness, :func:`nnmend.repair.run`, which alone decides success on the saved and
reloaded network; it returns that :class:`RepairResult` and a JSON-able report. The harness's verdict is
printed first. A repair that failed its target is not written (exit 1) unless ``--keep-failed``. Nothing
is written until the repair and its evaluation have finished; then every file (network, report, exports,
certificate) is staged in one folder beside ``--out`` and moved into place together. No output may
replace an input, and an existing one is replaced only with ``--force``. Beside ``OUT.pt`` goes ``OUT.onnx``,
the repaired network as piecewise-linear ONNX operators (:mod:`nnmend.repair.export_pwl`, which Marabou and
``nnmend verify`` read); a network that cannot be written so gets one line saying why and no ``OUT.onnx``
(``--no-onnx`` skips it).

Example::

    nnmend repair --method nnrepair mnist_poisoned --layer fc2 --scenario poisoned --out fixed.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from ..errors import DataError, ModelError, NnmendError
from ..io import save_network
from ..io.atomic import atomic_write, staged_outputs
from ..report import report_html
from ._common import NETWORK_SUFFIXES, add_force_arg, add_option_once, check_outputs, check_suffix, load_model, reading

# every registered method (nnmend.repair.methods(); the parser does not import them) and the old SHNN alias
METHODS = ("patch_layer", "shnn", "shnn_adversarial", "nnrepair", "patchpro", "prorepair", "nca", "guard")


def _load_model(spec: str):
    """A checkpoint path, or the name of a model shipped with nnmend."""
    from ..nets import pretrained

    path = Path(spec)
    if path.suffix or path.exists():
        return load_model(path)
    return pretrained(spec)


# --- nnrepair ---------------------------------------------------------------------------------------
def _nnrepair_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("nnrepair (paper 004: constraint solving per class, experts); options left out take "
                                  "NNRepairConfig's defaults, the settings benchmarks/results/nnrepair.md measured best")
    g.add_argument("--scenario", default="accuracy", choices=("accuracy", "poisoned", "adversarial"),
                   help="repair data and scoring sets (default accuracy)")
    g.add_argument("--strategy", default=None, choices=("naive", "confidence", "voting", "merged"))
    g.add_argument("--f1-filter", action=argparse.BooleanOptionalAction, default=None,
                   help="keep only experts whose F1 beats the original's")
    g.add_argument("--mode", default=None, choices=("auto", "hard", "soft", "maxsat"))
    g.add_argument("--objective", default=None, choices=("l1", "linf"))
    g.add_argument("--on-infeasible", default=None, choices=("error", "soft"))
    g.add_argument("--non-interference", type=int, default=None, metavar="N",
                   help="passing inputs of other classes whose decision must not change (paper: 0)")
    g.add_argument("--decision-rows", action=argparse.BooleanOptionalAction, default=None,
                   help="intermediate layer: also require the decision")
    g.add_argument("--extra-clean", type=int, default=None, metavar="N", help="extra passing inputs from clean Train")
    g.add_argument("--last-failing", type=int, default=None, metavar="N", help="last layer: failing inputs per expert")
    g.add_argument("--last-edges", type=int, default=None, metavar="N", help="last layer: symbolic edges per expert")
    g.add_argument("--edge-fraction", type=float, default=None, help="intermediate: share of incoming edges")
    g.add_argument("--paper", action="store_true", help="start from the paper's settings (NNRepairConfig.paper())")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use only the first N training and test images (quick runs)")
    add_option_once(g, "--data", default="mnist", metavar="DATA",
                    help="mnist | fashion-mnist | cifar10 | sign-mnist | a path (IDX dir, .npz): the repair and "
                         "test images (default mnist)")


def _nnrepair_run(args: argparse.Namespace, network) -> tuple[object, dict]:
    from ..data import load_dataset
    from ..repair import run as harness
    from ..repair.nnrepair import NNRepairConfig, build_scenario
    from ..repair.nnrepair.scenarios import evaluate

    from .._validation import check_input_fits

    with reading(args.data, DataError):
        train = load_dataset(args.data, "train", limit=args.limit)
        test = load_dataset(args.data, "test", limit=args.limit)
    check_input_fits(network, test.x, what=f"network {args.model}")
    scenario = build_scenario(args.scenario, network, train=train, test=test,
                              adv_pool=min(10_000, len(train)))
    given = {k: getattr(args, k) for k in ("strategy", "f1_filter", "mode", "objective", "on_infeasible", "non_interference",
                                           "decision_rows", "extra_clean", "last_failing", "last_edges", "edge_fraction")
             if getattr(args, k) is not None}
    config = (NNRepairConfig.paper if args.paper else NNRepairConfig)(layer=args.layer or "intermediate", seed=args.seed,
                                                                       **given)
    result = harness("nnrepair", network, scenario.problem, config, test=test, seed=args.seed, **overrides(args, "nnrepair"))
    report = {"method": "nnrepair", "scenario": args.scenario, "seconds": round(result.seconds, 3),
              "evaluation": evaluate(network, result.network, scenario), "details": result.details}
    return result, report


def _nnrepair_summary(report: dict) -> list[str]:
    d, ev = report["details"], report["evaluation"]
    lines = [f"nnrepair on layer {d['layer']} ({d['layer_kind']}), scenario {report['scenario']}, "
             f"mode {d['mode']}, {report['seconds']:.1f} s"]
    for e in d["experts"]:
        if "skipped" in e:
            lines.append(f"  expert {e['label']}: skipped — {e['skipped']}")
        else:
            s = e["solver"]
            lines.append(f"  expert {e['label']}: {e['failing']} failing + {e['passing']} passing inputs, "
                         f"{s['target_rows_satisfied']}/{s['target_rows']} constraints, {s['nonzero']} deltas "
                         f"({s['at_bound']} on the bound), {e['seconds']:.2f} s [{s['mode']}]")
    for name, row in ev.items():
        lines.append(f"  {name}: {100 * row['original']:.2f}% -> {100 * row['repaired']:.2f}% "
                     f"({100 * (row['repaired'] - row['original']):+.2f} pp)")
    return lines


# --- nca ---------------------------------------------------------------------------------------------
def _nca_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("nca (paper 001: a neural cellular automaton regrows a tampered layer)")
    g.add_argument("--rule", metavar="RULE", help="rule checkpoint from `nnmend nca train` (required for nca)")
    g.add_argument("--mask", metavar="MASK", help="trusted-cell mask (.npy or .pt, 1 = trusted): informed mode; "
                   "without it the automaton repairs blind")
    g.add_argument("--steps", type=int, default=None, help="update steps (default: the rule's training horizon)")


def _nca_run(args: argparse.Namespace, network) -> tuple[object, dict]:
    from .repair_nca import run_repair

    return run_repair(args)


def _nca_summary(report: dict) -> list[str]:
    line = (f"nca ({report['mode']}) on layer {report['layer']}: {report['steps']} steps, {report['seconds']:.2f} s, "
            f"rule storage {report['storage']}")
    if "cells_flagged" in report:
        line += f", {report['cells_flagged']} cells flagged as corrupted"
    return [line]


def _patchpro_entry() -> tuple[Callable, Callable, Callable]:
    from . import repair_patchpro as patchpro_cli

    return patchpro_cli.options, patchpro_cli.run, patchpro_cli.summary


# --- prorepair ---------------------------------------------------------------------------------------
_add_once = add_option_once


def _prorepair_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("prorepair (paper 003: proxy boxes in feature space, property refinement)")
    _add_once(g, "--property", type=Path, metavar="P.vnnlib", help="region-wise: repair until this property is proved")
    g.add_argument("--points", type=Path, metavar="SAMPLES.pt", help="point-wise: a .pt with 'x' (N, ...) and 'y' (N,) "
                   "(correct labels); optional 'clean_x', 'clean_y' for the preservation term")
    g.add_argument("--split-layer", default=None, help="first layer of the frozen head g (default: the last Linear)")
    g.add_argument("--edit-layers", nargs="*", default=None, help="layers of h to edit (default: h's last weight layer)")
    g.add_argument("--budget", type=float, default=600.0, help="repair seconds (default 600)")
    g.add_argument("--decision", choices=("argmax", "argmin"), default=None,
                   help="decision rule to preserve (ACAS Xu: argmin; default: from the model's metadata, else argmax)")
    g.add_argument("--solver", choices=("auto", "closed_form", "adam"), default="auto",
                   help="point-wise edit: closed-form minimal-disturbance dual QP (Linear edit layers, affine head), "
                        "Adam on the proxy-box loss, or auto (closed form where it applies)")
    g.add_argument("--preserve-weight", type=float, default=None,
                   help="weight of the preservation term (default: ProRepairConfig's; the ACAS Xu benchmark: 100)")
    g.add_argument("--fallback", choices=("guard",), default=None,
                   help="region-wise: if the repair is not proved, add an output guard (nnmend.repair.guard, not part "
                        "of the paper) and certify again")
    g.add_argument("--proxy-margin", type=float, default=None,
                   help="distance proxy boxes keep from the head's decision boundary, in units of the clean "
                        "features' spread (default: ProRepairConfig's; the ACAS Xu benchmark: 0.03)")


def _prorepair_points(path: Path, network):
    import torch

    with reading(path, DataError):
        blob = torch.load(path, weights_only=True)
    if not isinstance(blob, dict) or "x" not in blob or "y" not in blob:
        raise DataError(f"{path}: expected a dict with keys 'x' and 'y'")
    x, y = blob["x"], blob["y"]
    if "clean_x" in blob and "clean_y" in blob:
        return x, y, blob["clean_x"], blob["clean_y"]
    from ..data import load_dataset

    clean = load_dataset("mnist", "train", limit=1000)
    if tuple(clean.x.shape[1:]) != tuple(x.shape[1:]):
        raise DataError(f"{path}: no 'clean_x'/'clean_y' and the inputs {tuple(x.shape[1:])} are not MNIST-shaped; "
                        "add clean samples to the file")
    return x, y, clean.x, clean.y


def _prorepair_run(args: argparse.Namespace, network) -> tuple[object, dict]:
    from ..properties import read_property
    from ..repair import run as harness
    from ..repair.prorepair import PointProblem, ProRepairConfig, RegionProblem

    if (args.property is None) == (args.points is None):
        raise NnmendError("prorepair: give exactly one of --property P.vnnlib (region-wise) or --points SAMPLES.pt "
                          "(point-wise)")
    tuned = {k: v for k, v in (("preserve_weight", args.preserve_weight), ("proxy_margin", args.proxy_margin))
             if v is not None}
    cfg = ProRepairConfig(split_layer=args.split_layer, edit_layers=tuple(args.edit_layers) if args.edit_layers else None,
                          time_budget=args.budget, seed=args.seed, decision=args.decision, solver=args.solver,
                          fallback=args.fallback, **tuned)
    if args.property is not None:
        problem = RegionProblem(read_property(args.property))
    else:
        problem = PointProblem(*_prorepair_points(args.points, network))
    result = harness("prorepair", network, problem, cfg, seed=args.seed, **overrides(args, "prorepair"))
    d = result.details
    report = {"method": "prorepair", "mode": "region" if args.property is not None else "point",
              "seconds": round(result.seconds, 3),
              "details": {k: v for k, v in d.items() if k not in ("rounds", "partition")}, "rounds": d.get("rounds", [])}
    if "partition" in d:              # the leaves, so the certificate can be recomputed from the saved files
        from ..repair.prorepair.certificate import save_partition

        def write_partition(out: Path) -> list[str]:
            path = out.with_suffix(".partition.pt")
            save_partition(d["partition"], path)
            return [str(path)]

        report["_before_save"] = write_partition
    return result, report


def _prorepair_summary(report: dict) -> list[str]:
    d = report["details"]
    if d.get("already_satisfied"):
        return [f"prorepair: {d['message']}"]
    head = (f"prorepair ({report['mode']}-wise): split at {d['split_layer']}, edited {', '.join(d['edit_layers'])} "
            f"({d['edited_parameters']} parameters), {report['seconds']:.1f} s")
    lines = [head]
    if report["mode"] == "region":
        cert, own = report["certificate"], d["certificate"]
        lines.append(f"  repair loop's own check: {own['status']} ({own['seconds']:.1f} s); {d['leaves']} leaves")
        lines.append(f"  certificate on the saved network (harness): {cert['status']} ({cert['seconds']:.1f} s)")
        fb = d.get("fallback")
        if fb:
            lines.append(f"  not proved by the repair; output guard fallback: {fb['certificate']['status']} "
                         f"({fb['certificate']['seconds']:.1f} s, +{fb['parameters_added']} parameters)")
        if report["verified"]:
            lines.append("  VERIFIED: the property holds on the repaired network"
                         + (" (with the output guard)" if fb and fb["verified"] else ""))
        else:
            lines.append("  NOT verified within the budget; nothing is called verified")
            for r in d.get("unproven_regions", [])[:10]:
                lines.append(f"    unproven leaf lo={[round(v, 5) for v in r['lo']]} hi={[round(v, 5) for v in r['hi']]}")
    else:
        lines.append(f"  repair inputs correct on the saved network: {report['metrics']['rsr']:.1f}% "
                     f"(wrong before: {d['wrong_before']}; solver: {d.get('solver', '?')})")
    return lines


# --- guard (not from the papers: provable-by-construction output guard, a baseline and last resort) ---------
def _guard_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("guard (output guard for region properties; holds by construction, then proved)")
    _add_once(g, "--property", type=Path, metavar="P.vnnlib", help="region-wise: repair until this property is proved")
    g.add_argument("--target", type=int, default=None, help="guard: output index the guard moves (default: the first "
                   "that fits every disjunct)")
    g.add_argument("--margin", type=float, default=None, help="guard: output margin ε (default 1e-4)")
    g.add_argument("--certify-timeout", type=float, default=None, help="guard: seconds for the proof (default 60)")
    g.add_argument("--domain-lo", default=None, metavar="V,V,...", help="guard: input domain lower corner, comma-separated, "
                   "e.g. --domain-lo=-0.5,-0.5 (default: the .nnet header's range; required for other networks)")
    g.add_argument("--domain-hi", default=None, metavar="V,V,...", help="guard: input domain upper corner")


def _guard_run(args: argparse.Namespace, network) -> tuple[object, dict]:
    from ..properties import read_property
    from ..repair import run as harness
    from ..repair.guard import GuardConfig, GuardProblem

    if args.property is None:
        raise NnmendError("guard: give the property to guard with --property P.vnnlib")
    tuned = {k: v for k, v in (("margin", args.margin), ("certify_timeout", args.certify_timeout)) if v is not None}
    domain = None
    if (args.domain_lo is None) != (args.domain_hi is None):
        raise NnmendError("guard: give both --domain-lo and --domain-hi, or neither")
    if args.domain_lo is not None:
        import torch

        try:
            domain = tuple(torch.tensor([float(v) for v in s.split(",")]) for s in (args.domain_lo, args.domain_hi))
        except ValueError:
            raise NnmendError(f"guard: --domain-lo/--domain-hi must be comma-separated numbers, got "
                              f"{args.domain_lo!r} / {args.domain_hi!r}") from None
    problem = GuardProblem(read_property(args.property), target=args.target, domain=domain)
    result = harness("guard", network, problem, GuardConfig(**tuned), seed=args.seed, **overrides(args, "guard"))
    report = {"method": "guard", "seconds": round(result.seconds, 3), "details": result.details}
    return result, report


def _guard_summary(report: dict) -> list[str]:
    d = report["details"]
    if d.get("already_satisfied"):
        return [f"guard: {d['message']}"]
    moves = "; ".join(f"{t['direction']} output {t['output']} against {t['partners']}" for t in d["targets"])
    cert = report["certificate"]
    lines = [f"guard: {moves} (+{d['parameters_added']} parameters, margin {d['margin']:g}), {report['seconds']:.1f} s",
             f"  certificate on the saved network: {cert['status']} ({cert['seconds']:.1f} s)"]
    lines.append("  VERIFIED: the property holds on the guarded network" if report["verified"]
                 else "  NOT verified within the budget; nothing is called verified")
    return lines


# name -> (add options, run, summary); methods not listed are reserved for their owners.
# A runner returns ``(result, report)``: the harness's RepairResult (``None``: nothing to write) and the
# method's report; the harness's record (verdict, success, verified, metrics, certificate) is added here. Optional report keys, consumed here: ``_before_save`` (callable(out path)
# run before the checkpoint is written, e.g. an ONNX export; it receives the staged path and writes its
# files beside it) and ``_files`` ({suffix: text} written beside the checkpoint).
_METHODS: dict[str, tuple[Callable, Callable, Callable]] = {
    "nnrepair": (_nnrepair_options, _nnrepair_run, _nnrepair_summary),
    "nca": (_nca_options, _nca_run, _nca_summary),
    "patchpro": _patchpro_entry(),
    "prorepair": (_prorepair_options, _prorepair_run, _prorepair_summary),
    "guard": (_guard_options, _guard_run, _guard_summary),
}
# methods that read the model themselves (e.g. to allow NaN weights in a tampered layer)
_LOADS_OWN_MODEL = {"nca"}


def register(subparsers) -> None:
    p = subparsers.add_parser("repair", help="repair a network with one of nnmend's methods",
                              description=__doc__.splitlines()[0])
    p.add_argument("model", metavar="MODEL", help="a .pt/.onnx/.nnet file or the name of a bundled model")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--out", required=True, type=Path, help="where to write the repaired network (.pt); the "
                   "report goes beside it as .json")
    add_force_arg(p)
    p.add_argument("--no-onnx", action="store_true",
                   help="do not write OUT.onnx (by default the repaired network is also written beside --out as an "
                        "ONNX of piecewise-linear operators that Marabou and `nnmend verify` read)")
    p.add_argument("--keep-failed", action="store_true",
                   help="write the repaired network even when the harness says it failed its target (exit code 1 stays)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="set any field of the method's config dataclass (repeatable; e.g. --option lr=0.01 "
                        "--option edit_layers=fc1,fc2 --option fallback=none); the fields and their defaults are "
                        "listed by `python -c 'from nnmend.repair import get; print(get(\"guard\").options())'`")
    from ..marabou import available

    p.add_argument("--external", choices=("marabou", "none"), default="marabou" if available() else "none",
                   help="re-prove every proved region or ball with Marabou on the network's piecewise-linear ONNX "
                        "export (default: marabou when maraboupy is installed); a counterexample fails the repair")
    p.add_argument("--external-timeout", type=float, default=60.0, metavar="S",
                   help="seconds for all of Marabou's calls together (default 60; ACAS Xu guard and PatchPro "
                        "re-proofs took 11-58 s in benchmarks/results/external_proof.md)")
    p.add_argument("--layer", default=None, help="layer to repair (method-specific default: nnrepair "
                   "'intermediate'; nca the rule's layer); nnrepair also takes 'intermediate' or 'last'")
    for add, _, _ in _METHODS.values():
        add(p)
    p.set_defaults(func=run)


# files a method writes beside --out (suffix replaced), besides the report .json; the staged commit
# re-checks the files actually written, so a method that adds one cannot slip past the output policy
_SIBLINGS: dict[str, tuple[str, ...]] = {"patchpro": (".certificate.json",), "prorepair": (".partition.pt",)}
_INPUT_OPTIONS = ("rule", "mask", "property", "points", "robustness")


def _inputs(args: argparse.Namespace) -> dict[str, object]:
    """Every file the repair reads, by role."""
    found = {"MODEL": args.model}
    found.update({f"--{name}": getattr(args, name, None) for name in _INPUT_OPTIONS})
    return found


def _outputs(args: argparse.Namespace) -> dict[Path, str]:
    """Every file the repair may write, with its role."""
    out = Path(args.out)
    outputs = {out: "--out", out.with_suffix(".json"): "the report beside --out",
               out.with_suffix(".html"): "the report page beside --out"}
    outputs.update({out.with_suffix(s): "written beside --out" for s in _SIBLINGS.get(args.method, ())})
    if not getattr(args, "no_onnx", False):
        outputs[out.with_suffix(".onnx")] = "the piecewise-linear ONNX beside --out (--no-onnx skips it)"
    return outputs


def _input_shape(*networks) -> tuple[int, ...] | None:
    """The per-sample input shape the first of ``networks`` records, else a dense network's input size."""
    from ..io.onnx import _dense_input_shape

    for net in networks:
        shape = getattr(net, "nnmend_input_shape", None) or (getattr(net, "nnmend_meta", None) or {}).get("input_shape")
        if shape:
            return tuple(int(d) for d in shape)
    return next((s for s in map(_dense_input_shape, networks) if s), None)


def _write_pwl_onnx(network, path: Path, input_shape=None) -> dict:
    """Write ``network``'s piecewise-linear ONNX to ``path``; ``{"written", "exact", "note", "ops"}`` or, where it
    cannot be written so, ``{"written": False, "why": one line}`` and no file."""
    from ..repair.export_pwl import onnx_ops, save_pwl_onnx, to_pwl

    try:
        export = to_pwl(network)
        save_pwl_onnx(export, path, input_shape)
    except ModelError as exc:                 # NotExpressible (names the module or operator), or no input shape
        path.unlink(missing_ok=True)
        return {"written": False, "why": str(exc).splitlines()[0].replace(f"{path}: ", "")}
    return {"written": True, "exact": export.exact, "note": export.note, "ops": sorted(onnx_ops(path))}


def _preflight_nca(args: argparse.Namespace) -> None:
    """Read the nca inputs once through the command line's guard, so a bad file is one line naming it.

    The nca runner loads them itself; this can go once the checkpoint loader maps every failure.
    """
    from ..errors import RepairError
    from .repair_nca import load_mask, load_rule

    load_model(args.model, allow_nonfinite=True)
    if getattr(args, "rule", None):
        with reading(args.rule, ModelError):
            load_rule(args.rule)
    if getattr(args, "mask", None):
        with reading(args.mask, RepairError):
            load_mask(args.mask)


def run(args: argparse.Namespace) -> int:
    if args.method in ("patch_layer", "shnn", "shnn_adversarial"):
        raise NnmendError("SHNN patch layers have their own command: `nnmend heal MODEL --reference CLEAN "
                          "--layer auto --out OUT` (structural) or `nnmend heal MODEL --adversarial pgd --out OUT`")
    if args.method not in _METHODS:
        raise NnmendError(f"--method {args.method} is not available in this build yet "
                          f"(available: {', '.join(_METHODS)})")
    inputs, outputs = _inputs(args), _outputs(args)
    check_outputs(inputs, outputs, args.force)
    check_suffix(args.out, "--out", NETWORK_SUFFIXES)
    _, runner, summary = _METHODS[args.method]
    if args.method in _LOADS_OWN_MODEL:
        _preflight_nca(args)
    network = None if args.method in _LOADS_OWN_MODEL else _load_model(args.model)
    result, report = runner(args, network)
    before, files = report.pop("_before_save", None), report.pop("_files", {})
    if result is not None:
        report.update(_harness_record(result))
        print(result.verdict)                                  # the verdict first
    if result is None or report.get("details", {}).get("already_satisfied"):
        print("\n".join(summary(report)))
        if report.get("details", {}).get("already_satisfied"):
            print(f"nothing written: {args.model} already satisfies the specification")
        return 0
    failed = result.success is False
    if failed and not args.keep_failed:
        print("\n".join(summary(report)))
        print("nothing written: the repair failed its target (see the verdict above); --keep-failed writes it anyway")
        return 1
    repaired = result.network

    def recheck(paths: list[Path]) -> None:
        check_outputs(inputs, {p: outputs.get(p, "written beside --out") for p in paths}, args.force)

    # every file goes to one staging folder and moves into place together: a kill leaves the old set or the new
    with staged_outputs(args.out.parent, check=recheck) as stage:
        out = stage / args.out.name
        if before is not None:
            before(out)
        if not args.no_onnx:
            report["onnx"] = _write_pwl_onnx(repaired, out.with_suffix(".onnx"), _input_shape(repaired, network))
        save_network(repaired, out)
        text = json.dumps(report, indent=2, default=str)
        for suffix, content in files.items():
            with atomic_write(out.with_suffix(suffix), "w") as fh:
                fh.write(content)
        with atomic_write(out.with_suffix(".json"), "w") as fh:
            fh.write(text)
        with atomic_write(out.with_suffix(".html"), "w") as fh:     # the same report as one self-contained page
            fh.write(report_html(report, f"nnmend repair --method {args.method}: {args.out.name}"))
        names = sorted(p.name for p in stage.iterdir() if p.name != args.out.name)
    print("\n".join(summary(report)))
    pwl = report.get("onnx")
    if pwl is not None:
        print(f"piecewise-linear ONNX: {pwl['note']}" if pwl["written"] else
              f"no {args.out.with_suffix('.onnx').name} written: {pwl['why']}")
    print(f"wrote {args.out}, " + ", ".join(str(args.out.parent / n) for n in names)
          + (" (--keep-failed: the repair FAILED its target)" if failed else ""))
    return 1 if failed else 0


def _as(kind: str, text: str):
    """``text`` as one annotated type; ValueError when it does not parse (or the type is not a plain one)."""
    if kind.startswith("tuple["):
        inner = kind[len("tuple["):].split(",")[0].strip().rstrip("]")
        return tuple(_as(inner, part.strip()) for part in text.split(",") if part.strip())
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(text)
        return text.lower() in ("true", "1", "yes")
    if kind in ("int", "float", "str"):
        return {"int": int, "float": float, "str": str}[kind](text)
    raise ValueError(kind)


def _parse_value(method: str, key: str, text: str, kind: str):
    """``text`` as the config field's annotated type ``kind`` (``"float | None"``, ``"int | str | None"``,
    ``"tuple[str, ...]"``): the first alternative that parses; ``none`` for an optional field."""
    kinds = [k.strip() for k in kind.split("|")]
    if text.lower() == "none" and "None" in kinds:
        return None
    for k in kinds:
        try:
            return _as(k, text)
        except ValueError:
            continue
    raise NnmendError(f"--option {key}={text}: {method}'s {key} takes {kind}")


def overrides(args: argparse.Namespace, method: str) -> dict:
    """``--option KEY=VALUE`` pairs as fields of ``method``'s registered config dataclass (typed by its annotations),
    plus the harness's ``--external`` re-proof."""
    from ..repair import get

    fields = get(method).options()
    out = {}
    for pair in getattr(args, "option", None) or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise NnmendError(f"--option {pair!r}: {method} takes KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = fields[key].type if isinstance(fields[key].type, str) else getattr(fields[key].type, "__name__", "str")
        out[key] = _parse_value(method, key, text.strip(), kind)
    if getattr(args, "external", None) is not None:      # the harness's external re-proof (--external)
        out.update(external=None if args.external == "none" else args.external, external_timeout=args.external_timeout)
    return out


def _harness_record(result) -> dict:
    """What the harness decided, for the report beside --out (metric names and units: nnmend.metrics.METRICS)."""
    from ..metrics import METRICS

    import dataclasses

    config = dataclasses.asdict(result.config) if dataclasses.is_dataclass(result.config) else None
    return {"verdict": result.verdict, "success": result.success, "verified": result.verified, "target": result.target,
            "config": config,
            "before": result.before, "after": result.after, "certificate": result.certificate,
            "metrics": result.metrics, "units": {k: METRICS[k][0] for k in result.metrics if k in METRICS}}
