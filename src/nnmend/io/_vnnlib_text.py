"""VNN-LIB 1.0 text for a parsed property (the writer behind :func:`nnmend.io.vnnlib.write_vnnlib`).

Numbers are written with Python's shortest round-trip ``repr``, so float64 values read back exactly;
rows of the common shapes are written as VNN-COMP writes them (``(<= Y_1 Y_0)``, ``(>= Y_0 c)``).
"""
from __future__ import annotations

import torch


def pairs_equal(p1: list, p2: list) -> bool:
    """Two lists of ``(A, b)`` tensor pairs hold equal tensors in the same order."""
    return len(p1) == len(p2) and all(
        torch.equal(a1, a2) and torch.equal(b1, b2) for (a1, b1), (a2, b2) in zip(p1, p2))


def _num(v: float) -> str:
    return repr(float(v))  # shortest text that reads back to the same float64


def _row_atom(a: torch.Tensor, b: float, strict: bool = False) -> str:
    le, ge = ("<", ">") if strict else ("<=", ">=")
    nz = [(j, float(c)) for j, c in enumerate(a.tolist()) if c != 0.0]
    if len(nz) == 1 and nz[0][1] == 1.0:
        return f"({le} Y_{nz[0][0]} {_num(b)})"
    if len(nz) == 1 and nz[0][1] == -1.0:
        return f"({ge} Y_{nz[0][0]} {_num(-b)})"
    if len(nz) == 2 and b == 0.0 and sorted(c for _, c in nz) == [-1.0, 1.0]:
        pos = next(j for j, c in nz if c == 1.0)
        neg = next(j for j, c in nz if c == -1.0)
        return f"({le} Y_{pos} Y_{neg})"
    if not nz:
        return f"({le} 0.0 {_num(b)})"
    terms = " ".join(f"(* {_num(c)} Y_{j})" for j, c in nz)
    return f"({le} (+ {terms}) {_num(b)})"


def _rows(region, i: int) -> list[str]:
    """The atoms of pair ``i`` of ``region.unsafe`` (strict rows written with ``<``)."""
    A, bv = region.unsafe[i]
    strict = region.strict_rows()[i].tolist() if hasattr(region, "strict_rows") else [False] * A.shape[0]
    return [_row_atom(a, b, s) for a, b, s in zip(A, bv.tolist(), strict)]


def _same_strict(r1, r2) -> bool:
    s1 = r1.strict_rows() if hasattr(r1, "strict_rows") else []
    s2 = r2.strict_rows() if hasattr(r2, "strict_rows") else []
    return len(s1) == len(s2) and all(torch.equal(a, b) for a, b in zip(s1, s2))


def _box_atoms(r) -> list[str]:
    out = []
    for i, (l, h) in enumerate(zip(r.lo.tolist(), r.hi.tolist())):
        out += [f"(<= X_{i} {_num(h)})", f"(>= X_{i} {_num(l)})"]
    return out


def _conj(atoms: list[str]) -> str:
    return "(and " + " ".join(atoms) + ")" if atoms else "true"


def format_vnnlib(spec, comment: str = "") -> str:
    """VNN-LIB 1.0 text for ``spec`` (see :func:`write_vnnlib`)."""
    lines = [f"; {c}" for c in comment.splitlines()] if comment else []
    lines += [f"(declare-const X_{i} Real)" for i in range(spec.n_inputs)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(spec.n_outputs)] + [""]
    first = spec.regions[0]
    shared = all(pairs_equal(r.unsafe, first.unsafe) and _same_strict(r, first) for r in spec.regions)
    if shared:
        # Input disjunction and output disjunction as separate asserts, as VNN-COMP writes them.
        if len(spec.regions) == 1:
            lines += [f"(assert {a})" for a in _box_atoms(spec.regions[0])]
        else:
            lines += ["(assert (or"] + [f"    {_conj(_box_atoms(r))}" for r in spec.regions] + ["))"]
        conjs = [_rows(first, i) for i in range(len(first.unsafe))]
        if len(conjs) == 1:
            lines += [f"(assert {a})" for a in conjs[0]]
        else:
            lines += ["(assert (or"] + [f"    {_conj(c)}" for c in conjs] + ["))"]
    else:
        cases = [_conj(_box_atoms(r) + _rows(r, i)) for r in spec.regions for i in range(len(r.unsafe))]
        lines += ["(assert (or"] + [f"    {c}" for c in cases] + ["))"]
    return "\n".join(lines) + "\n"
