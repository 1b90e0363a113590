"""VNN-LIB 2.0 read into nnmend's property objects (behind :func:`nnmend.io.vnnlib.parse_vnnlib`).

The ``vnnlib`` package (the standard's parser, C++) checks the text: syntax, types, declared tensors,
index bounds. Its syntax tree is then translated, with an explicit stack, into the S-expressions of the
1.0 reader (``X[i,j]`` becomes ``X_k`` with ``k`` the row-major flat index), so both versions share one
evaluation of formulas, one disjunctive normal form and one set of size caps. What nnmend's properties
cannot express is refused with one line naming the file and the construct: several networks
(``equal-to`` / ``isomorphic-to`` included), several input or output tensors, hidden-node variables,
``!=``, non-floating-point tensors, and (from the shared evaluation) non-box input constraints and
constraints that mix inputs and outputs.
"""
from __future__ import annotations

import json
import math
import re

from ..errors import PropertyError
from .vnnlib import (DEFAULT_LIMITS, VnnlibLimits, VnnlibSpec, _Reader, _regions, _Sexpr, _Term,
                     check_nesting)

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


def _the_network(query, text: str, where: str):
    """The single network of ``query`` with one input and one output tensor and no hidden node, or a refusal."""
    nets = list(query.networks)
    if len(nets) != 1:
        names = ", ".join(n.name for n in nets)
        line = _line_of(text, r"\((?:equal-to|isomorphic-to)\b") if len(nets) > 1 else 1
        raise PropertyError(f"{where}:{line}: declares {len(nets)} networks ({names}); nnmend reads a property "
                            "over one network (declare-network with equal-to / isomorphic-to is not supported)")
    net = nets[0]
    if net.hidden:
        raise PropertyError(f"{where}:{_line_of(text, r'declare-hidden')}: hidden-node variable "
                            f"{net.hidden[0].name} (declare-hidden) is not supported")
    for kind, decls in (("input", net.inputs), ("output", net.outputs)):
        if len(decls) != 1:
            raise PropertyError(f"{where}:{_line_of(text, 'declare-' + kind)}: network {net.name} declares "
                                f"{len(decls)} {kind} tensors ({', '.join(d.name for d in decls)}); nnmend reads "
                                f"exactly one {kind} tensor")
    return net


def _flat(indices: list[int], shape: list[int]) -> int:
    k = 0
    for i, n in zip(indices, shape):
        k = k * n + i
    return k


def _leaf(node, line: int, where: str) -> str:
    """A variable or number of the 2.0 tree as a 1.0 token."""
    kind = type(node).__name__
    if kind == "Var":
        prefix = {"Input": "X", "Output": "Y"}.get(str(node.kind).split(".")[-1])
        if prefix is None:
            raise PropertyError(f"{where}:{line}: variable {node.name} is neither the input nor the output tensor")
        return f"{prefix}_{_flat(list(node.indices), list(node.shape))}"
    if kind in ("Float", "Literal"):
        return node.lexeme
    if kind == "Int":
        return str(node.value)
    raise PropertyError(f"{where}:{line}: unsupported term {str(node)[:60]!r}")


def _translate(expr, where: str) -> _Term:
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
        return _leaf(expr, getattr(expr, "line", 0), where)
    stack = [root]
    while True:
        frame = stack[-1]
        node, out, children, i = frame
        if i < len(children):
            frame[3] = i + 1
            child = opened(children[i])
            if child[1] is None:
                line = getattr(children[i], "line", 0) or out.line
                out.append(_leaf(children[i], line, where))
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
    """Parse VNN-LIB 2.0 text into a :class:`VnnlibSpec` (one network, one input and one output tensor)."""
    check_nesting(text, where, limits)          # the C++ parser recurses: refuse deep nesting before it runs
    try:
        import vnnlib
    except ImportError:
        raise PropertyError(f"{where}: reading VNN-LIB 2.0 needs vnnlib: pip install 'nnmend[verify]'") from None
    try:
        query = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as exc:
        raise PropertyError(f"{where}:{_library_message(exc)}") from None
    net = _the_network(query, text, where)
    n_in = _size(net.inputs[0], where, "input", limits.max_variables)
    n_out = _size(net.outputs[0], where, "output", limits.max_variables)
    for n, expected, what in ((n_in, n_inputs, "inputs"), (n_out, n_outputs, "outputs")):
        if expected is not None and n != expected:
            raise PropertyError(f"{where}: declares {n} {what} but the network has {expected}")
    reader = _Reader(where, limits, {"X": n_in, "Y": n_out}, declare_sizes=True)
    dnf: list = [[]]
    for assertion in query.assertions:
        tree = _translate(assertion.expr, where)
        line = tree.line if isinstance(tree, _Sexpr) else 0
        dnf = reader.conjoin(dnf, reader.formula(tree, line), line)
    return VnnlibSpec(_regions(dnf, n_in, n_out, where, limits), n_in, n_out, where)
