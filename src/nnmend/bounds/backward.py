"""Back-substitution bounds: CROWN (Zhang et al., NeurIPS 2018) / DeepPoly (Singh et al., POPL 2019).

A linear form ``A · f(x)`` on a node's output is pushed back through the graph in reverse topological
order: exactly through linear nodes (one form per input; the forms of a node's several consumers are
added), through each non-linear node by its linear relaxation (lower line where the coefficient is
positive, upper line where it is negative), until it is a linear function ``A' · x + c`` of the input,
whose minimum over the box is ``A' · mid - |A'| · rad + c``. Branches that merge (a sum of networks, a
residual block) stay correlated: their forms are added *before* concretisation.

The relaxations need every non-linear node's input bounds; ``intermediate="crown"`` computes them by
the same back-substitution from each such input (full CROWN/DeepPoly), intersected with interval bounds;
``intermediate="forward"`` uses forward symbolic bounds (cheap for small inputs);
``intermediate="ibp"`` uses interval bounds only (cheapest, loosest).
"""
from __future__ import annotations

import math

import torch

from . import patches
from .forward import forward_bounds
from .graph import BoundGraph
from .interval import interval_pass


def backsub(A: torch.Tensor, graph: BoundGraph, start: int, pre: dict, alphas: dict | None = None,
            record: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``A`` (B, m, *shape) from the output of node ``start`` back to the network input.

    ``record``, if given, receives the form reaching each non-linear node's output (keyed by the node).
    Returns ``(A_in (B, m, *in_shape), const (B, m))``.
    """
    return _walk({start: A}, A.new_zeros(A.shape[:2]), graph, start, pre, alphas, record)


def _walk(pending: dict[int, torch.Tensor], const: torch.Tensor, graph: BoundGraph, start: int, pre: dict,
          alphas: dict | None, record: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`backsub` from forms already pending at nodes ``<= start`` (and a constant so far)."""
    for i in range(start, -1, -1):
        Ai = pending.pop(i, None)
        if Ai is None:
            continue
        n = graph.nodes[i]
        if n.nonlinear:
            if record is not None:
                record[n] = Ai
            lo, hi = pre[n]
            A_in, c = n.backward_relaxed(Ai, lo, hi, None if alphas is None else alphas.get(n))
            parts = [A_in]
        else:
            parts, c = n.backward_inputs(Ai)
        const = const + c
        for j, P in zip(n.inputs, parts):
            pending[j] = pending[j] + P if j in pending else P
    A_in = pending.get(-1)
    if A_in is None:                                # the form does not depend on the input
        raise ValueError("backsub: the node does not depend on the network input")
    return A_in, const


def concretize(A: torch.Tensor, const: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Minimum of ``A · x + const`` over the box ``[lo, hi]``: (B, m)."""
    mid = ((hi + lo) / 2).flatten(1).unsqueeze(-1)
    rad = ((hi - lo) / 2).flatten(1).unsqueeze(-1)
    A = A.flatten(2)
    return (A @ mid).squeeze(-1) - (A.abs() @ rad).squeeze(-1) + const


DEFAULT_BUDGET = 1 << 29      # bytes: 2^24 float32 coefficients per chunk of rows (eight live tensors of it)


def _unstable_bounds(unstable: torch.Tensor, graph: BoundGraph, at: int, pre: dict, lo: torch.Tensor,
                     hi: torch.Tensor, shape: tuple[int, ...], chunk_elems: int = 1 << 24
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-substituted bounds of the neurons ``unstable`` (B, n) of node ``at``'s output.

    Each box gets rows ``[+e_i; -e_i]`` for its unstable neurons. Boxes are grouped by their unstable count
    (powers of two) and each group is padded only to its own largest count: padding every box to the batch's
    largest count wasted 78 % of the rows in branch and bound on ACAS Xu, where box sizes differ widely.
    Boxes without unstable neurons are skipped; groups go in chunks of at most ``chunk_elems`` coefficients.
    Returns ``(flat index box * n + neuron (P,), bounds (P, 2))``: the lower bound and minus the upper bound.
    """
    n = unstable.shape[1]
    patched = patches.applicable(graph, at)
    jac = None if patched else _jacobian(graph.nodes[at], lo, int(unstable.sum()))
    widest = max([n, lo[0].numel()] + [math.prod(s) for x in graph.nodes[:at + 1] for s in x.in_shapes])
    counts = unstable.sum(1)
    level = torch.where(counts > 0, torch.log2(counts.clamp(min=1).to(torch.float64)).floor(), -1.0)
    flats, outs = [], []
    for v in level.unique().tolist():
        if v < 0:
            continue
        boxes = torch.nonzero(level == v).squeeze(1)
        r_all = int(counts[boxes].max())
        # neurons in slices of at most ``rows`` (a wide convolutional layer has too many for one pass)
        rows = max(1, min(r_all, chunk_elems // (2 * widest)))
        step = max(1, chunk_elems // (2 * rows * widest))
        for s in range(0, len(boxes), step):
            b = boxes[s:s + step]
            valid_all, idx_all = unstable[b].to(torch.int8).topk(r_all, dim=1, sorted=False)   # unstable first
            whole = len(b) == len(lo)
            sub = pre if whole else {m: (l[b], u[b]) for m, (l, u) in pre.items()}
            blo, bhi = (lo, hi) if whole else (lo[b], hi[b])
            for k in range(0, r_all, rows):
                valid, idx = valid_all[:, k:k + rows].bool(), idx_all[:, k:k + rows]
                r = idx.shape[1]
                if patched:
                    bd = patches.onehot_bounds(idx, valid.to(lo.dtype), graph, at, sub, blo, bhi)
                else:
                    A, c = _onehot_backsub(idx, valid.to(lo.dtype), graph, at, sub, shape, jac)
                    bd = concretize(A, c, blo, bhi)                                    # (nb, 2r)
                flats.append((b.unsqueeze(1) * n + idx)[valid])
                outs.append(torch.stack([bd[:, :r][valid], bd[:, r:][valid]], 1))
    if not flats:
        return torch.zeros(0, dtype=torch.long, device=lo.device), lo.new_zeros((0, 2))
    return torch.cat(flats), torch.cat(outs)


def _jacobian(node, like: torch.Tensor, rows: int, max_elems: int = 1 << 24
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(J (n_out, *in_shape), bias (n_out,))`` of a single-input linear node, when gathering the one-hot
    rows of the intermediate bounds from it is cheaper than mapping them (more rows than outputs, small J).

    The rows ``±e_i`` of a node's output map back to ``±J_i``: one transpose of ``n_out`` rows instead of
    one per (box, neuron). For ``nn.Linear`` ``J`` is its weight; for a convolution it is computed once.
    """
    n_out, n_in = math.prod(node.out_shape), math.prod(node.in_shape)
    if node.nonlinear or len(node.inputs) != 1 or 2 * rows < n_out or n_out * n_in > max_elems:
        return None
    eye = torch.eye(n_out, dtype=like.dtype, device=like.device).reshape(1, n_out, *node.out_shape)
    (J,), c = node.backward_inputs(eye)
    return J[0], (c[0] if torch.is_tensor(c) else like.new_zeros(n_out))


def _onehot_backsub(idx: torch.Tensor, valid: torch.Tensor, graph: BoundGraph, at: int, pre: dict,
                    shape: tuple[int, ...], jac: tuple[torch.Tensor, torch.Tensor] | None,
                    alphas: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`backsub` of the rows ``[+e_idx; -e_idx]`` (zero where not ``valid``) of node ``at``'s output;
    ``jac`` from :func:`_jacobian` (or None)."""
    nb, r = idx.shape
    if jac is None:
        eye = torch.zeros(nb, r, math.prod(shape), dtype=valid.dtype, device=valid.device)
        eye.scatter_(2, idx.unsqueeze(-1), valid.unsqueeze(-1))
        return backsub(torch.cat([eye, -eye], 1).reshape(nb, 2 * r, *shape), graph, at, pre, alphas)
    J, bias = jac
    sign = torch.cat([valid, -valid], 1)                                          # (nb, 2r)
    rows = torch.cat([idx, idx], 1)
    A = J[rows] * sign.reshape(nb, 2 * r, *([1] * (J.dim() - 1)))
    return _walk({graph.nodes[at].inputs[0]: A}, bias[rows] * sign, graph, at - 1, pre, alphas, None)


def _weight_depth(graph: BoundGraph) -> list[float]:
    """Per node: how many weight layers separate its output from the input (``inf`` after a non-linear
    node). A node at depth <= 1 is one affine function of the box's coordinates per neuron, so its interval
    bound is already its exact range and back-substitution (costly for a wide first layer, e.g. a
    convolution) cannot tighten it."""
    depth: list[float] = []
    for n in graph:
        ins = [0.0 if j < 0 else depth[j] for j in n.inputs]
        if n.nonlinear:
            d = math.inf
        elif n.exact_interval:
            d = max(ins)
        else:          # anything not known to map boxes to boxes exactly counts as a weight layer
            d = max(ins) + 2 if len(ins) > 1 else ins[0] + n.weight_layers
        depth.append(d)
    return depth


def intermediate_bounds(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, mode: str = "crown",
                        known: dict | None = None, memory_budget: int | None = None) -> dict:
    """Input bounds ``{node: (l, u)}`` for every non-linear node, each (B, *shape).

    ``known``: valid input bounds already known for these boxes (e.g. the parent box's in branch and
    bound); they are intersected in, and only neurons they leave loose are recomputed. Back-substitution is
    run only for the neurons a node's relaxation needs (a stable ReLU is exact whatever its bounds), which
    is most of the saving on small boxes. ``memory_budget`` (bytes, default 512 MiB) sizes the chunks of rows
    back-substituted at once (about eight live tensors of a chunk's size; without autograd, nothing else grows).
    """
    chunk = max(1, (memory_budget or DEFAULT_BUDGET) // (8 * lo.element_size()))
    if mode in ("ibp", "forward"):
        ibp: dict = {}
        interval_pass(graph, lo, hi, pre=known, record=ibp)
        return ibp if mode == "ibp" else forward_bounds(graph, lo, hi, ibp)
    pre: dict = {}
    depth = _weight_depth(graph)
    vals: dict[int, tuple[torch.Tensor, torch.Tensor]] = {-1: (lo, hi)}
    tightened: set[int] = set()
    for i, n in enumerate(graph):
        ins = [vals[j] for j in n.inputs]
        n.in_shapes = [tuple(b[0].shape[1:]) for b in ins]
        if n.nonlinear:
            j = n.inputs[0]
            l, u = ins[0]
            if known is not None and n in known:
                l, u = torch.max(l, known[n][0]), torch.min(u, known[n][1])
            if j not in tightened:
                need = n.needs_bounds(l, u)
                if need.any() and j >= 0 and depth[j] > 1:   # j = -1: the input box is exact
                    flat, b = _unstable_bounds(need, graph, j, pre, lo, hi, n.in_shape, chunk)
                    lf = l.flatten(1).flatten().scatter_reduce(0, flat, b[:, 0], "amax").reshape(l.shape)
                    uf = u.flatten(1).flatten().scatter_reduce(0, flat, -b[:, 1], "amin").reshape(u.shape)
                    l, u = lf, uf
                if j >= 0:
                    vals[j] = (l, u)          # other consumers of the same tensor reuse the tighter box
                    tightened.add(j)
            pre[n] = (l, u)
            ins = [(l, u)]
        vals[i] = n.interval(*ins)
        n.out_shape = tuple(vals[i][0].shape[1:])
    return pre


def spec_matrix(C: torch.Tensor | None, B: int, out_shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``C`` (m, n_out) or (B, m, n_out) as a form (B, m, *out_shape); ``None`` means the identity."""
    n_out = math.prod(out_shape)
    if C is None:
        C = torch.eye(n_out, dtype=like.dtype, device=like.device)
    C = C.to(dtype=like.dtype, device=like.device)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(B, -1, -1)
    return C.reshape(B, C.shape[1], *out_shape)


def crown_lower(graph: BoundGraph, lo: torch.Tensor, hi: torch.Tensor, A: torch.Tensor, pre: dict,
                alphas: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bound of ``A · f(x)`` over each box, and the input-level coefficients.

    Returns ``(lb (B, m), A_in (B, m, *in_shape))``; ``A_in`` is the slope of the linear lower bound,
    i.e. how much each input dimension matters (used to choose branching dimensions).
    """
    A_in, const = backsub(A, graph, len(graph) - 1, pre, alphas)
    return concretize(A_in, const, lo, hi), A_in
