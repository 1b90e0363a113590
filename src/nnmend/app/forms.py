"""Widgets for a config dataclass: one per field, typed by its annotation, started at its default, with
the class docstring's words about the field as help. A method's options on the workbench are its config
dataclass's fields, nothing else (the registry's rule: switching methods is switching a name).

Example::

    cfg = config_form(PatchProConfig, "patchpro")                 # every field it can edit
    cfg = config_form(NCATrainConfig, "nca", ("iterations", "seed"))
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping, Sequence

import streamlit as st

NUMBER = (int, float)


def _annotation(cls: type, name: str) -> Any:
    try:
        return typing.get_type_hints(cls).get(name)
    except Exception:  # an annotation naming a type the module imports only for checking
        return None


def _parts(ann: Any) -> tuple[tuple[Any, ...], bool]:
    """The non-None members of an annotation and whether it admits None."""
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        args = typing.get_args(ann)
        return tuple(a for a in args if a is not type(None)), type(None) in args
    return ((ann,) if ann is not None else ()), False


def kind(cls: type, f: dataclasses.Field) -> tuple[str, Any, bool]:
    """``(widget kind, element type, optional)`` of a field: ``bool``, ``int``, ``float``, ``str``, ``tuple`` or
    ``fixed`` (a value the form cannot edit, e.g. an attack spec: it keeps its default)."""
    default = _default(f)
    members, optional = _parts(_annotation(cls, f.name))
    optional = optional or default is None
    base = type(default) if type(default) in members and type(default) in (bool, int, float, str) else \
        next((m for m in members if m in (bool, int, float, str)), None)
    if base is None and members and typing.get_origin(members[0]) is tuple:
        inner = [a for a in typing.get_args(members[0]) if a is not Ellipsis]
        return "tuple", inner[0] if inner and inner[0] in (int, float, str) else str, optional
    if base is None and default is not None:
        base = type(default) if type(default) in (bool, int, float, str) else None
        if isinstance(default, tuple) and all(isinstance(v, (int, float, str)) for v in default):
            return "tuple", type(default[0]) if default else str, optional
    if base is float and int in members:
        base = float
    return (base.__name__ if base else "fixed"), base, optional


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def field_help(cls: type) -> dict[str, str]:
    """Each field's description in the class docstring (``name: text`` or ``` ``name``: text ```), as one line."""
    doc = cls.__doc__ or ""
    names = [f.name for f in dataclasses.fields(cls)]
    pattern = re.compile(r"(?<![\w.])(?:``)?(" + "|".join(map(re.escape, names)) + r")(?:``)?\s*(?:\([^)]*\))?:\s")
    hits = list(pattern.finditer(doc)) if names else []
    out: dict[str, str] = {}
    for i, m in enumerate(hits):
        end = hits[i + 1].start() if i + 1 < len(hits) else len(doc)
        text = " ".join(doc[m.end():end].split())
        if text and m.group(1) not in out:
            out[m.group(1)] = text if len(text) <= 400 else text[:397] + "…"
    return out


def _parse_number(text: str, want: type) -> Any:
    return int(text) if want is int and re.fullmatch(r"[+-]?\d+", text) else float(text) if want is float else \
        (int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text))


def editable(cls: type) -> list[str]:
    """The fields of ``cls`` a form can edit (in declaration order)."""
    return [f.name for f in dataclasses.fields(cls) if kind(cls, f)[0] != "fixed"]


def config_form(config_cls: type, prefix: str, fields: Sequence[str] | None = None, *,
                choices: Mapping[str, Sequence] | None = None, tips: Mapping[str, str] | None = None,
                columns: int = 4, defaults: Mapping[str, Any] | None = None, base: Any = None) -> Any:
    """Widgets for ``fields`` (default: every editable field) of a config dataclass; returns the config.

    Each widget starts at ``base``'s value (default: the dataclass default, the method's own), or at
    ``defaults`` where the page knows better (e.g. the localised layer); fields not shown keep theirs.
    ``choices`` turns a field into a select box; an optional field (``None`` allowed) is a text box where
    empty means ``None``; a tuple is comma-separated; help comes from ``tips`` or the class docstring.
    """
    choices, defaults = dict(choices or {}), dict(defaults or {})
    tips = {**field_help(config_cls), **dict(tips or {})}
    base = config_cls() if base is None else base
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    fields = editable(config_cls) if fields is None else list(fields)
    values: dict[str, Any] = {}
    cols = st.columns(columns)
    for i, name in enumerate(fields):
        if name not in by_name:
            raise KeyError(f"{config_cls.__name__} has no field {name!r}")
        widget, elem, optional = kind(config_cls, by_name[name])
        default = defaults.get(name, getattr(base, name))
        col, label, key, tip = cols[i % columns], name.replace("_", " "), f"{prefix}_{name}", tips.get(name)
        if name in choices:
            opts = list(choices[name])
            values[name] = col.selectbox(label, opts, index=opts.index(default) if default in opts else 0, key=key, help=tip)
        elif widget == "bool" and not (optional and default is None):
            values[name] = col.checkbox(label, bool(default), key=key, help=tip)
        elif widget in ("int", "float") and default is not None and not isinstance(default, bool):
            if widget == "int":
                values[name] = int(col.number_input(label, value=int(default), step=1, key=key, help=tip))
            else:
                values[name] = float(col.number_input(label, value=float(default), format="%.6g", key=key, help=tip))
        elif widget == "tuple":
            text = col.text_input(label, ",".join(str(v) for v in default) if default is not None else "", key=key,
                                  help=(tip or "") + " (comma-separated" + ("; empty: none)" if optional else ")")).strip()
            items = [t.strip() for t in text.split(",") if t.strip()]
            try:
                values[name] = None if optional and not items else tuple(
                    _parse_number(t, elem) if elem in NUMBER else t for t in items)
            except ValueError:
                col.error(f"{label}: {text!r} is not a list of numbers; using the default")
                values[name] = getattr(base, name)
        elif widget in ("int", "float", "str") or optional:
            text = col.text_input(label, "" if default is None else str(default), key=key,
                                  help=(tip or "") + (" (empty: none)" if optional else "")).strip()
            if optional and not text:
                values[name] = None
            elif widget in ("int", "float") or (elem is None and default is None and text):
                try:
                    values[name] = _parse_number(text, elem)
                except ValueError:
                    col.error(f"{label}: {text!r} is not a number; using {'none' if optional else 'the default'}")
                    values[name] = None if optional else getattr(base, name)
            else:
                values[name] = text
        else:
            continue   # fixed: keeps the default (shown by fixed_fields)
    return dataclasses.replace(base, **values)


def fixed_fields(config_cls: type) -> list[str]:
    """Fields a form cannot edit (they keep the method's default)."""
    return [f.name for f in dataclasses.fields(config_cls) if kind(config_cls, f)[0] == "fixed"]
