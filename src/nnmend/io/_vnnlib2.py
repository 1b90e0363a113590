"""VNN-LIB 2.0 read into nnmend's property objects (behind :func:`nnmend.io.vnnlib.parse_vnnlib`).

The ``vnnlib`` package (the standard's parser, C++) checks the text: syntax, types, declared tensors,
index bounds. Its syntax tree is then translated, with an explicit stack, into the S-expressions of the
1.0 reader (``X[i,j]`` becomes ``X_k`` with ``k`` the row-major flat index), so both versions share one
evaluation of formulas, one disjunctive normal form and one set of size caps. Several networks (each the
given model: ``equal-to``, ``isomorphic-to`` or unrelated), hidden-node variables and constraints over
inputs that are not a box are read as output constraints of an augmented network (see
:class:`nnmend.io.vnnlib.NetworkQuery`). What nnmend's properties cannot express is refused with one line
naming the file and the construct: ``!=``, products of more than two variables, non-floating-point inputs.
"""
from __future__ import annotations

import json
import math
import re

from ..errors import PropertyError
from .vnnlib import (DEFAULT_LIMITS, NetworkQuery, Region, VnnlibLimits, VnnlibSpec, _Reader, _regions, _Sexpr,
                     _Term, check_nesting)

_OPS = {"And": "and", "Or": "or", "LessEqual": "<=", "LessThan": "<", "GreaterEqual": ">=",
        "GreaterThan": ">", "Equal": "=", "Plus": "+", "Minus": "-", "Negate": "-", "Multiply": "*"}
_FLOAT_TYPES = {"Real", "F16", "F32", "F64", "BF16", "F8E4M3FN", "F8E5M2", "F8E4M3FNUZ", "F8E5M2FNUZ", "F4E2M1"}
_INT_TYPES = {"I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64"}


def _line_of(text: str, pattern: str) -> int:
    """Line of the first match of ``pattern`` in ``text`` (1 when absent)."""
    m = re.search(pattern, text)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _library_message(exc: Exception) -> str:
    """The ``vnnlib`` package's error (a JSON report or one line) as one line."""
    raw = str(exc).strip()
    try:
        err = json.loads(raw)["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return raw.splitlines()[0] if raw else type(exc).__name__
    symbol = f" ({err['offendingSymbol']})" if err.get("offendingSymbol") else ""
    hint = f": {err['hint']}" if err.get("hint") else ""
    return f"{err.get('line', '?')}: {err.get('message', 'error')}{symbol}{hint}"


def _size(decl, where: str, what: str, limit: int) -> int:
    """Element count of a declared tensor, refused over ``limit`` (checked before anything is built).

    Inputs must be real or floating point (a box over the reals would over-approximate an integer domain);
    outputs may also be integers (their values are read as reals)."""
    dtype = str(decl.dtype).split(".")[-1]
    allowed = _FLOAT_TYPES if what == "input" else _FLOAT_TYPES | _INT_TYPES
    if dtype not in allowed:
        raise PropertyError(f"{where}: {what} {decl.name} has type {dtype}; only "
                            f"{'real or floating-point' if what == 'input' else 'numeric'} tensors are supported")
    n = math.prod(decl.shape) if decl.shape else 1
    if n > limit:
        raise PropertyError(f"{where}: {what} {decl.name} declares {n} values, more than the limit of {limit}")
    return n


def _networks(query, text: str, where: str) -> list:
    """The declared networks; several must agree in their input and output sizes (each is the given model)."""
    nets = list(query.networks)
    if not nets:
        raise PropertyError(f"{where}:1: declares no network (declare-network)")
    for net in nets:
        for kind, decls in (("input", net.inputs), ("output", net.outputs)):
            if not decls:
                raise PropertyError(f"{where}:{_line_of(text, 'declare-network')}: network {net.name} declares no "
                                    f"{kind} tensor")
    return nets


def _offsets(decls, where: str, what: str, limit: int, start: int = 0) -> tuple[dict[str, int], int]:
    """Flat offset (from ``start``) of each declared tensor in the concatenation of all of them (declaration
    order: the order of the ONNX graph's inputs / outputs, which the network reads / writes concatenated)."""
    offsets, total = {}, start
    for d in decls:
        offsets[d.name] = total
        total += _size(d, where, what, limit)
    if total - start > limit:
        raise PropertyError(f"{where}: the {what} tensors declare {total - start} values, more than the limit of {limit}")
    return offsets, total - start


def _hidden_name(decl) -> str:
    return str(getattr(decl, "onnx_name", "") or decl.name).strip('"')


def _flat(indices: list[int], shape: list[int]) -> int:
    k = 0
    for i, n in zip(indices, shape):
        k = k * n + i
    return k


def _leaf(node, line: int, where: str, offsets: dict[str, int]) -> str:
    """A variable or number of the 2.0 tree as a 1.0 token (``offsets``: each tensor's flat offset)."""
    kind = type(node).__name__
    if kind == "Var":
        prefix = {"Input": "X", "Output": "Y", "Hidden": "Y"}.get(str(node.kind).split(".")[-1])
        if prefix is None or node.name not in offsets:
            raise PropertyError(f"{where}:{line}: variable {node.name} is neither an input nor an output tensor")
        return f"{prefix}_{offsets[node.name] + _flat(list(node.indices), list(node.shape))}"
    if kind in ("Float", "Literal"):
        return node.lexeme
    if kind == "Int":
        return str(node.value)
    raise PropertyError(f"{where}:{line}: unsupported term {str(node)[:60]!r}")


def _translate(expr, where: str, offsets: dict[str, int]) -> _Term:
    """The 2.0 syntax tree of one assertion as 1.0 S-expressions (explicit stack; lines from the variables)."""
    def opened(node) -> list:
        name = type(node).__name__
        if name == "NotEqual":
            raise PropertyError(f"{where}:{_first_line(node)}: (!= ...) is not supported (its closure is every value)")
        if name not in _OPS:
            return [node, None, [], 0]
        out = _Sexpr([_OPS[name]])
        return [node, out, list(node.children()), 0]

    root = opened(expr)
    if root[1] is None:
        return _leaf(expr, getattr(expr, "line", 0), where, offsets)
    stack = [root]
    while True:
        frame = stack[-1]
        node, out, children, i = frame
        if i < len(children):
            frame[3] = i + 1
            child = opened(children[i])
            if child[1] is None:
                line = getattr(children[i], "line", 0) or out.line
                out.append(_leaf(children[i], line, where, offsets))
                out.line = out.line or line
            else:
                stack.append(child)
            continue
        stack.pop()
        if not stack:
            return out
        parent = stack[-1][1]
        parent.append(out)
        parent.line = parent.line or out.line


def _first_line(node) -> int:
    """Line of the first variable or number under ``node`` (explicit stack)."""
    todo = [node]
    while todo:
        n = todo.pop()
        if getattr(n, "line", 0):
            return n.line
        todo.extend(reversed(list(n.children())))
    return 0


def parse_v2(text: str, where: str, n_inputs: int | None, n_outputs: int | None,
             limits: VnnlibLimits = DEFAULT_LIMITS) -> VnnlibSpec:
    """Parse VNN-LIB 2.0 text into a :class:`VnnlibSpec`. Several input (output) tensors are one flat input
    (output) in declaration order. Hidden-node variables, several networks (each the given model) and input
    constraints that are not a box are read over an augmented network described by the spec's ``query``
    (:class:`nnmend.io.vnnlib.NetworkQuery`); ``n_inputs`` / ``n_outputs`` are then one network's sizes."""
    check_nesting(text, where, limits)          # the C++ parser recurses: refuse deep nesting before it runs
    try:
        import vnnlib
    except ImportError:
        raise PropertyError(f"{where}: reading VNN-LIB 2.0 needs the 'vnnlib' package (pip install vnnlib)") from None
    try:
        query = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as exc:
        raise PropertyError(f"{where}:{_library_message(exc)}") from None
    nets = _networks(query, text, where)
    cap = limits.max_variables
    offsets: dict[str, int] = {}
    n_in = n_out = z = 0
    hidden: list[tuple[tuple[str, int], ...]] = []
    for net in nets:
        ins, k_in = _offsets(net.inputs, where, "input", cap, n_in * len(hidden))
        outs, k_out = _offsets(net.outputs, where, "output", cap, z)
        hid, k_hid = _offsets(net.hidden, where, "hidden", cap, z + k_out)
        if hidden and (k_in, k_out) != (n_in, n_out):
            raise PropertyError(f"{where}: network {net.name} has {k_in} inputs and {k_out} outputs but "
                                f"{nets[0].name} has {n_in} and {n_out}; every network is the given model")
        n_in, n_out = k_in, k_out
        offsets.update({**ins, **outs, **hid})
        hidden.append(tuple((_hidden_name(d), _size(d, where, "hidden", cap)) for d in net.hidden))
        z += k_out + k_hid
    for n, expected, what in ((n_in, n_inputs, "inputs"), (n_out, n_outputs, "outputs")):
        if expected is not None and n != expected:
            raise PropertyError(f"{where}: declares {n} {what} but the network has {expected}")
    total_in = n_in * len(nets)
    reader = _Reader(where, limits, {"X": total_in, "Y": z}, declare_sizes=True, products=True)
    dnf: list = [[]]
    for assertion in query.assertions:
        tree = _translate(assertion.expr, where, offsets)
        line = tree.line if isinstance(tree, _Sexpr) else 0
        dnf = reader.conjoin(dnf, reader.formula(tree, line), line)
    # columns: the outputs and hidden values (z), the input again, then the products of two variables
    column = {"Y": lambda j: j, "X": lambda j: z + j}
    pairs = tuple(tuple(column[k](j) for k, j in pair) for pair in reader.monomials)
    monomials = {pair: z + total_in + i for pair, i in reader.monomials.items()}
    regions = _regions(dnf, total_in, z + total_in + len(pairs), where, limits, x_as_y=z, monomials=monomials)
    with_x = bool(pairs) or any(bool((A[:, z:] != 0).any()) for r in regions for A, _ in r.unsafe)
    if not with_x:
        regions = [Region(r.lo, r.hi, [(A[:, :z], b) for A, b in r.unsafe], r.strict) for r in regions]
    if len(nets) == 1 and not any(hidden) and not with_x:
        return VnnlibSpec(regions, n_in, n_out, where)
    q = NetworkQuery(len(nets), n_in, n_out, tuple(hidden), with_x, pairs)
    return VnnlibSpec(regions, total_in, z + (total_in + len(pairs) if with_x else 0), where, q)
