"""How a dense layer's weight matrix becomes the 2-D grid(s) a neural cellular automaton runs on.

A dense layer's rows (output units) have no spatial order, and a local rule can only use correlation
between neighbouring cells, so the layout decides what "neighbour" means (research notes §2.4.1):

* ``"matrix"`` — the matrix as PyTorch stores it, ``(out, in)`` → one ``out × in`` grid.
* ``"receptive_field"`` — for a first layer fed by images: each unit's incoming weights reshaped to the
  image (e.g. 784 → 28 × 28), one grid per unit; neighbours are neighbouring pixels.
* ``"correlation"`` — for deeper layers: rows and columns permuted by the Fiedler vector of their
  |correlation| graph (spectral seriation), so that correlated units become neighbours. The permutation
  is fixed metadata stored with the rule and undone after repair; it does not change the function.

Positional channels are computed from the grid geometry at repair time (never stored, so never
corrupted): sin/cos of the global row and column at a few frequencies, plus two border flags.

Example::

    lay = make_layout(w, "receptive_field", image_shape=(28, 28))   # w: (100, 784)
    g = lay.to_grid(w)            # (100, 1, 28, 28)
    torch.equal(lay.from_grid(g), w)   # True
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import RepairError

LAYOUTS = ("matrix", "receptive_field", "correlation")


@dataclass(frozen=True)
class Layout:
    """A bijection between a ``(rows, cols)`` weight matrix and ``(n_grids, 1, height, width)`` grids.

    Attributes:
        kind: one of :data:`LAYOUTS`.
        weight_shape: ``(rows, cols)`` of the layer's weight.
        grid_shape: ``(n_grids, height, width)``.
        row_perm, col_perm: permutations applied before embedding (identity unless ``correlation``).
    """

    kind: str
    weight_shape: tuple[int, int]
    grid_shape: tuple[int, int, int]
    row_perm: torch.Tensor
    col_perm: torch.Tensor

    def to_grid(self, w: torch.Tensor) -> torch.Tensor:
        """``(..., rows, cols)`` → ``(..., n_grids, 1, height, width)`` (works for masks too)."""
        w = w.index_select(-2, self.row_perm).index_select(-1, self.col_perm)
        n, h, wd = self.grid_shape
        return w.reshape(*w.shape[:-2], n, 1, h, wd)

    def from_grid(self, g: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_grid`."""
        r, c = self.weight_shape
        w = g.reshape(*g.shape[:-4], r, c)
        return w.index_select(-2, torch.argsort(self.row_perm)).index_select(-1, torch.argsort(self.col_perm))


def _fiedler_order(x: np.ndarray) -> np.ndarray:
    """Order the rows of ``x`` by the Fiedler vector of the |correlation| graph (spectral seriation)."""
    n = x.shape[0]
    if n < 3:
        return np.arange(n)
    xc = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(xc, axis=1, keepdims=True)
    xc = xc / np.where(norm > 0, norm, 1.0)
    a = np.abs(xc @ xc.T)
    np.fill_diagonal(a, 0.0)
    lap = np.diag(a.sum(1)) - a
    _, vecs = np.linalg.eigh(lap)
    return np.argsort(vecs[:, 1], kind="stable")


def make_layout(weight: torch.Tensor, kind: str, *, image_shape: tuple[int, int] | None = None) -> Layout:
    """Build a :class:`Layout` for a 2-D ``weight``.

    Args:
        weight: the clean ``(rows, cols)`` weight (only ``correlation`` looks at its values).
        kind: ``"matrix"``, ``"receptive_field"`` or ``"correlation"``.
        image_shape: ``(height, width)`` with ``height · width == cols`` for ``receptive_field``;
            default: the square root of ``cols`` when it is a perfect square.
    """
    if kind not in LAYOUTS:
        raise RepairError(f"layout={kind!r} is not one of {', '.join(map(repr, LAYOUTS))}")
    if weight.dim() != 2:
        raise RepairError(f"NCA repair needs a 2-D weight matrix, got shape {tuple(weight.shape)}")
    r, c = weight.shape
    ident_r, ident_c = torch.arange(r), torch.arange(c)
    if kind == "matrix":
        return Layout(kind, (r, c), (1, r, c), ident_r, ident_c)
    if kind == "receptive_field":
        if image_shape is None:
            side = math.isqrt(c)
            if side * side != c:
                raise RepairError(f"receptive_field layout: {c} inputs per unit is not a square image; "
                                  "give image_shape=(height, width)")
            image_shape = (side, side)
        h, wd = int(image_shape[0]), int(image_shape[1])
        if h * wd != c:
            raise RepairError(f"receptive_field layout: image_shape {(h, wd)} has {h * wd} pixels but the layer "
                              f"has {c} inputs per unit")
        return Layout(kind, (r, c), (r, h, wd), ident_r, ident_c)
    w = weight.detach().double().cpu().numpy()
    rows = torch.from_numpy(_fiedler_order(w)).long()
    cols = torch.from_numpy(_fiedler_order(w.T)).long()
    return Layout(kind, (r, c), (1, r, c), rows, cols)


def positional_channels(grid_shape: tuple[int, int, int], frequencies: int) -> torch.Tensor:
    """Fixed channels ``(n_grids, 4·frequencies + 2, height, width)``: sin/cos of the normalised row and
    column at frequencies 1 … ``frequencies`` (in half-periods across the grid), and two border flags."""
    n, h, w = grid_shape
    ry = torch.linspace(0, 1, h)[:, None].expand(h, w)
    rx = torch.linspace(0, 1, w)[None, :].expand(h, w)
    chans = []
    for k in range(1, frequencies + 1):
        for coord in (ry, rx):
            chans += [torch.sin(math.pi * k * coord), torch.cos(math.pi * k * coord)]
    border_r = torch.zeros(h, w)
    border_r[[0, -1], :] = 1.0
    border_c = torch.zeros(h, w)
    border_c[:, [0, -1]] = 1.0
    chans += [border_r, border_c]
    return torch.stack(chans)[None].expand(n, -1, -1, -1).contiguous()


def default_layout(layer_index: int, in_features: int) -> str:
    """``receptive_field`` for a first layer on square images, else ``correlation``."""
    side = math.isqrt(in_features)
    return "receptive_field" if layer_index == 0 and side * side == in_features and side >= 8 else "correlation"
