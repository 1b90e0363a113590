"""The bundled ACAS Xu benchmark: 45 networks (ONNX), the 10 VNN-COMP properties and the instance list.

Katz et al., "Reluplex", CAV 2017; VNN-COMP 2021 files. Network ``i_j``: ``i`` = previous advisory
(1 COC, 2 weak left, 3 weak right, 4 strong left, 5 strong right), ``j`` = tau index (0 … 100 s).
Inputs and outputs are in the normalised space of the ``.nnet`` header (kept in ``nnmend_meta["nnet"]``);
the advisory is the **minimal** output. Licence and provenance: ``_assets/acasxu/LICENSE.md``.

Example::

    net = acasxu(2, 1)                                  # Sequential(flatten, fc1, relu1, …, fc7)
    spec = read_vnnlib(acasxu_property_path(2), 5, 5)
    [(i, j, k) for i, j, k, _ in acasxu_instances()][:3]
"""
from __future__ import annotations

import csv
import re
from importlib import resources
from pathlib import Path

from torch import nn

from .errors import ModelError, PropertyError

__all__ = ["acasxu", "acasxu_path", "acasxu_properties", "acasxu_property_path", "acasxu_instances",
           "ACASXU_HEADER", "ACASXU_OUTPUTS"]

ACASXU_OUTPUTS = ("COC", "weak left", "weak right", "strong left", "strong right")
# The normalisation header shared by all 45 .nnet files (checked against the bundled .nnet copies in tests).
ACASXU_HEADER = {
    "mins": [0.0, -3.141593, -3.141593, 100.0, 0.0],
    "maxs": [60760.0, 3.141593, 3.141593, 1200.0, 1200.0],
    "means": [19791.091, 0.0, 0.0, 650.0, 600.0, 7.5188840201005975],
    "ranges": [60261.0, 6.28318530718, 6.28318530718, 1100.0, 1200.0, 373.94992],
}


def _root() -> Path:
    return Path(str(resources.files("nnmend") / "_assets" / "acasxu"))


def acasxu_path(i: int, j: int) -> Path:
    """Path of the bundled ONNX file of network ``i_j`` (1 ≤ i ≤ 5, 1 ≤ j ≤ 9)."""
    if not (isinstance(i, int) and isinstance(j, int) and 1 <= i <= 5 and 1 <= j <= 9):
        raise ModelError(f"ACAS Xu network ({i}, {j}) does not exist: i must be 1..5 and j 1..9")
    return _root() / "onnx" / f"ACASXU_run2a_{i}_{j}_batch_2000.onnx"


def acasxu(i: int, j: int) -> nn.Sequential:
    """ACAS Xu network ``i_j`` as ``Sequential(flatten, fc1, relu1, …, fc7)`` (5 → 6×50 → 5), eval mode.

    It accepts ``(N, 5)`` or ``(N, 1, 1, 5)`` normalised inputs. ``nnmend_meta`` records the source,
    the input shape ``[1, 1, 5]``, the network index and the ``.nnet`` normalisation header.
    """
    from .io.onnx import load_onnx

    net = load_onnx(acasxu_path(i, j))
    net.nnmend_meta.update({"benchmark": "acasxu", "network": f"{i}_{j}", "nnet": {k: list(v) for k, v in ACASXU_HEADER.items()},
                            "outputs": list(ACASXU_OUTPUTS), "advisory": "argmin"})
    return net


def acasxu_properties() -> dict[int, Path]:
    """The bundled properties ``{k: path of prop_k.vnnlib}`` for k = 1..10."""
    found = {int(re.search(r"prop_(\d+)", p.name).group(1)): p for p in (_root() / "vnnlib").glob("prop_*.vnnlib")}
    return dict(sorted(found.items()))


def acasxu_property_path(k: int) -> Path:
    """Path of ``prop_k.vnnlib`` (1 ≤ k ≤ 10)."""
    props = acasxu_properties()
    if k not in props:
        raise PropertyError(f"ACAS Xu property {k!r} does not exist; bundled: {sorted(props)}")
    return props[k]


def acasxu_instances() -> list[tuple[int, int, int, float]]:
    """The 186 VNN-COMP 2021 instances as ``(i, j, property k, timeout seconds)``, in the CSV's order."""
    rows = []
    with open(_root() / "acasxu_instances.csv", newline="") as fh:
        for onnx_file, prop_file, timeout in csv.reader(fh):
            i, j = map(int, re.search(r"run2a_(\d)_(\d)_", onnx_file).groups())
            rows.append((i, j, int(re.search(r"prop_(\d+)", prop_file).group(1)), float(timeout)))
    return rows
