"""Argument groups and loaders shared by the commands (no method logic here)."""
from __future__ import annotations

import argparse
import json

from torch import nn

from ..data import Dataset, load_dataset
from ..io import load_network


def add_option_once(group, *flags: str, **kwargs) -> None:
    """Add an option unless another repair method already registered the same flag (``--property``,
    ``--eps`` are shared by the provable methods); the first registration's help text is kept."""
    existing = getattr(group, "_option_string_actions", {})
    if any(f in existing for f in flags):
        return
    group.add_argument(*flags, **kwargs)


def add_data_args(p: argparse.ArgumentParser, default_n: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", default="mnist", help="mnist | fashion-mnist | digits | a path (IDX dir, .npz, .mat)")
    g.add_argument("--n", type=int, default=default_n, help="use only the first N samples")


def load_data(args: argparse.Namespace, split: str) -> Dataset:
    return load_dataset(args.data, split, limit=args.n if split == "test" else None)


def load_model(path: str) -> nn.Module:
    return load_network(path)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
