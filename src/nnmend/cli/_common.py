"""Argument groups, loaders and the output-path check shared by the commands (no method logic here).

Output policy, the same for every command: an output that is also an input (the same file, through
any path, link or a sibling the command writes beside its output) is refused; an output that exists
already is refused unless ``--force`` is given; a folder is never replaced by a file. All checks run
before any work starts and print one line naming both paths (exit 2).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Mapping

from torch import nn

from ..data import Dataset, load_dataset
from ..errors import DataError, ModelError, NnmendError, PropertyError, describe, reading  # noqa: F401 (re-export)
from ..io import load_network

NETWORK_SUFFIXES = (".pt", ".pth", ".safetensors", ".onnx", ".nnet")
FORCE_HELP = "replace output files that already exist (an input is never replaced)"


def add_option_once(group, *flags: str, **kwargs) -> None:
    """Add an option unless another repair method already registered the same flag (``--property``,
    ``--eps`` are shared by the provable methods); the first registration's help text is kept."""
    existing = getattr(group, "_option_string_actions", {})
    if any(f in existing for f in flags):
        return
    group.add_argument(*flags, **kwargs)


def add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help=FORCE_HELP)


def add_data_args(p: argparse.ArgumentParser, default_n: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="mnist", help="mnist | fashion-mnist | digits | a path (IDX dir, .npz, .mat)")
    g.add_argument("--n", type=int, default=default_n, help="use only the first N samples")


# --- reading inputs: every failure is one line naming the file ---------------------------------------------
def load_data(args: argparse.Namespace, split: str) -> Dataset:
    with reading(args.data, DataError):
        return load_dataset(args.data, split, limit=args.n if split == "test" else None)


def load_model(path: str | os.PathLike, **kwargs) -> nn.Module:
    _hint_bundled(Path(path))
    with reading(path, ModelError):
        return load_network(path, **kwargs)


def _hint_bundled(path: Path) -> None:
    """A missing file named like a bundled example (``fnn_small``, ``acasxu_2_9.onnx``): say how to get it."""
    if path.exists() or len(path.parts) > 1:
        return
    from .examples import examples

    names = {e.name for e in examples()}
    match = next((n for n in (path.name, f"{path.name}.pt") if n in names), None)
    if match:
        raise ModelError(f"{path}: file not found; it is a bundled example: `nnmend examples --out . {match}` "
                         f"copies it here")


# --- your own network: --model MODULE:CLASS --weights FILE ------------------------------------------------
USER_MODEL_HELP = ("your own network instead of a file: MODULE:ATTR names a class (or a function returning an "
                   "nn.Module) importable from the current folder, e.g. mypkg.nets:MyNet or nets.py:MyNet")
_NETWORK_POSITIONALS = ("model", "input")      # the positional that names a command's network


def _import_attr(spec: str) -> object:
    """The object ``spec`` (``module:attr``, ``module`` dotted or a ``.py`` path, ``attr`` dotted) names."""
    import importlib
    import importlib.util
    import sys

    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ModelError(f"--model {spec}: expected MODULE:ATTR, e.g. mypkg.nets:MyNet")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ModelError(f"--model {spec}: no such file {file}")
            loader = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:        # like `python -m`: the user's own modules sit in the current folder
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except NnmendError:
        raise
    except ModuleNotFoundError as exc:
        raise ModelError(f"--model {spec}: cannot import {module_name} (no module named {exc.name!r})") from None
    except BaseException as exc:           # noqa: BLE001 - the user's module failed while importing (SystemExit too)
        raise ModelError(f"--model {spec}: importing {module_name} failed ({describe(exc)})") from None
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelError(f"--model {spec}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state dict from ``.safetensors`` or a weights-only ``torch.save`` file (never unpickling objects).

    A dict that nests the weights under ``state_dict`` / ``model_state_dict`` / ``model`` is unwrapped."""
    import torch

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelError(f"{path}: reading .safetensors needs the safetensors package "
                             "(pip install safetensors)") from None
        with reading(path, ModelError):
            return dict(load_file(str(path)))
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    with reading(path, ModelError):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:           # noqa: BLE001 - the unpickler refuses anything but tensors and containers
            raise ModelError(f"{path}: not a weights-only state dict ({describe(exc)})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict (a mapping from parameter names to tensors)")
    return state


def load_user_model(spec: str, weights: str | os.PathLike | None = None) -> nn.Module:
    """Build the network ``spec`` (``module:attr``) names and load ``weights`` into it (strictly).

    ``attr`` is an ``nn.Module`` class or function called with no arguments, or a module instance. The
    class is the user's own code, imported as Python imports it; the weights are read as data only."""
    target = _import_attr(spec)
    if isinstance(target, nn.Module):
        model = target
    elif callable(target):
        try:
            model = target()
        except Exception as exc:           # noqa: BLE001 - the user's constructor failed
            raise ModelError(f"--model {spec}: calling {spec.rpartition(':')[2]}() failed ({describe(exc)})") from None
    else:
        raise ModelError(f"--model {spec}: {type(target).__name__} is neither an nn.Module nor a class")
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model {spec}: gave a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        state, own = read_state_dict(weights), model.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            parts = [f"missing {', '.join(missing[:3])}" if missing else "",
                     f"unexpected {', '.join(unexpected[:3])}" if unexpected else "",
                     f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the network's is {tuple(own[wrong[0]].shape)}"
                     if wrong else ""]
            raise ModelError(f"{weights}: does not fit --model {spec} ({'; '.join(p for p in parts if p)})")
        model.load_state_dict(state)
    return model.eval()


def add_user_model_options(parser: argparse.ArgumentParser) -> None:
    """Give every command below ``parser`` that reads a network (its ``model`` / ``input`` positional)
    ``--model MODULE:ATTR --weights FILE`` as an alternative to the file (called once by the parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_user_model_options(sub)
    positionals = [a for a in parser._actions if not a.option_strings]
    target = next((a for a in positionals if a.dest in _NETWORK_POSITIONALS), None)
    func = parser._defaults.get("func")
    if target is None or func is None:
        return
    later = [a.dest for a in positionals[positionals.index(target) + 1:]]
    required = target.required
    target.nargs, target.required = "?", False
    g = parser.add_argument_group("your own network (instead of " + (target.metavar or target.dest.upper()) + ")")
    g.add_argument("--model", dest="user_model", metavar="MODULE:ATTR", help=USER_MODEL_HELP)
    g.add_argument("--weights", dest="user_weights", metavar="FILE",
                   help="its state_dict (.pt / .pth saved with torch.save, or .safetensors); read as data only")
    parser.set_defaults(func=_with_user_model(func, target.dest, later, required))


def _with_user_model(func, dest: str, later: list[str], required: bool):
    """``func`` run on ``--model``/``--weights`` turned into a weights-only checkpoint in a private folder."""
    def run(args: argparse.Namespace) -> int:
        import tempfile

        from ..io import save_network

        spec, weights = getattr(args, "user_model", None), getattr(args, "user_weights", None)
        if spec is None:
            if weights is not None:
                raise NnmendError("--weights needs --model MODULE:ATTR (the class the weights belong to)")
            if required and getattr(args, dest) is None:
                raise NnmendError(f"a network is required: a file ({dest.upper()}) or --model MODULE:ATTR --weights FILE")
            return func(args)
        values = [getattr(args, dest)] + [getattr(args, d) for d in later]
        if values[0] is not None:          # argparse gave the first positional to MODEL: shift the rest right
            if not later or values[-1] is not None:
                raise NnmendError(f"give either a network file ({dest.upper()}) or --model, not both")
            for d, v in zip(later, values[:-1]):
                setattr(args, d, v)
        if weights is not None:
            _check_weights_kept(args, Path(weights))
        net = load_user_model(spec, weights)
        reference = _reference_of_class(args, spec)
        with tempfile.TemporaryDirectory(prefix="nnmend-model-") as tmp:
            path = Path(tmp) / f"{Path(weights).stem if weights else spec.rpartition(':')[2]}.pt"
            with reading(spec, ModelError):
                save_network(net, path)
                if reference is not None:
                    ref_path = Path(tmp) / "reference" / f"{Path(args.reference).stem}.pt"
                    ref_path.parent.mkdir()
                    save_network(reference, ref_path)
                    args.reference = str(ref_path)
            setattr(args, dest, str(path))
            return func(args)
    return run


def _reference_of_class(args: argparse.Namespace, spec: str) -> nn.Module | None:
    """With ``--model``, ``--reference FILE`` may be a plain state dict of the same class (the healthy weights):
    that network, or None where the file is not one (an ONNX / ``.nnet`` / nnmend checkpoint of its own)."""
    ref = getattr(args, "reference", None)
    if not isinstance(ref, str) or Path(ref).suffix.lower() in (".onnx", ".nnet", ".gz") or not Path(ref).is_file():
        return None
    _check_weights_kept(args, Path(ref))
    try:
        return load_user_model(spec, ref)
    except ModelError:          # not weights of this class: read later as a network file, which says what is wrong
        return None


def _check_weights_kept(args: argparse.Namespace, weights: Path) -> None:
    """Refuse an output (or a file written beside it) that would replace the ``--weights`` file."""
    for role in ("out", "output", "save"):
        out = getattr(args, role, None)
        if not isinstance(out, (str, os.PathLike)) or not str(out):
            continue
        out = Path(out)
        for path in [out] + [out.with_suffix(s) for s in (".json", ".onnx", ".pt", ".png", ".certificate.json")]:
            if _same_file(path, weights):
                raise NnmendError(f"refusing to overwrite the input {weights} (--weights) with {path} "
                                  f"(--{role} or beside it); choose another output path")


def load_property(path: str | os.PathLike):
    """A property file (VNN-LIB) as :func:`nnmend.properties.read_property` returns it."""
    from ..properties import read_property

    with reading(path, PropertyError):
        return read_property(path)


# --- writing outputs: never over an input, never silently over an existing file ---------------------------
def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_suffix(path: str | os.PathLike, role: str, allowed: tuple[str, ...]) -> None:
    """Refuse an output whose suffix is not one of ``allowed`` (the format is chosen by the suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise NnmendError(f"{path} ({role}): unknown output format {suffix or '(no suffix)'!r}; "
                          f"use one of {', '.join(allowed)}")


def check_outputs(inputs: Mapping[str, object], outputs: Mapping[str | os.PathLike, str], force: bool) -> None:
    """Refuse outputs that would replace an input, a folder or (without ``force``) an existing file.

    ``inputs`` maps a role (``"MODEL"``, ``"--data"``) to a path, or to None / a bundled name that is
    no file; ``outputs`` maps every path the command will write (siblings included) to its role.
    """
    files = {role: Path(p) for role, p in inputs.items()
             if isinstance(p, (str, os.PathLike)) and str(p) and Path(p).exists()}
    outs = {Path(out): role for out, role in outputs.items()}
    for out, out_role in outs.items():             # first: would any output replace an input?
        for in_role, inp in files.items():
            if _same_file(out, inp):
                raise NnmendError(f"refusing to overwrite the input {inp} ({in_role}) with {out} ({out_role}); "
                                  "choose another output path")
    seen: dict[Path, str] = {}
    for out, out_role in outs.items():
        key = out.resolve()
        if key in seen:
            raise NnmendError(f"{out} ({out_role}) is also written as {seen[key]}; choose another output name")
        seen[key] = out_role
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise NnmendError(f"{out} ({out_role}): {parent} is a file, not a folder")
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise NnmendError(f"{out} ({out_role}): no permission to write into {parent}")
        if out.is_dir():
            raise NnmendError(f"{out} ({out_role}) is a folder; give a file path")
        if out.exists() and not force:
            raise NnmendError(f"{out} ({out_role}) already exists; pass --force to replace it")


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
