"""VNN-LIB properties (the VNN-COMP format): 1.0 and 2.0 read into boxes and linear output constraints, 1.0 written.

A VNN-LIB file declares inputs ``X_0 … X_{n-1}`` and outputs ``Y_0 … Y_{m-1}`` and asserts constraints
that describe a **counterexample**: the property is violated ("sat") iff some input satisfying the input
constraints yields an output satisfying the output constraints. :func:`read_vnnlib` brings the
conjunction of all asserts into disjunctive normal form and groups it by input box::

    violated  <=>  exists region r, x in [r.lo, r.hi], (A, b) in r.unsafe :  A f(x) <= b   (row-wise)

Supported: ``declare-const``, ``assert``, ``and``, ``or``, comparisons ``<= >= < > =`` between linear
expressions (``+``, ``-``, ``*`` by a constant, numbers, variables), ``;`` comments. Strict ``<``/``>``
output constraints are bounded as their closure ``<=``/``>=`` (sound for "unsat") and remembered in
``Region.strict``, so a counterexample on the boundary is not reported as one (a float softmax reaches
exactly 1.0, a real one never does); strict input bounds are read as their closure.
Input constraints must be bounds on single variables (boxes); output constraints may be any linear
inequalities. Numbers are kept in float64.

VNN-LIB 2.0 (``(vnnlib-version <2.0>)``, tensors ``X[i,j]`` declared inside ``declare-network``) is parsed
by the ``vnnlib`` package and read into the same objects, inputs and outputs flattened in row-major
order (several input or output tensors concatenated in declaration order, as the ONNX reader concatenates
a network's inputs and outputs); what they cannot hold (several networks, hidden-node variables,
non-box input constraints) is refused with one line naming the file and the construct. Every size is
checked against :class:`VnnlibLimits` before it is allocated, and parsing never recurses.

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
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

import torch

from ..errors import PropertyError
from ._vnnlib_text import format_vnnlib, pairs_equal
from .atomic import atomic_write

__all__ = ["Region", "VnnlibSpec", "NetworkQuery", "VnnlibLimits", "read_vnnlib", "read_text", "write_vnnlib", "parse_vnnlib",
           "format_vnnlib", "vnnlib_version", "check_nesting"]

# Caps the disjunctive normal form so a malicious or degenerate file fails clearly instead of exhausting memory.
MAX_DNF_TERMS = 200_000


@dataclass(frozen=True, eq=False)
class Region:
    """One input box and the output constraints that make a point in it a counterexample.

    ``lo``/``hi``: (n_in,) float64. ``unsafe``: list of ``(A (k, n_out), b (k,))``; the property is violated
    in this box iff ``A y <= b`` holds row-wise for at least one pair (a disjunction of conjunctions).
    A pair with ``k = 0`` rows means every point of the box is a counterexample. ``strict``: empty (no
    strict row), or one bool tensor (k,) per pair marking the rows that are strict (``A y < b``).
    """

    lo: torch.Tensor
    hi: torch.Tensor
    unsafe: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    strict: list[torch.Tensor] = field(default_factory=list)

    def strict_rows(self) -> list[torch.Tensor]:
        """One bool tensor per pair of ``unsafe`` (all False where ``strict`` is empty)."""
        if self.strict:
            return list(self.strict)
        return [torch.zeros(A.shape[0], dtype=torch.bool) for A, _ in self.unsafe]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return (
            torch.equal(self.lo, other.lo)
            and torch.equal(self.hi, other.hi)
            and pairs_equal(self.unsafe, other.unsafe)
            and all(torch.equal(a, b) for a, b in zip(self.strict_rows(), other.strict_rows()))
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class NetworkQuery:
    """How a VNN-LIB 2.0 query reads its network(s) beyond one input box and linear output constraints.

    The property's variables are over an *augmented* network (:func:`nnmend.io.query.augment`): ``copies``
    instances of the network (``equal-to`` / ``isomorphic-to`` / further declared networks, all the given
    model), copy ``c`` reading inputs ``c * n_in …`` of the flat input; its outputs are, per copy, the
    network's ``n_out`` outputs then the hidden tensors ``hidden[c]`` (ONNX names and sizes), and finally,
    when ``inputs_as_outputs``, the whole input again (constraints over inputs that are not a box, or that
    mix inputs with outputs, are then output constraints, checked exactly like them), and after it the
    ``products`` of pairs of those values (columns), for constraints with products of two variables.
    """

    copies: int
    n_in: int
    n_out: int
    hidden: tuple[tuple[tuple[str, int], ...], ...]
    inputs_as_outputs: bool
    products: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """A parsed VNN-LIB property: violated iff some region holds a counterexample (see module docstring).
    ``query``: how the variables map onto the network where that is not one input and one output (2.0)."""

    regions: list[Region]
    n_inputs: int
    n_outputs: int
    source: str = ""
    query: NetworkQuery | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VnnlibSpec):
            return NotImplemented
        return (self.n_inputs, self.n_outputs) == (other.n_inputs, other.n_outputs) and self.regions == other.regions

    __hash__ = None  # type: ignore[assignment]

    def boxes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every region's box stacked: lower and upper bounds, each (n_regions, n_inputs) float64."""
        return torch.stack([r.lo for r in self.regions]), torch.stack([r.hi for r in self.regions])


# ----------------------------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class VnnlibLimits:
    """Caps checked before anything large is allocated; a file beyond one is refused with one line.

    max_bytes: text size after decompression (a ``.gz`` is decompressed in chunks and stopped here).
    max_tokens: parentheses, names and numbers in the text (about 100 bytes of memory each while parsing;
    the largest VNN-COMP properties have about 1.5 million). max_depth: parenthesis nesting.
    max_variables: declared scalar variables (inputs and outputs each; the network's own sizes cap them
    further where known). max_cases: cases of the disjunctive normal
    form. max_elements: numbers the parsed regions hold (boxes and output rows), counted as they are grouped.
    """

    max_bytes: int = 32 << 20
    max_tokens: int = 4_000_000
    max_depth: int = 5_000
    max_variables: int = 10_000_000
    max_cases: int = MAX_DNF_TERMS
    max_elements: int = 10_000_000

    @classmethod
    def from_env(cls) -> "VnnlibLimits":
        """The defaults, each overridable by an environment variable ``NNMEND_VNNLIB_<FIELD>`` (e.g.
        ``NNMEND_VNNLIB_MAX_TOKENS=20000000``) for a trusted file beyond them."""
        values = {}
        for name in cls.__dataclass_fields__:
            raw = os.environ.get(f"NNMEND_VNNLIB_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = int(raw)
                except ValueError:
                    warnings.warn(f"NNMEND_VNNLIB_{name.upper()}={raw!r} is not an integer; the default is kept")
        return cls(**values)


DEFAULT_LIMITS = VnnlibLimits.from_env()

# ----------------------------------------------------------------------------------------------- tokens

_TOKEN = re.compile(r";[^\n]*|\n|\(|\)|[^\s();]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_VAR = re.compile(r"([XY])_(\d+)")


class _Sexpr(list):
    """A parenthesised list (of ``_Sexpr`` and ``str`` atoms) that remembers the line it starts on."""

    __slots__ = ("line",)

    def __init__(self, items=(), line: int = 0):
        super().__init__(items)
        self.line = line


def _tokens(text: str, where: str = "<string>", limits: VnnlibLimits = DEFAULT_LIMITS) -> Iterator[tuple[str, int]]:
    """``(token, line)`` for every parenthesis and atom; comments and whitespace dropped; refused past
    ``limits.max_tokens``."""
    line, count = 1, 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "\n":
            line += 1
        elif tok[0] != ";":
            count += 1
            if count > limits.max_tokens:
                raise PropertyError(f"{where}:{line}: more than {limits.max_tokens} tokens, the limit")
            yield tok, line


def _too_deep(where: str, line: int, limits: VnnlibLimits) -> PropertyError:
    return PropertyError(f"{where}:{line}: parentheses nested deeper than {limits.max_depth} levels")


def check_nesting(text: str, where: str, limits: VnnlibLimits = DEFAULT_LIMITS) -> None:
    """Refuse unbalanced or too deeply nested parentheses (without building anything)."""
    depth, opened = 0, [0]
    for tok, line in _tokens(text, where, limits):
        if tok == "(":
            depth += 1
            if depth > limits.max_depth:
                raise _too_deep(where, line, limits)
            if depth == 1:
                opened[0] = line
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise PropertyError(f"{where}:{line}: unmatched ')'")
    if depth:
        raise PropertyError(f"{where}:{opened[0]}: '(' is never closed")


def _sexprs(text: str, where: str, limits: VnnlibLimits) -> Iterator[_Sexpr]:
    """The top-level S-expressions one at a time (a bad command fails before the rest is built), built with an
    explicit stack (no recursion, nesting capped)."""
    stack: list[_Sexpr] = []
    for tok, line in _tokens(text, where, limits):
        if tok == "(":
            if len(stack) >= limits.max_depth:
                raise _too_deep(where, line, limits)
            stack.append(_Sexpr(line=line))
        elif tok == ")":
            if not stack:
                raise PropertyError(f"{where}:{line}: unmatched ')'")
            node = stack.pop()
            if stack:
                stack[-1].append(node)
            else:
                yield node
        else:
            if not stack:
                raise PropertyError(f"{where}:{line}: {tok!r} outside parentheses")
            stack[-1].append(tok)
    if stack:
        raise PropertyError(f"{where}:{stack[-1].line}: '(' is never closed")


# ------------------------------------------------------------------------------------------ semantics

# A linear form: ({("X"|"Y", index): coefficient}, constant)
_Linear = tuple[dict[tuple[str, int], float], float]
# An atom: linear form <= 0 (< 0 when strict), remembered with its line for error messages
_Atom = tuple[dict[tuple[str, int], float], float, int, bool]
# The DNF: a list of cases; a case is a conjunction kept as a list of chunks (lists of atoms) that cases
# share, so a box asserted once and combined with many output cases is stored and summarised once.
_Chunk = list[_Atom]
_Dnf = list[list[_Chunk]]
_Term = Union[_Sexpr, str]
_COMPARE = ("<=", ">=", "<", ">", "=")


class _Reader:
    """Evaluates S-expressions into linear forms and DNF formulas, bottom-up with an explicit stack."""

    def __init__(self, where: str, limits: VnnlibLimits = DEFAULT_LIMITS,
                 sizes: dict[str, int | None] | None = None, declare_sizes: bool = False, products: bool = False):
        self.where, self.limits = where, limits
        self.products = products            # True: a product of two variables is a monomial ("M", (u, v))
        self.monomials: dict[tuple, int] = {}
        self.declared: set[tuple[str, int]] = set()
        self.sizes = sizes or {}           # known sizes per kind (the network's, or a 2.0 declaration's)
        self.declare_sizes = declare_sizes  # True: every index below the size counts as declared (2.0)

    def fail(self, line: int, msg: str) -> PropertyError:
        return PropertyError(f"{self.where}:{line}: {msg}")

    def head(self, node: _Sexpr) -> str:
        if not node or isinstance(node[0], _Sexpr):
            raise self.fail(node.line, "expected an operator after '('")
        return node[0]

    def declare(self, node: _Sexpr) -> None:
        if len(node) != 3 or isinstance(node[1], _Sexpr) or isinstance(node[2], _Sexpr):
            raise self.fail(node.line, "expected (declare-const NAME Real)")
        name, sort = node[1], node[2]
        m = _VAR.fullmatch(name)
        if m is None:
            raise self.fail(node.line, f"variable {name!r} is not named X_i (input) or Y_j (output)")
        if sort != "Real":
            raise self.fail(node.line, f"variable {name} has sort {sort!r}; only Real is supported")
        kind, index = m.group(1), int(m.group(2))
        known = self.sizes.get(kind)
        what = "inputs" if kind == "X" else "outputs"
        if known is not None and index >= known:
            raise self.fail(node.line, f"declares {name} but the network has {known} {what}")
        if index >= self.limits.max_variables or len(self.declared) >= 2 * self.limits.max_variables:
            raise self.fail(node.line, f"declares {name}: more than the limit of {self.limits.max_variables} {what}")
        self.declared.add((kind, index))

    def is_declared(self, var: tuple[str, int]) -> bool:
        if self.declare_sizes:
            return var[1] < (self.sizes.get(var[0]) or 0)
        return var in self.declared

    def leaf(self, tok: str, line: int, mode: str):
        """The value of an atom: a number or variable (linear mode) or ``true``/``false`` (formula mode)."""
        if mode == "formula":
            if tok == "true":
                return [[]]  # one case with no constraint
            if tok == "false":
                return []
            raise self.fail(line, f"expected a constraint, found {tok!r}")
        if _NUMBER.fullmatch(tok):
            return {}, float(tok)
        m = _VAR.fullmatch(tok)
        if m is None:
            raise self.fail(line, f"{tok!r} is neither a number nor a variable X_i / Y_j")
        var = (m.group(1), int(m.group(2)))
        if not self.is_declared(var):
            raise self.fail(line, f"variable {tok} is used but not declared (declare-const {tok} Real)")
        return {var: 1.0}, 0.0

    def child_mode(self, node: _Sexpr, mode: str) -> str:
        """How the operands of ``node`` are read; refuses an unknown formula operator, or a disjunction of more
        operands than the case cap, before descending."""
        op = self.head(node)
        if mode == "linear":
            return "linear"
        if op == "or" and len(node) - 1 > self.limits.max_cases:
            raise self.fail(node.line, f"the property expands to more than {self.limits.max_cases} cases")
        if op in ("and", "or"):
            return "formula"
        if op in _COMPARE:
            return "linear"
        raise self.fail(node.line, f"unsupported operator {op!r}; expected and, or, <=, >=, <, >, =")

    def evaluate(self, root: _Term, mode: str, line: int = 0):
        """``root`` as a DNF (``mode="formula"``: a list of conjunctions of atoms) or a linear form."""
        if not isinstance(root, _Sexpr):
            return self.leaf(root, line, mode)
        stack = [[root, mode, 1, [], self.child_mode(root, mode)]]  # node, mode, next operand, values, operand mode
        while True:
            frame = stack[-1]
            node, mode, i, values, sub = frame
            if i < len(node):
                frame[2] = i + 1
                child = node[i]
                if isinstance(child, _Sexpr):
                    stack.append([child, sub, 1, [], self.child_mode(child, sub)])
                else:
                    values.append(self.leaf(child, node.line, sub))
                continue
            stack.pop()
            value = self.formula_node(node, values) if mode == "formula" else self.linear_node(node, values)
            if not stack:
                return value
            stack[-1][3].append(value)

    def formula(self, node: _Term, line: int = 0) -> _Dnf:
        """The formula in disjunctive normal form: a list of conjunctions (each a list of chunks of atoms)."""
        return self.evaluate(node, "formula", line)

    def linear_node(self, expr: _Sexpr, args: list[_Linear]) -> _Linear:
        op = expr[0]
        if op == "+" and args:
            return _combine(args, [1.0] * len(args))
        if op == "-" and len(args) == 1:
            return _combine(args, [-1.0])
        if op == "-" and len(args) >= 2:
            return _combine(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*" and len(args) >= 2:
            coeffs, const = args[0]
            for c2, k2 in args[1:]:
                if coeffs and c2 and self.products:
                    coeffs, const = self.product((coeffs, const), (c2, k2), expr.line)
                    continue
                if coeffs and c2:
                    raise self.fail(expr.line, "product of two variables is not linear")
                coeffs, const, factor = (c2, k2, const) if not coeffs else (coeffs, const, k2)
                coeffs, const = {v: factor * c for v, c in coeffs.items()}, factor * const
            return coeffs, const
        raise self.fail(expr.line, f"unsupported term ({op} ...) with {len(args)} argument(s); "
                                   "expected +, -, * by a constant, a number or a variable")

    def product(self, a: _Linear, b: _Linear, line: int) -> _Linear:
        """``a * b`` of two linear forms as a form over variables and monomials (degree two at most)."""
        (ca, ka), (cb, kb) = a, b
        if any(v[0] == "M" for v in (*ca, *cb)):
            raise self.fail(line, "a product of more than two variables is not supported")
        out = _combine([(ca, 0.0), (cb, 0.0)], [kb, ka])[0]
        for u, x in ca.items():
            for v, y in cb.items():
                key = ("M", tuple(sorted((u, v))))
                if key[1] not in self.monomials:
                    if len(self.monomials) >= self.limits.max_variables:
                        raise self.fail(line, f"more than {self.limits.max_variables} products of variables")
                    self.monomials[key[1]] = len(self.monomials)
                out[key] = out.get(key, 0.0) + x * y
        return out, ka * kb

    def formula_node(self, node: _Sexpr, args: list) -> _Dnf:
        op = node[0]
        if op == "and":
            dnf: _Dnf = [[]]
            for sub in args:
                dnf = self.conjoin(dnf, sub, node.line)
            return dnf
        if op == "or":
            if sum(len(a) for a in args) > self.limits.max_cases:
                raise self.fail(node.line, f"the property expands to more than {self.limits.max_cases} cases")
            return [term for sub in args for term in sub]
        if len(args) != 2:
            raise self.fail(node.line, f"({op} ...) needs exactly two operands, found {len(args)}")
        diff = _combine(args, [1.0, -1.0])  # lhs - rhs
        neg = _combine([diff], [-1.0])
        strict = op in ("<", ">")
        if op in ("<=", "<"):
            return [[[(*diff, node.line, strict)]]]
        if op in (">=", ">"):
            return [[[(*neg, node.line, strict)]]]
        return [[[(*diff, node.line, False), (*neg, node.line, False)]]]

    def conjoin(self, left: _Dnf, right: _Dnf, line: int) -> _Dnf:
        """``left and right`` in DNF, refused before allocation when it exceeds the case cap. Each case of a
        product is two shared chunks (its two factors, each flattened once), never a copy of their atoms."""
        if len(left) == 1 and len(right) == 1:  # the common case (one more bound): extend, don't copy
            left[0].extend(right[0])
            return left
        if len(left) * len(right) > self.limits.max_cases:
            raise self.fail(line, f"the property expands to more than {self.limits.max_cases} cases")
        left, right = [_flatten(a) for a in left], [_flatten(b) for b in right]
        return [a + b for a in left for b in right]


def _flatten(case: list[_Chunk]) -> list[_Chunk]:
    """A case as (at most) one chunk, so that the cases of a product share it."""
    return case if len(case) <= 1 else [[atom for chunk in case for atom in chunk]]


def _combine(forms: list[_Linear], weights: list[float]) -> _Linear:
    coeffs: dict[tuple[str, int], float] = {}
    const = 0.0
    for (c, k), w in zip(forms, weights):
        for v, a in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + w * a
        const += w * k
    return coeffs, const


def _dims(declared: set[tuple[str, int]], kind: str, expected: int | None, where: str) -> int:
    idx = sorted(i for k, i in declared if k == kind)
    name = "inputs" if kind == "X" else "outputs"
    if not idx:
        raise PropertyError(f"{where}: declares no {name} ({kind}_0 ...)")
    n = idx[-1] + 1
    if len(idx) != n:
        missing = next(i for i, v in enumerate(idx) if i != v)
        raise PropertyError(f"{where}: {name} must be {kind}_0 … {kind}_{n - 1}; {kind}_{missing} is not declared")
    if expected is not None and n != expected:
        raise PropertyError(f"{where}: declares {n} {name} but the network has {expected}")
    return n


# A box in sparse form: (bounded inputs, their lower bounds, their upper bounds), inputs in increasing order
_Box = tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]
# Output rows in sparse form: (((output, coefficient), ...), right-hand side, strict) per row
_Rows = tuple[tuple[tuple[tuple[int, float], ...], float, bool], ...]
# A chunk's summary: (bounds {input: [lo, hi]}, its box, output rows), or None when it is contradictory
_Summary = Union[tuple[dict[int, list[float]], _Box, list], None]


def _summarise(chunk: _Chunk, where: str, x_as_y: int | None = None, monomials: dict | None = None) -> _Summary:
    """The input bounds and output rows a conjunction of atoms states; None if it is contradictory (a false
    constant atom or an empty interval). ``x_as_y``: where the inputs are copied among the outputs, if they
    are (then a constraint over several inputs, or mixing inputs and outputs, is an output row);
    ``monomials``: the output column of each product of two variables, where products are outputs too."""
    bounds: dict[int, list[float]] = {}
    rows = []
    for coeffs, const, line, strict in chunk:
        coeffs = {v: c for v, c in coeffs.items() if c != 0.0}
        kinds = {k for k, _ in coeffs}
        if not coeffs:
            if const > 0 or (strict and const == 0):  # the atom reads `const <= 0` (`< 0`) and is false
                return None
            continue
        if x_as_y is not None and ("M" in kinds or ("X" in kinds and (len(coeffs) > 1 or kinds != {"X"}))):
            col = {"X": lambda j: j + x_as_y, "Y": lambda j: j, "M": lambda j: monomials[j]}
            rows.append((tuple(sorted((col[k](j), c) for (k, j), c in coeffs.items())), -const + 0.0, strict))
        elif kinds == {"X"}:
            if len(coeffs) != 1:
                raise PropertyError(f"{where}:{line}: input constraints must bound one variable each (a box); "
                                    f"found a linear combination of {len(coeffs)} inputs")
            ((_, i), c), = coeffs.items()
            bound = -const / c + 0.0  # + 0.0 turns -0.0 into 0.0
            lo_hi = bounds.setdefault(i, [-math.inf, math.inf])
            if c > 0:
                lo_hi[1] = min(lo_hi[1], bound)
            else:
                lo_hi[0] = max(lo_hi[0], bound)
        elif kinds == {"Y"}:
            rows.append((tuple(sorted((j, c) for (_, j), c in coeffs.items())), -const + 0.0, strict))
        else:
            raise PropertyError(f"{where}:{line}: a constraint mixing inputs and outputs is not supported")
    return bounds, _box_of(bounds), rows


def _box_of(bounds: dict[int, list[float]]) -> _Box | None:
    """The sparse box of ``bounds``; None if some interval is empty."""
    idx = tuple(sorted(bounds))
    lo, hi = tuple(bounds[i][0] for i in idx), tuple(bounds[i][1] for i in idx)
    return None if any(l > h for l, h in zip(lo, hi)) else (idx, lo, hi)


def _to_case(case: list[_Chunk], where: str, memo: dict[int, _Summary], x_as_y: int | None = None,
             monomials: dict | None = None) -> tuple[_Box, _Rows] | None:
    """One DNF case as a sparse box and output rows; None if it is contradictory. Chunk summaries are
    memoised by identity (``memo``), so a chunk shared by many cases is read once."""
    merged: dict[int, list[float]] | None = None
    box: _Box | None = ((), (), ())
    rows: list = []
    for chunk in case:
        if id(chunk) not in memo:
            memo[id(chunk)] = _summarise(chunk, where, x_as_y, monomials)
        summary = memo[id(chunk)]
        if summary is None or summary[1] is None:
            return None
        bounds, chunk_box, chunk_rows = summary
        rows += chunk_rows
        if not bounds:
            continue
        if merged is None and not box[0]:
            box = chunk_box                          # the only bounds so far: reuse the chunk's box
            continue
        merged = merged if merged is not None else {i: [l, h] for i, l, h in zip(*box)}
        for i, (l, h) in bounds.items():
            cur = merged.setdefault(i, [-math.inf, math.inf])
            cur[0], cur[1] = max(cur[0], l), min(cur[1], h)
    if merged is not None:
        box = _box_of(merged)
        if box is None:
            return None
    return box, tuple(rows)


def _unbounded(box: _Box, n_in: int) -> str:
    """The first input of ``box`` without a finite lower or upper bound, as a message."""
    seen = {i: (lo, hi) for i, lo, hi in zip(*box)}
    for i in range(n_in):
        lo, hi = seen.get(i, (-math.inf, math.inf))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"input X_{i} has no {'lower' if not math.isfinite(lo) else 'upper'} bound"
    return "an input has no finite bound"


def _regions(dnf: _Dnf, n_in: int, n_out: int, where: str, limits: VnnlibLimits, x_as_y: int | None = None,
             monomials: dict | None = None) -> list[Region]:
    """Group the DNF cases by input box, counting the numbers the regions will hold as they are grouped (refused
    past ``limits.max_elements``); the dense tensors are built only at the end."""
    grouped: dict[_Box, list[_Rows]] = {}
    memo: dict[int, _Summary] = {}
    size = 0
    for term in dnf:
        case = _to_case(term, where, memo, x_as_y, monomials)
        if case is None:
            continue  # a contradictory case contributes no counterexample
        box, rows = case
        if box not in grouped:
            if len(box[0]) != n_in or not all(map(math.isfinite, box[1] + box[2])):
                raise PropertyError(f"{where}: {_unbounded(box, n_in)}; every input needs a finite box")
            grouped[box] = []
            size += 2 * n_in
        cases = grouped[box]
        if rows not in cases:
            cases.append(rows)
            size += len(rows) * (n_out + 1)
        if size > limits.max_elements:
            raise PropertyError(f"{where}: the property holds more than {len(grouped)} input boxes of {n_in} inputs "
                                f"({size} numbers), more than the limit of {limits.max_elements}")
    if not grouped:
        raise PropertyError(f"{where}: the input constraints are contradictory (every input box is empty)")
    return [_region(box, cases, n_out) for box, cases in grouped.items()]


def _region(box: _Box, cases: list[_Rows], n_out: int) -> Region:
    strict = [torch.tensor([r[2] for r in rows], dtype=torch.bool) for rows in cases]
    return Region(torch.tensor(box[1], dtype=torch.float64), torch.tensor(box[2], dtype=torch.float64),
                  [_dense_rows(r, n_out) for r in cases], strict if any(bool(t.any()) for t in strict) else [])


def _dense_rows(rows: _Rows, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    A = torch.zeros(len(rows), n_out, dtype=torch.float64)
    for r, (coeffs, _, _) in enumerate(rows):
        for j, c in coeffs:
            A[r, j] = c
    return A, torch.tensor([row[1] for row in rows], dtype=torch.float64)


# -------------------------------------------------------------------------------------------- versions

_VERSION = re.compile(r"(?:\s|;[^\n]*(?:\n|\Z))*\(\s*vnnlib-version\s+<\s*(\d+)\.(\d+)\s*>\s*\)")


def vnnlib_version(text: str) -> tuple[int, int]:
    """``(major, minor)``: from a leading ``(vnnlib-version <M.m>)``; else 2.0 when the text declares a
    network (``declare-network``), 1.0 otherwise."""
    m = _VERSION.match(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    return (2, 0) if re.search(r"\(\s*declare-network\b", text) else (1, 0)


def parse_vnnlib(text: str, where: str = "<string>", n_inputs: int | None = None,
                 n_outputs: int | None = None, limits: VnnlibLimits = DEFAULT_LIMITS) -> VnnlibSpec:
    """Parse VNN-LIB 1.0 or 2.0 text (see :func:`read_vnnlib`); ``where`` names the source in error messages."""
    if len(text) > limits.max_bytes:
        raise PropertyError(f"{where}: {len(text)} characters, more than the limit of {limits.max_bytes}")
    version = vnnlib_version(text)
    if version[0] == 2:
        from ._vnnlib2 import parse_v2

        return parse_v2(text, where, n_inputs, n_outputs, limits)
    if version != (1, 0):
        raise PropertyError(f"{where}: VNN-LIB version {version[0]}.{version[1]} is not supported (1.0 and 2.0 are)")
    reader = _Reader(where, limits, {"X": n_inputs, "Y": n_outputs})
    dnf: _Dnf = [[]]
    for node in _sexprs(text, where, limits):
        op = reader.head(node)
        if op == "declare-const":
            reader.declare(node)
        elif op == "assert":
            if len(node) != 2:
                raise reader.fail(node.line, f"(assert ...) takes one formula, found {len(node) - 1}")
            dnf = reader.conjoin(dnf, reader.formula(node[1], node.line), node.line)
        elif op in ("set-logic", "set-info", "check-sat", "get-model", "exit", "vnnlib-version"):
            continue  # SMT-LIB commands some tools add; they carry no constraint
        else:
            raise reader.fail(node.line, f"unsupported command {op!r}; expected declare-const or assert")
    n_in = _dims(reader.declared, "X", n_inputs, where)
    n_out = _dims(reader.declared, "Y", n_outputs, where)
    return VnnlibSpec(_regions(dnf, n_in, n_out, where, limits), n_in, n_out, where)


def read_text(path: str | os.PathLike, max_bytes: int = DEFAULT_LIMITS.max_bytes) -> str:
    """A text file (``.gz`` decompressed in chunks) as ``str``, refused past ``max_bytes`` before reading on.

    Raises :class:`PropertyError` naming the file when it is missing, unreadable, too large or not UTF-8.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = _read_capped(fh, max_bytes, path)
        else:
            if path.stat().st_size > max_bytes:
                raise PropertyError(f"{path}: {path.stat().st_size} bytes, more than the limit of {max_bytes}")
            raw = path.read_bytes()
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise PropertyError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise PropertyError(f"{path}: cannot read as text ({exc})") from None


def _read_capped(fh, max_bytes: int, path: Path) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise PropertyError(f"{path}: decompresses to more than {max_bytes} bytes (the limit); refused")
        chunks.append(chunk)


def read_vnnlib(path: str | os.PathLike, n_inputs: int | None = None, n_outputs: int | None = None,
                limits: VnnlibLimits = DEFAULT_LIMITS) -> VnnlibSpec:
    """Read a VNN-LIB 1.0 or 2.0 property file (the version is detected from the text).

    Args:
        path: the ``.vnnlib`` file (or ``.vnnlib.gz``, as later VNN-COMP rounds ship them).
        n_inputs, n_outputs: the network's input / output sizes; a file that declares other sizes raises
            :class:`~nnmend.errors.PropertyError`. Default ``None``: take the sizes from the declarations.
        limits: :class:`VnnlibLimits`, the size caps checked before allocation.

    Returns:
        :class:`VnnlibSpec` with ``regions`` (input boxes, each with its unsafe output polytopes), float64.

    Raises:
        PropertyError naming the file and line (or construct) for text that does not parse, undeclared
        variables, non-box input constraints, inputs without finite bounds, size mismatches, files over a
        limit, and VNN-LIB 2.0 constructs beyond one network without hidden-node variables.
    """
    return parse_vnnlib(read_text(path, limits.max_bytes), str(path), n_inputs, n_outputs, limits)


def write_vnnlib(spec: VnnlibSpec, path: str | os.PathLike, comment: str = "") -> Path:
    """Write ``spec`` as a VNN-LIB 1.0 file (atomically) that :func:`read_vnnlib` reads back identically.

    Numbers are written with Python's shortest round-trip ``repr``, so float64 values survive exactly.
    """
    path = Path(path)
    if not spec.regions:
        raise PropertyError(f"{path}: cannot write a property with no input region")
    if spec.query is not None:      # its outputs are an augmented network's: 1.0 would read them as the model's
        raise PropertyError(f"{path}: {spec.source or 'the property'} reads hidden nodes, several networks or "
                            "non-box inputs, which VNN-LIB 1.0 cannot hold")
    text = format_vnnlib(spec, comment)
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return path
