"""NNrepair's repair constraints as one sparse linear system ``A δ ≥ lb`` (paper 004, Sec. 4.2).

The deltas ``δ`` sit on chosen weights ``W[var_out[v], var_in[v]]`` of the repaired layer. With
everything before the layer concrete, every constraint is linear in ``δ`` and each matrix is built
from the recorded activations in one vectorised step (no symbolic execution, no loop over inputs):

* intermediate layer, pattern rows: ``z_N(X) + a_S(X)·δ_N ≥ m`` for pattern-on neurons, ``≤ 0`` for
  pattern-off ones;
* last layer, decision rows: ``y_C(X) + a_S(X)·δ > y_C'(X)`` for every rival ``C'``;
* non-interference rows (nnmend's addition): other classes' passing inputs keep their decision. On
  the last layer only logit ``C`` moves, so ``y_L - y_C - a_S·δ ≥ m``; on an intermediate layer the
  ReLU signs of the symbolic neurons are kept, which makes the next Linear's logits affine in ``δ``
  too, and the decision is kept exactly. Rows that no δ in the box can violate are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

TARGET, KEEP = 0, 1


@dataclass(frozen=True)
class LinearSystem:
    """Rows ``A δ ≥ lb``; ``kind`` (TARGET or KEEP) and ``sample`` (input index) per row."""

    A: sp.csr_array
    lb: np.ndarray
    kind: np.ndarray
    sample: np.ndarray
    var_out: np.ndarray
    var_in: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.A.shape

    def residual(self, delta: np.ndarray) -> np.ndarray:
        """``A δ - lb`` (≥ 0 where a row holds)."""
        return self.A @ delta - self.lb


def _variables(neurons: torch.Tensor, edges: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One δ per (neuron j, edge e), numbered ``j * k + e``."""
    k = edges.shape[1]
    return neurons.repeat_interleave(k).numpy(), edges.reshape(-1).numpy()


def _coo(vals: torch.Tensor, cols: torch.Tensor, n_vars: int) -> sp.csr_array:
    """Sparse rows from per-row values and column indices, both (R, m); zeros are dropped."""
    R = vals.shape[0]
    vals = vals.reshape(R, -1)
    cols = cols[None, :].expand(R, -1) if cols.dim() == 1 else cols.reshape(R, -1)
    rows = torch.arange(R)[:, None].expand_as(cols)
    keep = vals != 0
    return sp.coo_array((vals[keep].double().numpy(), (rows[keep].numpy(), cols[keep].numpy())),
                        shape=(R, n_vars)).tocsr()


def pattern_rows(a: torch.Tensor, z: torch.Tensor, neurons: torch.Tensor, edges: torch.Tensor,
                 want_on: torch.Tensor, margin: float, kind: int = TARGET) -> LinearSystem:
    """Sign rows for inputs (n) × symbolic neurons (K): on ``z + a_S·δ ≥ margin``, off ``z + a_S·δ ≤ 0``.

    Args:
        a: (n, in) layer inputs; z: (n, out) pre-activations; neurons: (K,); edges: (K, k);
        want_on: (n, K) bool, the required state.
    """
    n, (K, k) = a.shape[0], edges.shape
    coef = a[:, edges]                                   # (n, K, k)
    sign = torch.where(want_on, 1.0, -1.0)               # (n, K)
    zs = z[:, neurons]
    lb = torch.where(want_on, margin - zs, zs)           # on: a·δ ≥ m - z ; off: -a·δ ≥ z
    var_out, var_in = _variables(neurons, edges)
    cols = torch.arange(K * k).reshape(1, K, k).expand(n, K, k)
    A = _coo((coef * sign[..., None]).reshape(n * K, k), cols.reshape(n * K, k), K * k)
    return LinearSystem(A, lb.reshape(-1).double().numpy(), np.full(n * K, kind, np.int8),
                        np.repeat(np.arange(n), K), var_out, var_in)


def decision_rows(a: torch.Tensor, logits: torch.Tensor, cls: int, edges: torch.Tensor, margin: float,
                  kind: int = TARGET) -> LinearSystem:
    """Last layer, inputs meant to be ``cls``: ``y_cls + a_S·δ - y_c' ≥ margin`` for every rival c'."""
    n, C = logits.shape
    rivals = torch.tensor([c for c in range(C) if c != cls])
    coef = a[:, edges][:, None, :].expand(n, len(rivals), -1)          # (n, C-1, k)
    lb = margin + logits[:, rivals] - logits[:, cls:cls + 1]
    A = _coo(coef.reshape(n * len(rivals), -1), torch.arange(len(edges)), len(edges))
    return LinearSystem(A, lb.reshape(-1).double().numpy(), np.full(n * len(rivals), kind, np.int8),
                        np.repeat(np.arange(n), len(rivals)), np.full(len(edges), cls), edges.numpy())


def keep_rows_last(a: torch.Tensor, logits: torch.Tensor, cls: int, edges: torch.Tensor, margin: float,
                   bound: float) -> LinearSystem:
    """Last layer, passing inputs of other classes L: ``y_L - y_cls - a_S·δ ≥ min(margin, gap/2)``."""
    label = logits.argmax(1)
    gap = logits.gather(1, label[:, None]).squeeze(1) - logits[:, cls]
    coef = -a[:, edges]
    lb = torch.minimum(torch.full_like(gap, margin), gap / 2) - gap
    live = (bound * coef.abs().sum(1) > -lb) & (label != cls)          # rows some δ in the box can break
    A = _coo(coef[live], torch.arange(len(edges)), len(edges))
    return LinearSystem(A, lb[live].double().numpy(), np.full(int(live.sum()), KEEP, np.int8),
                        torch.nonzero(live).squeeze(1).numpy(), np.full(len(edges), cls), edges.numpy())


def keep_rows_intermediate(a: torch.Tensor, z: torch.Tensor, logits: torch.Tensor, neurons: torch.Tensor,
                           edges: torch.Tensor, readout: torch.Tensor | None, margin: float,
                           bound: float) -> list[LinearSystem]:
    """Intermediate layer, other classes' passing inputs: keep the symbolic neurons' signs and, given the
    readout weights (C, out) of the Linear after the ReLU, the decision itself (exact while signs hold)."""
    K, k = edges.shape
    coef = a[:, edges]                                   # (n, K, k)
    zs = z[:, neurons]
    on = zs > 0
    reach = bound * coef.abs().sum(2)                    # largest change of each neuron in the box
    live = reach > zs.abs()
    lb = torch.where(on, -zs, zs)                        # on: z + a·δ ≥ 0 ; off: z + a·δ ≤ 0
    sign = torch.where(on, 1.0, -1.0)
    rows_n, rows_j = torch.nonzero(live, as_tuple=True)
    # rows touch only neuron j's k variables
    sel = coef[rows_n, rows_j] * sign[rows_n, rows_j][:, None]       # (r, k)
    cols = torch.arange(K * k).reshape(K, k)[rows_j]                 # (r, k)
    r = len(rows_n)
    A = _coo(sel, cols, K * k)
    var_out, var_in = _variables(neurons, edges)
    out = [LinearSystem(A, lb[rows_n, rows_j].double().numpy(), np.full(r, KEEP, np.int8),
                        rows_n.numpy(), var_out, var_in)]
    if readout is None:
        return out
    n, C = logits.shape
    label = logits.argmax(1)
    rivals = torch.stack([torch.tensor([c for c in range(C) if c != l]) for l in range(C)])[label]  # (n, C-1)
    gap = logits.gather(1, label[:, None]) - logits.gather(1, rivals)                             # (n, C-1)
    w = readout[:, neurons]                                                                       # (C, K)
    wdiff = w[label][:, None, :] - w[rivals]                                                      # (n, C-1, K)
    dcoef = (wdiff * on[:, None, :])[..., None] * coef[:, None]                                   # (n, C-1, K, k)
    need = torch.minimum(torch.full_like(gap, margin), gap / 2)
    live_d = bound * dcoef.abs().sum((2, 3)) > gap - need
    dn, dr = torch.nonzero(live_d, as_tuple=True)
    Ad = _coo(dcoef[dn, dr].reshape(len(dn), K * k), torch.arange(K * k), K * k)
    out.append(LinearSystem(Ad, (need - gap)[dn, dr].double().numpy(), np.full(len(dn), KEEP, np.int8),
                            dn.numpy(), var_out, var_in))
    return out


def pattern_decision_rows(rec, cls: int, neurons: torch.Tensor, edges: torch.Tensor, want_on: torch.Tensor,
                          readout: torch.Tensor, margin: float) -> LinearSystem:
    """Intermediate layer, failing inputs meant to be ``cls`` (an nnmend extension): once the pattern rows
    fix the symbolic neurons' states to ``want_on``, the logits are affine in δ, so ask for the decision
    itself: ``y_cls - y_c' ≥ margin`` for every rival c'.

    Args:
        rec: the failing inputs' :class:`Record` (a, z, logits); want_on: (K,) the pattern's states;
        readout: (C, out) weights of the final Linear after the ReLU.
    """
    n, C = rec.logits.shape
    K, k = edges.shape
    rivals = torch.tensor([c for c in range(C) if c != cls])
    zs = rec.z[:, neurons]                                               # (n, K)
    on = want_on[None].float()                                           # (1, K)
    w = readout[:, neurons]                                              # (C, K)
    wdiff = w[cls][None, :] - w[rivals]                                  # (C-1, K)
    shift = on * zs - zs.clamp(min=0)                                    # change of each neuron at δ = 0
    const = rec.logits[:, cls:cls + 1] - rec.logits[:, rivals] + shift @ wdiff.T     # (n, C-1)
    coef = (wdiff * on)[None, :, :, None] * rec.a[:, edges][:, None]     # (n, C-1, K, k)
    A = _coo(coef.reshape(n * len(rivals), K * k), torch.arange(K * k), K * k)
    var_out, var_in = _variables(neurons, edges)
    return LinearSystem(A, (margin - const).reshape(-1).double().numpy(), np.full(n * len(rivals), TARGET, np.int8),
                        np.repeat(np.arange(n), len(rivals)), var_out, var_in)


def stack(systems: list[LinearSystem]) -> LinearSystem:
    """Rows of several systems over the same variables."""
    systems = [s for s in systems if s.A.shape[0] > 0] or systems[:1]
    return LinearSystem(sp.vstack([s.A for s in systems]).tocsr(), np.concatenate([s.lb for s in systems]),
                        np.concatenate([s.kind for s in systems]), np.concatenate([s.sample for s in systems]),
                        systems[0].var_out, systems[0].var_in)
