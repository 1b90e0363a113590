"""Back-substitution bounds: CROWN (Zhang et al., NeurIPS 2018) / DeepPoly (Singh et al., POPL 2019).

A linear form ``A · f(x)`` on the output is pushed back layer by layer: exactly through affine layers,
through each ReLU by its linear relaxation (lower line where the coefficient is positive, upper line
where it is negative), until it is a linear function ``A' · x + c`` of the input, whose minimum over the
box is ``A' · mid - |A'| · rad + c``. A :class:`SumNode` pushes the same form back through every
branch and adds the results *before* concretising, so base network and patches stay correlated.

The ReLU relaxations need every ReLU's pre-activation bounds; ``intermediate="crown"`` computes them
by the same back-substitution from each ReLU (full CROWN/DeepPoly), intersected with interval bounds;
``intermediate="forward"`` uses forward symbolic bounds (cheap for small inputs);
``intermediate="ibp"`` uses interval bounds only (cheapest, loosest).
"""
from __future__ import annotations

import math

import torch

from .graph import Node, SumNode
from .forward import forward_bounds
from .interval import interval_pass

Frames = list[tuple[list[Node], int]]


def backsub(A: torch.Tensor, frames: Frames, pre: dict, alphas: dict | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``A`` (B, m, *shape) back from the point described by ``frames`` to the network input.

    ``frames`` lists ``(nodes, upto)`` from the innermost node list outwards: the form sits at the
    input of ``nodes[upto]`` (or the output of ``nodes`` when ``upto == len(nodes)``).
    Returns ``(A_in (B, m, *in_shape), const (B, m))``.
    """
    const = A.new_zeros(A.shape[:2])
    for nodes, upto in frames:
        for n in reversed(nodes[:upto]):
            if isinstance(n, SumNode):
                parts = [backsub(A, [(b, len(b))], pre, alphas) for b in n.branches]
                A = parts[0][0]
                for p in parts[1:]:
                    A = A + p[0]
                const = const + sum(p[1] for p in parts)
            elif n.is_relu:
                lo, hi = pre[n]
                A, c = n.backward_relaxed(A, lo, hi, None if alphas is None else alphas.get(n))
                const = const + c
            else:
                A, c = n.backward(A)
                const = const + c
    return A, const


def concretize(A: torch.Tensor, const: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Minimum of ``A · x + const`` over the box ``[lo, hi]``: (B, m)."""
    mid = ((hi + lo) / 2).flatten(1).unsqueeze(-1)
    rad = ((hi - lo) / 2).flatten(1).unsqueeze(-1)
    A = A.flatten(2)
    return (A @ mid).squeeze(-1) - (A.abs() @ rad).squeeze(-1) + const


def _unstable_bounds(unstable: torch.Tensor, frames: Frames, pre: dict, lo: torch.Tensor, hi: torch.Tensor,
                     shape: tuple[int, ...], chunk_elems: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substituted bounds of the unstable neurons ``unstable`` (B, n) at the point ``frames`` describes.

    Each box gets rows ``[+e_i; -e_i]`` for its unstable neurons. Boxes are grouped by their unstable count
    (powers of two) and each group is padded only to its own largest count: padding every box to the batch's
    largest count wasted 78 % of the rows in branch and bound on ACAS Xu, where box sizes differ widely.
    Boxes without unstable neurons are skipped; groups go in chunks of at most ``chunk_elems`` coefficients.
    Returns ``(flat index box * n + neuron (P,), bounds (P, 2))``: the lower bound and minus the upper bound.
    """
    n = unstable.shape[1]
    widest = max([n, lo[0].numel()] + [math.prod(x.in_shape) for seq, upto in frames for x in seq[:upto]
                                       if getattr(x, "in_shape", None)])
    counts = unstable.sum(1)
    level = torch.where(counts > 0, torch.log2(counts.clamp(min=1).to(torch.float64)).floor(), -1.0)
    flats, outs = [], []
    for v in level.unique().tolist():
        if v < 0:
            continue
        boxes = torch.nonzero(level == v).squeeze(1)
        r = int(counts[boxes].max())
        step = max(1, chunk_elems // (2 * r * widest))
        for s in range(0, len(boxes), step):
            b = boxes[s:s + step]
            valid, idx = unstable[b].to(torch.int8).topk(r, dim=1, sorted=False)      # unstable neurons first
            valid = valid.bool()
            eye = torch.zeros(len(b), r, n, dtype=lo.dtype, device=lo.device)
            eye.scatter_(2, idx.unsqueeze(-1), valid.unsqueeze(-1).to(lo.dtype))
            whole = len(b) == len(lo)
            sub = pre if whole else {m: (l[b], u[b]) for m, (l, u) in pre.items()}
            A, c = backsub(torch.cat([eye, -eye], 1).reshape(len(b), 2 * r, *shape), frames, sub)
            bd = concretize(A, c, lo if whole else lo[b], hi if whole else hi[b])          # (nb, 2r)
            flats.append((b.unsqueeze(1) * n + idx)[valid])
            outs.append(torch.stack([bd[:, :r][valid], bd[:, r:][valid]], 1))
    if not flats:
        return torch.zeros(0, dtype=torch.long, device=lo.device), lo.new_zeros((0, 2))
    return torch.cat(flats), torch.cat(outs)


def _interval_is_exact(frames: Frames) -> bool:
    """True when the form's point is reached from the input by at most one weight layer (Linear/Conv2d)
    and otherwise only element-wise or shape operators: every neuron there is one affine function of the
    box's coordinates, so its interval bound is already its exact range and back-substitution (costly
    for a wide first layer, e.g. a convolution) cannot tighten it."""
    from .operators.normalization import _ElementwiseBase
    from .operators.shape import BoundFlatten, BoundIdentity

    weights = 0
    for nodes, upto in frames:
        for n in nodes[:upto]:
            if isinstance(n, SumNode) or n.is_relu:
                return False
            # anything not known to map boxes to boxes exactly counts as a weight layer (conservative)
            weights += not isinstance(n, (BoundFlatten, BoundIdentity, _ElementwiseBase))
    return weights <= 1


def intermediate_bounds(nodes: list[Node], lo: torch.Tensor, hi: torch.Tensor, mode: str = "crown",
                        known: dict | None = None) -> dict:
    """Pre-activation bounds ``{relu_op: (l, u)}`` for every ReLU, each (B, *shape).

    ``known``: valid pre-activation bounds already known for these boxes (e.g. the parent box's in
    branch and bound); they are intersected in, and only neurons they leave unstable are recomputed.
    Back-substitution is run only for unstable neurons (a stable neuron's relaxation is exact whatever
    its bounds), which is most of the saving on small boxes.
    """
    if mode in ("ibp", "forward"):
        ibp: dict = {}
        interval_pass(nodes, lo, hi, pre=known, record=ibp)
        return ibp if mode == "ibp" else forward_bounds(nodes, lo, hi, ibp)
    pre: dict = {}
    def walk(seq: list[Node], outer: Frames, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # carries interval bounds forward too, so each layer's interval starts from the tightened ReLUs
        for i, n in enumerate(seq):
            n.in_shape = tuple(l.shape[1:])
            frames = [(seq, i)] + outer
            if isinstance(n, SumNode):
                parts = [walk(b, frames, l, u) for b in n.branches]
                l, u = parts[0]
                for p in parts[1:]:
                    l, u = l + p[0], u + p[1]
                continue
            if n.is_relu:
                if known is not None and n in known:
                    l, u = torch.max(l, known[n][0]), torch.min(u, known[n][1])
                lf, uf = l.flatten(1), u.flatten(1)
                unstable = (lf < 0) & (uf > 0)
                if unstable.any() and not _interval_is_exact(frames):
                    flat, b = _unstable_bounds(unstable, frames, pre, lo, hi, n.in_shape)
                    lf = lf.flatten().scatter_reduce(0, flat, b[:, 0], "amax").reshape(lf.shape)
                    uf = uf.flatten().scatter_reduce(0, flat, -b[:, 1], "amin").reshape(uf.shape)
                pre[n] = l, u = lf.reshape(l.shape), uf.reshape(u.shape)
            l, u = n.interval(l, u)
            n.out_shape = tuple(l.shape[1:])
        return l, u

    walk(nodes, [], lo, hi)
    return pre


def spec_matrix(C: torch.Tensor | None, B: int, out_shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``C`` (m, n_out) or (B, m, n_out) as a form (B, m, *out_shape); ``None`` means the identity."""
    n_out = 1
    for s in out_shape:
        n_out *= s
    if C is None:
        C = torch.eye(n_out, dtype=like.dtype, device=like.device)
    C = C.to(dtype=like.dtype, device=like.device)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(B, -1, -1)
    return C.reshape(B, C.shape[1], *out_shape)


def crown_lower(nodes: list[Node], lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict,
                alphas: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bound of ``A · f(x)`` over each box, and the input-level coefficients.

    Returns ``(lb (B, m), A_in (B, m, *in_shape))``; ``A_in`` is the slope of the linear lower bound,
    i.e. how much each input dimension matters (used to choose branching dimensions).
    """
    A_in, const = backsub(A, [(nodes, len(nodes))], pre, alphas)
    return concretize(A_in, const, lo, hi), A_in
