"""Solve NNrepair's constraint system with HiGHS (``scipy.optimize.milp``), in three modes.

* ``"hard"``: every row must hold (LP); the smallest change by L1 (``Σ|δ|``) or L∞ (``max|δ|``).
  NNrepair's z3 run had no objective and returned bound-hitting vertices; a minimal-change objective
  keeps the edit small.
* ``"soft"``: each row gets a slack ``s ≥ 0``; minimise ``Σ s + λ·objective`` (always feasible; an L1
  relaxation of MaxSMT).
* ``"maxsat"``: NNrepair's last-layer ``assert-soft`` exactly — one binary per row, ``A_r δ + M_r(1 - b_r)
  ≥ lb_r`` with the exact big-M ``M_r = lb_r + bound·Σ|A_r|``; maximise ``Σ b``, then, with that count
  fixed, minimise the change (lexicographic).

δ is split as ``p - q`` (``p, q ∈ [0, bound]``) so L1 is linear. Every solution is re-checked on the
rows in float64 and the deltas lying on their bound are counted.

Example::

    sol = solve_system(system, mode="hard", objective="l1", bound=1.0)
    sol.status, sol.satisfied.mean(), sol.at_bound
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from .constraints import TARGET, LinearSystem

TOL = 1e-7


class Infeasible(Exception):
    """The hard system has no solution in the box (caught by the API, which explains or falls back)."""


@dataclass(frozen=True)
class Solution:
    delta: np.ndarray
    status: str
    mode: str
    satisfied: np.ndarray
    seconds: float
    at_bound: int
    nonzero: int
    max_abs: float
    l1: float

    def to_dict(self) -> dict:
        return {"status": self.status, "mode": self.mode, "rows": int(len(self.satisfied)),
                "rows_satisfied": int(self.satisfied.sum()), "seconds": round(self.seconds, 4),
                "nonzero": self.nonzero, "at_bound": self.at_bound, "max_abs_delta": self.max_abs,
                "l1": self.l1}


def _change_objective(V: int, objective: str) -> tuple[np.ndarray, list, int]:
    """Objective and rows for the change of δ = p - q; returns (costs, rows, number of variables)."""
    if objective == "l1":
        return np.ones(2 * V), [], 2 * V
    # L∞: variables [p, q, t]; p_i + q_i - t ≤ 0; a small L1 tie-break keeps p, q from both moving
    c = np.concatenate([np.full(2 * V, 1e-3), [1.0]])
    rows = sp.hstack([sp.eye_array(V), sp.eye_array(V), -np.ones((V, 1))]).tocsr()
    return c, [LinearConstraint(rows, -np.inf, 0.0)], 2 * V + 1


def _split(A: sp.csr_array, n_extra: int) -> sp.csr_array:
    """A·(p - q), padded with zero columns for the variables after p and q."""
    parts = [A, -A]
    if n_extra:
        parts.append(sp.csr_array((A.shape[0], n_extra)))
    return sp.hstack(parts).tocsr()


def _run(c, integrality, lo, hi, constraints, time_limit) -> tuple[np.ndarray | None, int, str]:
    res = milp(c, integrality=integrality, bounds=Bounds(lo, hi), constraints=constraints,
               options={"time_limit": time_limit, "presolve": True})
    return res.x, res.status, res.message


def solve_system(system: LinearSystem, *, mode: str = "hard", objective: str = "l1", bound: float = 1.0,
                 soft_weight: float = 1e-3, time_limit: float = 60.0) -> Solution:
    """Find δ for ``A δ ≥ lb`` in the box ``|δ| ≤ bound``; raises :class:`Infeasible` when none exists.

    In ``"soft"`` and ``"maxsat"`` modes only the TARGET rows are relaxed; KEEP rows
    (non-interference) stay hard.
    """
    t0 = time.perf_counter()
    A, lb = system.A, system.lb
    R, V = A.shape
    c_change, change_rows, n_change = _change_objective(V, objective)
    lo = np.zeros(n_change)
    hi = np.concatenate([np.full(2 * V, bound), [np.inf]]) if objective == "linf" else np.full(2 * V, bound)
    soft = (system.kind == TARGET) if mode != "hard" else np.zeros(R, bool)
    S = int(soft.sum())
    Ah, As = _split(A[~soft], n_change - 2 * V), _split(A[soft], n_change - 2 * V)
    pad = lambda M: sp.hstack([M, sp.csr_array((M.shape[0], S))]).tocsr() if S else M
    change = [LinearConstraint(pad(r.A), r.lb, r.ub) for r in change_rows]
    hard = [LinearConstraint(pad(Ah), lb[~soft], np.inf)] if (~soft).any() else []
    if mode == "hard":
        x, status, msg = _run(c_change, np.zeros(n_change), lo, hi, hard + change, time_limit)
    elif mode == "soft":
        # [p, q, (t), s]: A_s(p - q) + s ≥ lb_s
        cons = hard + change + [LinearConstraint(sp.hstack([As, sp.eye_array(S)]).tocsr(), lb[soft], np.inf)]
        x, status, msg = _run(np.concatenate([soft_weight * c_change, np.ones(S)]), np.zeros(n_change + S),
                              np.concatenate([lo, np.zeros(S)]), np.concatenate([hi, np.full(S, np.inf)]), cons,
                              time_limit)
    elif mode == "maxsat":
        big_m = np.maximum(lb[soft] + bound * np.asarray(abs(A[soft]).sum(1)).ravel(), 0.0) + 1e-6
        # [p, q, (t), b]: A_s(p - q) - M b ≥ lb_s - M
        cons = hard + change + [LinearConstraint(sp.hstack([As, sp.diags_array(-big_m)]).tocsr(),
                                                 lb[soft] - big_m, np.inf)]
        integ = np.concatenate([np.zeros(n_change), np.ones(S)])
        lo2, hi2 = np.concatenate([lo, np.zeros(S)]), np.concatenate([hi, np.ones(S)])
        x, status, msg = _run(np.concatenate([np.zeros(n_change), -np.ones(S)]), integ, lo2, hi2, cons, time_limit)
        if x is not None:
            best = float(np.round(x[n_change:]).sum())
            count = LinearConstraint(sp.csr_array(np.concatenate([np.zeros(n_change), np.ones(S)])[None, :]),
                                     best - 0.5, np.inf)
            x2, status2, msg2 = _run(np.concatenate([c_change, np.zeros(S)]), integ, lo2, hi2, cons + [count],
                                     time_limit)
            if x2 is not None:
                x, status, msg = x2, status2, msg2
    else:
        raise ValueError(f"unknown mode {mode!r}")
    if status == 2:
        raise Infeasible(f"{int((~soft).sum())} hard constraints over {V} deltas in [-{bound}, {bound}] "
                         f"are infeasible ({msg})")
    if x is None:
        raise Infeasible(f"HiGHS found no solution within time_limit={time_limit:g} s ({msg}); "
                         "use fewer inputs or non-interference rows, or a larger time_limit")
    delta = x[:V] - x[V:2 * V]
    delta[np.abs(delta) < 1e-12] = 0.0
    sat = system.residual(delta) >= -TOL * np.maximum(1.0, np.abs(lb))
    nz = delta != 0
    return Solution(delta, {0: "optimal", 1: "time_limit"}.get(status, f"status {status}"), mode, sat,
                    time.perf_counter() - t0, int((np.abs(delta[nz]) >= bound * (1 - 1e-6)).sum()), int(nz.sum()),
                    float(np.abs(delta).max(initial=0.0)), float(np.abs(delta).sum()))
