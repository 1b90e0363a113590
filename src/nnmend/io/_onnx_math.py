"""ONNX arithmetic beyond affine maps, for :mod:`nnmend.io._onnx_graph`'s walk (the VNN-LIB conformance set).

ReduceSum / ReduceMean, Expand, Pow with a constant exponent or base, comparisons (Greater, Less, Equal,
…) and Cast to bool or to an integer type as 0/1 steps and rounding, Sign, Where, Not, and the products of two
data tensors (Mul; Div as a product with ``x ** -1``), each as one module of :mod:`nnmend.layers_math`
(bounded soundly by :mod:`nnmend.bounds.operators`). Data tensors of different shapes are broadcast with
an explicit ``Expand``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..layers import Concat, Reshape
from ..layers_math import ConstConcat, Expand, Power, Product, Reduce, Rounding, Sign, Step
from ._onnx_graph import _affine_consts, _append_affine, _Builder, _Tensor


def _f32(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def expand_to(b: _Builder, t: _Tensor, onnx_shape: tuple[int, ...], batch: bool) -> _Tensor:
    """``t`` broadcast to ``onnx_shape`` (ONNX rules: leading axes added, size-1 axes repeated)."""
    shape = tuple(int(d) for d in onnx_shape)
    padded = (1,) * (len(shape) - t.rank) + tuple(t.onnx_shape)
    t = b.reshape_to(t, padded, batch=batch)
    per = shape[1:] if batch else shape
    if tuple(t.probe.shape[1:]) == per:
        return t
    return b.emit(Expand(per), [t], batch=batch)


def broadcast_pair(b: _Builder, x: _Tensor, y: _Tensor) -> tuple[_Tensor, _Tensor, bool]:
    """Two data tensors brought to one shape; the result keeps a batch axis where both can."""
    if x.onnx_shape == y.onnx_shape:
        return x, y, x.batch or y.batch
    try:
        target = np.broadcast_shapes(x.onnx_shape, y.onnx_shape)
    except ValueError:
        raise b.fail(f"data tensors of shapes {list(x.onnx_shape)} and {list(y.onnx_shape)} do not broadcast") from None
    batch = (x.batch or y.batch) and len(target) >= 2 and target[0] == 1
    return expand_to(b, x, target, batch), expand_to(b, y, target, batch), batch


def _const_for(b: _Builder, t: _Tensor, c) -> tuple[_Tensor, np.ndarray]:
    """A constant operand broadcastable against ``t`` per sample (``t`` expanded first where it would grow)."""
    c = np.asarray(c, dtype=np.float64)
    try:
        target = np.broadcast_shapes(t.onnx_shape, c.shape)
    except ValueError:
        raise b.fail(f"constant of shape {list(c.shape)} does not broadcast to the data {list(t.onnx_shape)}") from None
    if target != t.onnx_shape:
        t = expand_to(b, t, target, t.batch and len(target) == t.rank)
    return t, _affine_consts(b, t, c)


def op_reduce(b: _Builder, ins: list) -> _Tensor:
    x = ins[0]
    mean = b.node.op_type == "ReduceMean"
    if len(ins) > 1 and ins[1] is not None:
        if isinstance(ins[1], _Tensor):
            raise b.fail("axes computed from the data are not supported")
        axes = [int(v) for v in np.asarray(ins[1]).reshape(-1)]
    else:
        axes = [int(v) for v in (b.attr("axes") or [])]
    keep = bool(b.attr("keepdims", 1))
    if not axes:
        if b.attr("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.rank))
    axes = sorted({a % x.rank for a in axes}) if x.rank else []
    onnx_shape = list(x.onnx_shape)
    per_axes = tuple(a - 1 if x.batch else a for a in axes if not (x.batch and a == 0))
    batch = x.batch and (keep or 0 not in axes)
    if not per_axes:                                           # only the batch axis (size 1): values unchanged
        out = [d for i, d in enumerate(onnx_shape) if keep or i not in axes] or [1]
        return b.reshape_to(x, tuple(out), batch=batch)
    keep_module = keep or len(per_axes) == x.probe.dim() - 1   # a per-sample scalar keeps one axis of size 1
    t = b.emit(Reduce(per_axes, keep_module, mean), [x], batch=x.batch)
    if not keep and (x.batch and 0 in axes or keep_module):
        t = b.reshape_to(t, tuple(t.probe.shape[1:]) if not keep_module else (1,), batch=False)
    return _Tensor(t.node, t.probe, batch)


def op_expand(b: _Builder, ins: list) -> _Tensor:
    x, shape = ins
    if isinstance(shape, _Tensor):
        raise b.fail("a shape computed from the data is not supported")
    try:
        target = np.broadcast_shapes(x.onnx_shape, tuple(int(v) for v in np.asarray(shape).reshape(-1)))
    except ValueError:
        raise b.fail(f"shape {np.asarray(shape).tolist()} does not broadcast with the data {list(x.onnx_shape)}") from None
    return expand_to(b, x, target, x.batch and len(target) == x.rank)


def op_concat_const(b: _Builder, ins: list, axis: int) -> _Tensor:
    """Concat of data tensors and constants: data runs joined by ``Concat``, constants by ``ConstConcat``."""
    first = next(i for i, t in enumerate(ins) if isinstance(t, _Tensor))
    x = ins[first]
    ax = b.per_axis(x, axis)
    per = tuple(x.probe.shape[1:])

    def block(c) -> torch.Tensor:
        c = np.asarray(c, dtype=np.float64)
        c = c[0] if x.batch and c.ndim == x.rank else c
        if c.ndim != len(per) or any(c.shape[i] != per[i] for i in range(len(per)) if i != ax):
            raise b.fail(f"constant of shape {list(np.shape(c))} does not fit the data {list(x.onnx_shape)} along "
                         f"axis {axis}")
        return _f32(c)

    before = [block(c) for c in ins[:first]]
    acc = x
    if before:
        acc = b.emit(ConstConcat(ax, torch.cat(before, ax), torch.zeros(*per[:ax], 0, *per[ax + 1:])), [acc])
    for t in ins[first + 1:]:
        if isinstance(t, _Tensor):
            acc = b.emit(Concat(ax), [acc, t], batch=acc.batch or t.batch)
        else:
            c = block(t)
            empty = torch.zeros(*c.shape[:ax], 0, *c.shape[ax + 1:])
            acc = b.emit(ConstConcat(ax, empty, c), [acc])
    return acc


def op_pow(b: _Builder, ins: list) -> _Tensor:
    x, e = ins
    if isinstance(x, _Tensor) and isinstance(e, _Tensor):
        raise b.fail("a power with a data exponent of a data base is not supported")
    if isinstance(x, _Tensor):
        x, c = _const_for(b, x, e)
        if (c == 1).all():
            return x
        if (c == 0).all():
            return _append_affine(b, x, np.zeros(()), np.ones(()))
        return b.emit(Power(_f32(c)), [x])
    t, c = _const_for(b, e, x)
    if (c <= 0).any():
        raise b.fail("a power of a non-positive constant base is not supported")
    return b.emit(Power(_f32(c), base=True), [t])


_KINDS = {"Greater": "gt", "GreaterOrEqual": "ge", "Less": "lt", "LessOrEqual": "le", "Equal": "eq"}
_FLIP = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq"}


def op_compare(b: _Builder, ins: list) -> _Tensor:
    x, y = ins
    kind = _KINDS[b.node.op_type]
    if isinstance(x, _Tensor) and isinstance(y, _Tensor):
        x, y, batch = broadcast_pair(b, x, y)
        from ..layers import Sub

        d = b.emit(Sub(), [x, y], batch=batch)
        return b.emit(Step(kind, torch.zeros(())), [d])
    if not isinstance(x, _Tensor):
        x, y, kind = y, x, _FLIP[kind]
    x, c = _const_for(b, x, y)
    return b.emit(Step(kind, _f32(c)), [x])


def op_not(b: _Builder, ins: list) -> _Tensor:
    return b.emit(Step("eq", torch.zeros(())), [ins[0]])


def cast(b: _Builder, x: _Tensor, to_kind: str) -> _Tensor:
    """``Cast`` of data to bool (``x != 0``) or to a signed integer type (truncation toward zero)."""
    if to_kind == "b":
        return b.emit(Step("ne", torch.zeros(())), [x])
    if to_kind == "i":
        return b.emit(Rounding("trunc"), [x])
    raise b.fail("casting data to an unsigned or non-numeric type is not supported")


def op_rounding(b: _Builder, ins: list) -> _Tensor:
    return b.emit(Rounding(b.node.op_type.lower()), [ins[0]])


def op_sign(b: _Builder, ins: list) -> _Tensor:
    return b.emit(Sign(), [ins[0]])


def product(b: _Builder, x: _Tensor, y: _Tensor) -> _Tensor:
    """``x * y`` of two data tensors: ``x ** 2`` when they are one tensor, else a stacked pair's product."""
    if x.node == y.node and x.onnx_shape == y.onnx_shape:
        return b.emit(Power(torch.tensor(2.0)), [x])
    x, y, batch = broadcast_pair(b, x, y)
    shape = tuple(x.probe.shape[1:])
    n = int(np.prod(shape))
    flat = [b.emit(Reshape((1, n)), [t], batch=False) for t in (x, y)]
    pair = b.emit(Concat(0), flat, batch=False)
    out = b.emit(Product(), [pair], batch=False)
    return b.emit(Reshape(shape), [out], batch=batch) if shape != (n,) else _Tensor(out.node, out.probe, batch)


def op_mul_div(b: _Builder, x, y) -> _Tensor:
    """Mul / Div where at least one side is a non-constant data tensor and the map is not affine."""
    if b.node.op_type == "Mul":
        return product(b, x, y)
    if isinstance(x, _Tensor):
        return product(b, x, b.emit(Power(torch.tensor(-1.0)), [y]))
    recip = b.emit(Power(torch.tensor(-1.0)), [y])               # constant / data
    recip, k = _const_for(b, recip, x)
    return _append_affine(b, recip, k, np.zeros(()))


def op_where(b: _Builder, ins: list) -> _Tensor:
    """``Where(cond, x, y) = y + cond * (x - y)`` with ``cond`` 0/1 data; ``x``, ``y`` data or constants."""
    cond, x, y = ins
    if not isinstance(cond, _Tensor):
        c = np.asarray(cond, dtype=bool)
        if isinstance(x, _Tensor) and isinstance(y, _Tensor):
            raise b.fail("a constant condition choosing between two data tensors is not supported")
        t, k = (x, y) if isinstance(x, _Tensor) else (y, x)
        t, m = _const_for(b, t, c if t is x else ~c)
        t, k = _const_for(b, t, k)
        return _append_affine(b, t, m.astype(np.float64), (1 - m) * k)
    if isinstance(x, _Tensor) and isinstance(y, _Tensor):
        from ..layers import Add, Sub

        x, y, batch = broadcast_pair(b, x, y)
        diff = b.emit(Sub(), [x, y], batch=batch)
        prod = product(b, cond, diff)
        prod, y, batch = broadcast_pair(b, prod, y)
        return b.emit(Add(), [prod, y], batch=batch)
    if not isinstance(x, _Tensor) and not isinstance(y, _Tensor):
        cond, d = _const_for(b, cond, np.asarray(x, np.float64) - np.asarray(y, np.float64))
        cond, k = _const_for(b, cond, y)
        return _append_affine(b, cond, d, k)
    if isinstance(x, _Tensor):                                   # y constant: cond * (x - y) + y
        x, yk = _const_for(b, x, y)
        diff = _append_affine(b, x, np.ones(()), -yk)
        prod = product(b, cond, diff)
        prod, yk = _const_for(b, prod, y)
        return _append_affine(b, prod, np.ones(()), yk)
    y, xk = _const_for(b, y, x)                                  # x constant: y + cond * (x - y)
    diff = _append_affine(b, y, -np.ones(()), xk)
    prod = product(b, cond, diff)
    from ..layers import Add

    prod, y, batch = broadcast_pair(b, prod, y)
    return b.emit(Add(), [prod, y], batch=batch)


MATH_HANDLERS = {"ReduceSum": op_reduce, "ReduceMean": op_reduce, "Expand": op_expand, "Pow": op_pow,
                 "Greater": op_compare, "GreaterOrEqual": op_compare, "Less": op_compare,
                 "LessOrEqual": op_compare, "Equal": op_compare, "Not": op_not, "Where": op_where,
                 "Floor": op_rounding, "Ceil": op_rounding, "Round": op_rounding, "Sign": op_sign}
