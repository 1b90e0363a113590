"""VNN-LIB 1.0 properties (the VNN-COMP format): read into boxes and linear output constraints, write back.

A VNN-LIB file declares inputs ``X_0 … X_{n-1}`` and outputs ``Y_0 … Y_{m-1}`` and asserts constraints
that describe a **counterexample**: the property is violated ("sat") iff some input satisfying the input
constraints yields an output satisfying the output constraints. :func:`read_vnnlib` brings the
conjunction of all asserts into disjunctive normal form and groups it by input box::

    violated  <=>  exists region r, x in [r.lo, r.hi], (A, b) in r.unsafe :  A f(x) <= b   (row-wise)

Supported: ``declare-const``, ``assert``, ``and``, ``or``, comparisons ``<= >= < > =`` between linear
expressions (``+``, ``-``, ``*`` by a constant, numbers, variables), ``;`` comments. Strict ``<``/``>``
are read as ``<=``/``>=`` (the closure: sound for verification, the boundary has measure zero).
Input constraints must be bounds on single variables (boxes); output constraints may be any linear
inequalities. Numbers are kept in float64.

Example::

    spec = read_vnnlib("prop_2.vnnlib", n_inputs=5, n_outputs=5)
    r = spec.regions[0]
    r.lo, r.hi              # (5,) float64 input box
    A, b = r.unsafe[0]      # (4, 5), (4,): Y_i - Y_0 <= 0 for i = 1..4  (COC maximal)
"""
from __future__ import annotations

import gzip
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..errors import PropertyError
from ._vnnlib_text import format_vnnlib, pairs_equal
from .atomic import atomic_write

__all__ = ["Region", "VnnlibSpec", "read_vnnlib", "write_vnnlib", "parse_vnnlib", "format_vnnlib"]

# Caps the disjunctive normal form so a malicious or degenerate file fails clearly instead of exhausting memory.
MAX_DNF_TERMS = 200_000


@dataclass(frozen=True, eq=False)
class Region:
    """One input box and the output constraints that make a point in it a counterexample.

    ``lo``/``hi``: (n_in,) float64. ``unsafe``: list of ``(A (k, n_out), b (k,))``; the property is violated
    in this box iff ``A y <= b`` holds row-wise for at least one pair (a disjunction of conjunctions).
    A pair with ``k = 0`` rows means every point of the box is a counterexample.
    """

    lo: torch.Tensor
    hi: torch.Tensor
    unsafe: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return (
            torch.equal(self.lo, other.lo)
            and torch.equal(self.hi, other.hi)
            and pairs_equal(self.unsafe, other.unsafe)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """A parsed VNN-LIB property: violated iff some region holds a counterexample (see module docstring)."""

    regions: list[Region]
    n_inputs: int
    n_outputs: int
    source: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VnnlibSpec):
            return NotImplemented
        return (self.n_inputs, self.n_outputs) == (other.n_inputs, other.n_outputs) and self.regions == other.regions

    __hash__ = None  # type: ignore[assignment]

    def boxes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every region's box stacked: lower and upper bounds, each (n_regions, n_inputs) float64."""
        return torch.stack([r.lo for r in self.regions]), torch.stack([r.hi for r in self.regions])


# ----------------------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_VAR = re.compile(r"([XY])_(\d+)")


class _Sexpr(list):
    """A parenthesised list that remembers the line it starts on."""

    line: int = 0


def _tokens(text: str) -> Iterator[tuple[str, int]]:
    for line_no, line in enumerate(text.splitlines(), start=1):
        for tok in _TOKEN.findall(line.split(";", 1)[0]):
            yield tok, line_no


def _sexprs(text: str, where: str) -> list[_Sexpr]:
    stack: list[_Sexpr] = []
    top: list[_Sexpr] = []
    for tok, line in _tokens(text):
        if tok == "(":
            node = _Sexpr()
            node.line = line
            stack.append(node)
        elif tok == ")":
            if not stack:
                raise PropertyError(f"{where}:{line}: unmatched ')'")
            node = stack.pop()
            (stack[-1] if stack else top).append(node)
        else:
            if not stack:
                raise PropertyError(f"{where}:{line}: {tok!r} outside parentheses")
            stack[-1].append((tok, line))
    if stack:
        raise PropertyError(f"{where}:{stack[-1].line}: '(' is never closed")
    return top


# ------------------------------------------------------------------------------------------ semantics

# A linear form: ({("X"|"Y", index): coefficient}, constant)
_Linear = tuple[dict[tuple[str, int], float], float]
# An atom: linear form <= 0, remembered with its line for error messages
_Atom = tuple[dict[tuple[str, int], float], float, int]


class _Reader:
    def __init__(self, where: str):
        self.where = where
        self.declared: set[tuple[str, int]] = set()

    def fail(self, line: int, msg: str) -> PropertyError:
        return PropertyError(f"{self.where}:{line}: {msg}")

    def head(self, node: _Sexpr) -> str:
        if not node or isinstance(node[0], _Sexpr):
            raise self.fail(node.line, "expected an operator after '('")
        return node[0][0]

    def declare(self, node: _Sexpr) -> None:
        if len(node) != 3 or isinstance(node[1], _Sexpr) or isinstance(node[2], _Sexpr):
            raise self.fail(node.line, "expected (declare-const NAME Real)")
        name, sort = node[1][0], node[2][0]
        m = _VAR.fullmatch(name)
        if m is None:
            raise self.fail(node.line, f"variable {name!r} is not named X_i (input) or Y_j (output)")
        if sort != "Real":
            raise self.fail(node.line, f"variable {name} has sort {sort!r}; only Real is supported")
        self.declared.add((m.group(1), int(m.group(2))))

    def linear(self, expr: "_Sexpr | tuple[str, int]") -> _Linear:
        if not isinstance(expr, _Sexpr):
            tok, line = expr
            if _NUMBER.fullmatch(tok):
                return {}, float(tok)
            m = _VAR.fullmatch(tok)
            if m is None:
                raise self.fail(line, f"{tok!r} is neither a number nor a variable X_i / Y_j")
            var = (m.group(1), int(m.group(2)))
            if var not in self.declared:
                raise self.fail(line, f"variable {tok} is used but not declared (declare-const {tok} Real)")
            return {var: 1.0}, 0.0
        op = self.head(expr)
        args = [self.linear(a) for a in expr[1:]]
        if op == "+" and args:
            return _combine(args, [1.0] * len(args))
        if op == "-" and len(args) == 1:
            return _combine(args, [-1.0])
        if op == "-" and len(args) >= 2:
            return _combine(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*" and len(args) == 2:
            (c1, k1), (c2, k2) = args
            if c1 and c2:
                raise self.fail(expr.line, "product of two variables is not linear")
            coeffs, const, factor = (c2, k2, k1) if not c1 else (c1, k1, k2)
            return {v: factor * c for v, c in coeffs.items()}, factor * const
        raise self.fail(expr.line, f"unsupported term ({op} ...) with {len(args)} argument(s); "
                                   "expected +, -, * by a constant, a number or a variable")

    def formula(self, node: "_Sexpr | tuple[str, int]") -> list[list[_Atom]]:
        """The formula in disjunctive normal form: a list of conjunctions of atoms."""
        if not isinstance(node, _Sexpr):
            tok, line = node
            if tok == "true":
                return [[]]
            if tok == "false":
                return []
            raise self.fail(line, f"expected a constraint, found {tok!r}")
        op = self.head(node)
        if op == "and":
            dnf: list[list[_Atom]] = [[]]
            for sub in node[1:]:
                dnf = _and(dnf, self.formula(sub), self.where, node.line)
            return dnf
        if op == "or":
            return [term for sub in node[1:] for term in self.formula(sub)]
        if op in ("<=", ">=", "<", ">", "="):
            if len(node) != 3:
                raise self.fail(node.line, f"({op} ...) needs exactly two operands, found {len(node) - 1}")
            (cl, kl), (cr, kr) = self.linear(node[1]), self.linear(node[2])
            diff = _combine([(cl, kl), (cr, kr)], [1.0, -1.0])  # lhs - rhs
            neg = _combine([diff], [-1.0])
            if op in ("<=", "<"):
                return [[(*diff, node.line)]]
            if op in (">=", ">"):
                return [[(*neg, node.line)]]
            return [[(*diff, node.line), (*neg, node.line)]]
        raise self.fail(node.line, f"unsupported operator {op!r}; expected and, or, <=, >=, <, >, =")


def _combine(forms: list[_Linear], weights: list[float]) -> _Linear:
    coeffs: dict[tuple[str, int], float] = {}
    const = 0.0
    for (c, k), w in zip(forms, weights):
        for v, a in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + w * a
        const += w * k
    return coeffs, const


def _and(left: list[list[_Atom]], right: list[list[_Atom]], where: str, line: int) -> list[list[_Atom]]:
    if len(left) == 1 and len(right) == 1:  # the common case (one more bound): extend, don't copy
        left[0].extend(right[0])
        return left
    if len(left) * len(right) > MAX_DNF_TERMS:
        raise PropertyError(f"{where}:{line}: the property expands to more than {MAX_DNF_TERMS} cases")
    return [a + b for a in left for b in right]


def _dims(declared: set[tuple[str, int]], kind: str, expected: int | None, where: str) -> int:
    idx = sorted(i for k, i in declared if k == kind)
    name = "inputs" if kind == "X" else "outputs"
    if not idx:
        raise PropertyError(f"{where}: declares no {name} ({kind}_0 ...)")
    n = idx[-1] + 1
    if idx != list(range(n)):
        missing = sorted(set(range(n)) - set(idx))
        raise PropertyError(f"{where}: {name} must be {kind}_0 … {kind}_{n - 1}; {kind}_{missing[0]} is not declared")
    if expected is not None and n != expected:
        raise PropertyError(f"{where}: declares {n} {name} but the network has {expected}")
    return n


def _to_region(term: list[_Atom], n_in: int, n_out: int, where: str) -> tuple[list, list, list, list] | None:
    """One DNF case as (lo, hi, output rows, right-hand sides); None if it contains a false constant atom."""
    lo, hi = [-math.inf] * n_in, [math.inf] * n_in
    rows, rhs = [], []
    for coeffs, const, line in term:
        coeffs = {v: c for v, c in coeffs.items() if c != 0.0}
        kinds = {k for k, _ in coeffs}
        if not coeffs:
            if const > 0:  # the atom reads `const <= 0` and is false
                return None
            continue
        if kinds == {"X"}:
            if len(coeffs) != 1:
                raise PropertyError(f"{where}:{line}: input constraints must bound one variable each (a box); "
                                    f"found a linear combination of {len(coeffs)} inputs")
            ((_, i), c), = coeffs.items()
            bound = -const / c + 0.0  # + 0.0 turns -0.0 into 0.0
            if c > 0:
                hi[i] = min(hi[i], bound)
            else:
                lo[i] = max(lo[i], bound)
        elif kinds == {"Y"}:
            row = [0.0] * n_out
            for (_, j), c in coeffs.items():
                row[j] = c
            rows.append(row)
            rhs.append(-const + 0.0)
        else:
            raise PropertyError(f"{where}:{line}: a constraint mixing inputs and outputs is not supported")
    return lo, hi, rows, rhs


def parse_vnnlib(text: str, where: str = "<string>", n_inputs: int | None = None,
                 n_outputs: int | None = None) -> VnnlibSpec:
    """Parse VNN-LIB text (see :func:`read_vnnlib`); ``where`` names the source in error messages."""
    reader = _Reader(where)
    dnf: list[list[_Atom]] = [[]]
    for node in _sexprs(text, where):
        op = reader.head(node)
        if op == "declare-const":
            reader.declare(node)
        elif op == "assert":
            if len(node) != 2:
                raise reader.fail(node.line, f"(assert ...) takes one formula, found {len(node) - 1}")
            dnf = _and(dnf, reader.formula(node[1]), where, node.line)
        elif op in ("set-logic", "set-info", "check-sat", "get-model", "exit"):
            continue  # SMT-LIB commands some tools add; they carry no constraint
        else:
            raise reader.fail(node.line, f"unsupported command {op!r}; expected declare-const or assert")
    n_in = _dims(reader.declared, "X", n_inputs, where)
    n_out = _dims(reader.declared, "Y", n_outputs, where)

    regions: dict[tuple, list] = {}
    for term in dnf:
        case = _to_region(term, n_in, n_out, where)
        if case is None or any(l > h for l, h in zip(case[0], case[1])):
            continue  # a contradictory case contributes no counterexample
        lo, hi, rows, rhs = case
        unbounded = [i for i in range(n_in) if not (math.isfinite(lo[i]) and math.isfinite(hi[i]))]
        if unbounded:
            i = unbounded[0]
            side = "lower" if not math.isfinite(lo[i]) else "upper"
            raise PropertyError(f"{where}: input X_{i} has no {side} bound; every input needs a finite box")
        cases = regions.setdefault((tuple(lo), tuple(hi)), [])
        if (rows, rhs) not in cases:
            cases.append((rows, rhs))
    if not regions:
        raise PropertyError(f"{where}: the input constraints are contradictory (every input box is empty)")
    f64 = torch.float64
    return VnnlibSpec([
        Region(torch.tensor(lo, dtype=f64), torch.tensor(hi, dtype=f64),
               [(torch.tensor(rows, dtype=f64).reshape(len(rows), n_out), torch.tensor(rhs, dtype=f64))
                for rows, rhs in cases])
        for (lo, hi), cases in regions.items()], n_in, n_out, where)


def read_vnnlib(path: str | os.PathLike, n_inputs: int | None = None, n_outputs: int | None = None) -> VnnlibSpec:
    """Read a VNN-LIB 1.0 property file.

    Args:
        path: the ``.vnnlib`` file (or ``.vnnlib.gz``, as later VNN-COMP rounds ship them).
        n_inputs, n_outputs: the network's input / output sizes; a file that declares other sizes raises
            :class:`~nnmend.errors.PropertyError`. Default ``None``: take the sizes from the declarations.

    Returns:
        :class:`VnnlibSpec` with ``regions`` (input boxes, each with its unsafe output polytopes), float64.

    Raises:
        PropertyError naming the file and line for text that does not parse, undeclared variables,
        non-box input constraints, inputs without finite bounds and size mismatches.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except FileNotFoundError:
        raise PropertyError(f"{path}: file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise PropertyError(f"{path}: cannot read as text ({exc})") from None
    return parse_vnnlib(text, str(path), n_inputs, n_outputs)


def write_vnnlib(spec: VnnlibSpec, path: str | os.PathLike, comment: str = "") -> Path:
    """Write ``spec`` as a VNN-LIB 1.0 file (atomically) that :func:`read_vnnlib` reads back identically.

    Numbers are written with Python's shortest round-trip ``repr``, so float64 values survive exactly.
    """
    path = Path(path)
    if not spec.regions:
        raise PropertyError(f"{path}: cannot write a property with no input region")
    text = format_vnnlib(spec, comment)
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path
