"""Partition certificate files: save, load, and re-prove a saved network through a partition.

The cover check and the proof live in :mod:`nnmend.repair.certify` (one certificate for every method);
this module keeps the file side and re-exports them for existing imports.

The whole-box check (:func:`nnmend.properties.check`) redoes the refinement from scratch and can run out
of time on a large region (ACAS Xu N5,9 / φ2: more than 120 s); the loop's partition, saved beside the
network, lets anyone re-prove it leaf by leaf.

Example::

    part = result.details["partition"]                    # from a region-wise ProRepair result
    save_network(result.network, "fixed.pt"); save_partition(part, "fixed.partition.pt")
    cert = certify_saved("fixed.pt", prop, load_partition("fixed.partition.pt"), timeout=300)
"""
from __future__ import annotations

import os

import torch

from ...errors import DataError
from ...properties import SafetyProperty
from ..certify import certify_partition, check_cover  # noqa: F401  (re-exported)

def certify_saved(path: str | os.PathLike, prop: SafetyProperty, partition: dict, timeout: float | None) -> dict:
    """Load the network saved at ``path`` and run :func:`certify_partition` on it."""
    from ...io import load_network

    return {**certify_partition(load_network(path), prop, partition, timeout), "checked_on": str(path)}


def save_partition(partition: dict, path: str | os.PathLike) -> None:
    """Write a partition (tensors only, readable with ``torch.load(weights_only=True)``) atomically."""
    from ...io.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({k: partition[k] for k in ("region", "lo", "hi")}, tmp)


def load_partition(path: str | os.PathLike) -> dict:
    try:
        blob = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read a partition ({str(exc).splitlines()[0]})") from None
    if not isinstance(blob, dict) or not {"region", "lo", "hi"} <= set(blob):
        raise DataError(f"{path}: expected a dict with 'region', 'lo', 'hi'")
    return blob
