"""The names a grid may use: networks, defect kinds, methods and evaluation options.

Networks: ``acasxu_I_J`` (I 1–5, J 1–9), a shipped checkpoint (``shnn_mlp_mnist``, ``fnn_small``, …;
see :func:`nnmend.nets.pretrained`) or a network file (``.pt``/``.onnx``/``.nnet``, relative to the grid).

Defect kinds and their fields (every field optional unless marked):

* ``property``: ``property`` (required; an ACAS Xu property number 1–10 or a ``.vnnlib`` file).
* ``attack``: local robustness of MNIST classifiers against L∞ PGD: ``radius`` (required), ``n`` origins
  (10), ``per_origin`` held-out samples (10), ``steps`` (200), ``start`` pool index (40000).
* ``fault``: SHNN weight damage: ``layer`` (required), ``fault`` (zero), ``fraction`` (1.0), ``pattern``,
  ``sigma`` (0.1); the damage seed is the job's seed.
* ``poisoning``: a backdoored shipped network (``prorepair_badnets_cnn``/``prorepair_blend_cnn``):
  ``n`` triggered training inputs to repair (100).

Methods (options: the fields of the method's registered config dataclass): ``guard`` (property),
``patchpro`` (property, attack; ``preset: acasxu|mnist``), ``prorepair`` (property, attack, poisoning),
``shnn`` (fault; ``layer: auto`` localises by diagnosis). Every job runs through the repair harness
(:func:`nnmend.repair.run`), which alone decides success.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

_ACASXU = re.compile(r"^acasxu_([1-5])_([1-9])$")
NETWORK_SUFFIXES = (".pt", ".pth", ".onnx", ".nnet", ".onnx.gz", ".nnet.gz")

DEFECTS: dict[str, dict[str, tuple[type, ...]]] = {
    "property": {"property": (int, str)},
    "attack": {"radius": (float, int), "n": (int,), "per_origin": (int,), "steps": (int,), "start": (int,)},
    "fault": {"layer": (str,), "fault": (str,), "fraction": (float, int), "pattern": (str,), "sigma": (float, int)},
    "poisoning": {"n": (int,)},
}
REQUIRED = {"property": ("property",), "attack": ("radius",), "fault": ("layer",), "poisoning": ()}

# method → (defect kinds it repairs, options beyond its config dataclass's fields); the config dataclass
# itself comes from the repair registry (nnmend.repair.get(method).config)
METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "guard": (("property",), ()),
    "patchpro": (("property", "attack"), ("preset",)),
    "prorepair": (("property", "attack", "poisoning"), ()),
    "shnn": (("fault",), ("layer",)),
}

# the campaign's own options of a grid's ``options`` key: name → (types, default, meaning); the repair
# harness's measurement options (nnmend.repair.RunOptions fields but test and seed) are accepted too
OPTIONS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "test_n": ((int,), 1000, "MNIST test inputs for clean accuracy and its drawdown"),
    "threads": ((int,), 1, "torch threads inside each job (1: jobs side by side do not compete)"),
}
HARNESS_EXCLUDED = ("test", "seed")


def harness_options() -> dict[str, tuple[type, ...]]:
    """The harness's measurement options a grid may set, with the value types their annotations allow."""
    from ..repair import RunOptions

    names = {"float": (int, float), "int": (int,), "str": (str,), "bool": (bool,), "None": (type(None),), "Any": (object,)}
    out = {}
    for f in dataclasses.fields(RunOptions):
        if f.name not in HARNESS_EXCLUDED:
            ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "Any")
            out[f.name] = tuple(t for part in ann.split("|") for t in names.get(part.strip(), (object,)))
    return out


def option(evaluation: dict, name: str) -> Any:
    return evaluation.get(name, OPTIONS[name][1])


def config_class(method: str) -> type:
    from ..repair import get

    return get(method).config


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("number" if t is float else t.__name__ for t in types)


def network_error(name: str, base: Path | None = None) -> str | None:
    """Why ``name`` is not a usable network (None when it is)."""
    if _ACASXU.match(name):
        return None
    if any(name.lower().endswith(s) for s in NETWORK_SUFFIXES):
        path = Path(resolve_network(name, base))
        return None if path.is_file() else f"no such file {path}"
    from ..nets import pretrained_path

    known = sorted(p.stem for p in pretrained_path("shnn_mlp_mnist").parent.glob("*.pt"))
    if name in known:
        return None
    return f"unknown network (acasxu_I_J, a file {'/'.join(NETWORK_SUFFIXES[:4])}, or one of: {', '.join(known)})"


def resolve_network(name: str, base: Path | None = None) -> str:
    """A network file name relative to the grid becomes an absolute path; catalog names stay names."""
    if any(name.lower().endswith(s) for s in NETWORK_SUFFIXES) and base is not None and not os.path.isabs(name):
        return str((base / name).resolve())
    return name


def defect_error(spec: dict) -> tuple[str, str] | None:
    """``(sub-key, why)`` when a defect spec is malformed (None when it is fine)."""
    kind = spec.get("kind")
    if kind not in DEFECTS:
        return ".kind", f"unknown defect kind {kind!r} (known: {', '.join(DEFECTS)})"
    fields = DEFECTS[kind]
    for key, value in spec.items():
        if key == "kind":
            continue
        if key not in fields:
            return f".{key}", f"unknown field of a {kind} defect (known: {', '.join(fields)})"
        if isinstance(value, bool) or not isinstance(value, fields[key]):
            return f".{key}", f"expected {_type_name(fields[key])}, got {value!r}"
    for key in REQUIRED[kind]:
        if key not in spec:
            return f".{key}", f"missing (a {kind} defect needs {', '.join(REQUIRED[kind])})"
    if kind == "property" and isinstance(spec["property"], int) and not 1 <= spec["property"] <= 10:
        return ".property", f"ACAS Xu properties are numbered 1-10, got {spec['property']}"
    if kind == "attack" and not 0 < float(spec["radius"]) <= 1:
        return ".radius", f"must lie in (0, 1], got {spec['radius']}"
    if kind == "fault":
        from ..faults import KINDS

        if spec.get("fault", "zero") not in KINDS:
            return ".fault", f"unknown fault {spec['fault']!r} (known: {', '.join(KINDS)})"
    return None


def pair_error(network: str, spec: dict) -> str | None:
    """Why a defect cannot be applied to a network, checked by name only (None when it can)."""
    acas = bool(_ACASXU.match(network))
    kind = spec["kind"]
    if kind == "property" and isinstance(spec["property"], int) and not acas:
        return "an ACAS Xu property number needs an acasxu_I_J network (or give a .vnnlib file)"
    if kind in ("attack", "fault", "poisoning") and acas:
        return f"a {kind} defect needs an MNIST classifier"
    if kind == "poisoning" and not network.startswith("prorepair_"):
        return "a poisoning defect needs a backdoored network (prorepair_badnets_cnn, prorepair_blend_cnn)"
    return None


def method_error(method: str, opts: dict) -> tuple[str, str] | None:
    """``(sub-key, why)`` when a method or one of its options is unknown (None when fine)."""
    if method not in METHODS:
        return "", f"unknown method (known: {', '.join(METHODS)})"
    fields = {f.name for f in dataclasses.fields(config_class(method))}
    for key in opts:
        if key not in fields and key not in METHODS[method][1]:
            known = sorted(fields) + list(METHODS[method][1])
            return f".{key}", f"unknown option of {method} (known: {', '.join(known) or 'none'})"
    if "preset" in opts and opts["preset"] not in ("acasxu", "mnist"):
        return ".preset", f"unknown preset {opts['preset']!r} (acasxu or mnist)"
    return None


def applies_error(method: str, spec: dict) -> str | None:
    kinds = METHODS[method][0]
    return None if spec["kind"] in kinds else f"{method} repairs {', '.join(kinds)} defects, not {spec['kind']}"


def option_error(key: str, value: Any) -> str | None:
    harness = harness_options()
    if key in harness:
        types = harness[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            return f"expected {' or '.join(dict.fromkeys(t.__name__ for t in types))}, got {value!r}"
        return None
    if key not in OPTIONS:
        return f"unknown option (known: {', '.join(list(OPTIONS) + list(harness))})"
    types = OPTIONS[key][0]
    if isinstance(value, bool) or not isinstance(value, types) or value <= 0:
        return f"expected a positive {_type_name(types)}, got {value!r}"
    return None


def make_config(method: str, opts: dict, seed: int, defect_kind: str):
    """The method's config dataclass from grid options (lists become tuples), seeded by the job's seed."""
    cls = config_class(method)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items() if k in fields}
    if "seed" in fields:
        kwargs.setdefault("seed", seed)
    preset = opts.get("preset", "acasxu" if defect_kind == "property" else "mnist")
    if method == "patchpro":
        return getattr(cls, preset)(**kwargs)
    return cls(**kwargs)
