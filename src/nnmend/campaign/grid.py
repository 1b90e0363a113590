"""A campaign grid: networks × defects × methods × seeds, read from YAML and checked before any job runs.

A grid file::

    name: acasxu-phi2
    networks: [acasxu_2_1, acasxu_2_2]            # catalog names (see nnmend.campaign.catalog) or files
    defects:                                      # name → {kind: ..., fields of that kind}
      phi2: {kind: property, property: 2}
    methods:                                      # name → options of the method's config dataclass
      guard: {}
      prorepair: {time_budget: 120}
    seeds: [0]
    options: {samples: 5000}                      # evaluation options shared by every job
    include:                                      # optional: only these (network, defect) pairs
      - {networks: [acasxu_2_1], defects: [phi2]}

Every unknown key, method, network, defect kind or option raises :class:`GridError` naming its grid key
(``methods.prorepair.time_budgte``). :func:`expand` turns a grid into plain job dicts whose
:func:`job_key` (a hash of the arguments) identifies them in the store.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NnmendError
from . import catalog

TOP_KEYS = ("name", "networks", "defects", "methods", "seeds", "options", "include")


class GridError(NnmendError):
    """A grid file that cannot run; the message names the file and the grid key at fault."""


@dataclass(frozen=True)
class Grid:
    """A checked grid. ``defects`` and ``methods`` map names to option dicts; ``pairs`` lists the
    (network, defect) cells to run (every pair unless the file has ``include``)."""

    name: str
    networks: tuple[str, ...]
    defects: dict[str, dict]
    methods: dict[str, dict]
    seeds: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = ()
    source: str = "<grid>"


def _fail(source: str, key: str, msg: str) -> GridError:
    return GridError(f"{source}: {key}: {msg}")


def _names(source: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, key, "expected a non-empty list of names")
    return value


def _mapping(source: str, key: str, value: Any, allow_empty: bool = False) -> dict:
    if value is None and allow_empty:
        return {}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = {v: {} for v in value}             # methods: [guard, prorepair] means default options
    if not isinstance(value, dict) or (not value and not allow_empty):
        raise _fail(source, key, "expected a mapping of names to options")
    for name, opts in value.items():
        if not isinstance(name, str) or not (opts is None or isinstance(opts, dict)):
            raise _fail(source, f"{key}.{name}", "expected a mapping of options")
    return {name: dict(opts or {}) for name, opts in value.items()}


def parse_grid(data: Any, source: str = "<grid>") -> Grid:
    """Check a grid given as plain data (a YAML document) and return it as a :class:`Grid`."""
    if not isinstance(data, dict):
        raise GridError(f"{source}: a grid is a mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key not in TOP_KEYS:
            raise _fail(source, str(key), f"unknown key (known: {', '.join(TOP_KEYS)})")
    for key in ("networks", "defects", "methods"):
        if key not in data:
            raise _fail(source, key, "missing")
    networks = _names(source, "networks", data["networks"])
    for i, net in enumerate(networks):
        err = catalog.network_error(net, base=Path(source).parent if source != "<grid>" else None)
        if err:
            raise _fail(source, f"networks[{i}] ({net})", err)
    defects = _mapping(source, "defects", data["defects"])
    for name, spec in defects.items():
        err = catalog.defect_error(spec)
        if err:
            raise _fail(source, f"defects.{name}{err[0]}", err[1])
    methods = _mapping(source, "methods", data["methods"])
    for name, opts in methods.items():
        err = catalog.method_error(name, opts)
        if err:
            raise _fail(source, f"methods.{name}{err[0]}", err[1])
    seeds = data.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(source, "seeds", "expected a non-empty list of integers")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise _fail(source, "options", "expected a mapping of option names to values")
    for key, value in options.items():
        err = catalog.option_error(key, value)
        if err:
            raise _fail(source, f"options.{key}", err)
    pairs = _pairs(source, data.get("include"), networks, list(defects))
    for net, defect in pairs:
        err = catalog.pair_error(net, defects[defect])
        if err:
            raise _fail(source, f"defects.{defect}", f"does not apply to network {net}: {err}")
    for net, defect in pairs:
        for method in methods:
            err = catalog.applies_error(method, defects[defect])
            if err:
                raise _fail(source, f"methods.{method}", f"cannot repair defect {defect}: {err}")
    return Grid(name=str(data.get("name") or Path(source).stem), networks=tuple(networks), defects=defects,
                methods=methods, seeds=tuple(seeds), options=options, pairs=tuple(pairs), source=source)


def _pairs(source: str, include: Any, networks: list[str], defects: list[str]) -> list[tuple[str, str]]:
    if include is None:
        return [(n, d) for n in networks for d in defects]
    if not isinstance(include, list) or not include:
        raise _fail(source, "include", "expected a list of {networks: [...], defects: [...]} entries")
    pairs: list[tuple[str, str]] = []
    for i, entry in enumerate(include):
        key = f"include[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"networks", "defects"}:
            raise _fail(source, key, "expected a mapping with keys networks and defects")
        nets = _names(source, f"{key}.networks", entry.get("networks", networks))
        defs = _names(source, f"{key}.defects", entry.get("defects", defects))
        for n in nets:
            if n not in networks:
                raise _fail(source, f"{key}.networks", f"{n} is not in networks")
        for d in defs:
            if d not in defects:
                raise _fail(source, f"{key}.defects", f"{d} is not in defects")
        pairs += [(n, d) for n in nets for d in defs if (n, d) not in pairs]
    return pairs


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and check ``GRID.yaml``; raises :class:`GridError` (one line) on anything wrong."""
    try:
        import yaml
    except ImportError:
        raise GridError(f"{path}: reading a grid needs pyyaml, an optional extra: pip install 'nnmend[campaign]'") from None
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise GridError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', None) or 'parse error'})") from None
    return parse_grid(data, str(path))


def job_key(job: dict) -> str:
    """The job's identity: a hash of its arguments (canonical JSON), 16 hex digits."""
    text = json.dumps(job, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(grid: Grid) -> list[dict]:
    """Every job of the grid as plain arguments of :func:`nnmend.campaign.job.run_job`, in grid order."""
    base = Path(grid.source).parent if grid.source != "<grid>" else None
    jobs = []
    for net, defect in grid.pairs:
        for method, opts in grid.methods.items():
            for seed in grid.seeds:
                jobs.append({"network": catalog.resolve_network(net, base), "defect": {"name": defect, **grid.defects[defect]},
                             "method": method, "options": opts, "seed": seed, "evaluation": grid.options})
    return jobs
