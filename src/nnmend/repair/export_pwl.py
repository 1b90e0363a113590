"""Every repaired network as a network of piecewise-linear operators that any verifier can read.

:func:`to_pwl` rewrites a repaired network into plain ``Linear`` / ``Conv`` / ``ReLU`` / ``Flatten`` /
:class:`~nnmend.layers.SumOfNetworks` modules, whose ONNX export (:func:`save_pwl_onnx`) holds only
:data:`PWL_OPS` — what nnmend's reader and Marabou both read. Per construction:

* the output guard, ProRepair's edited network, SHNN's healed layers (``AdversarialPatch`` becomes a
  ``SumOfNetworks``), NNrepair's ``"merged"`` experts: already continuous and piecewise linear; the
  export equals the network **everywhere**.
* PatchPro (:class:`~nnmend.repair.patchpro.modules.PatchProNetwork`): its routing is a hard box
  indicator plus a top-2 allocation, both discontinuous, so no continuous network equals it everywhere.
  The export is **exact on the closed region boxes** and a continuous blend elsewhere::

      head(ext(x)) + Σ_r gate(patch_r(ext(clamp_r(x))), u_r(x))

  with ``clamp_r(x) = x + ReLU(lo_r − x) − ReLU(x − hi_r)`` (the identity inside box r, so the patch only
  ever sees points of its box), ``u_r(x) = min(1, dist₁(x, box_r)/δ)`` (exactly 0 inside, 1 at L1
  distance δ) and ``gate(p, u) = ReLU(p − M·u) − ReLU(−p − M·u)`` with ``M`` a sound CROWN bound of
  ``|patch_r|`` over the box (big-M, as the guard writes its indicator). δ is below every gap between
  two region boxes, so on box r every other gate is exactly 0. Regions that touch or overlap are routed
  to the first one by a discontinuous choice: their boxes are *not* exact and the result says so.
  Outside the bands the export is the base network: the allocation rule is not written.
* NNrepair's claim-based experts (``naive`` / ``confidence`` / ``voting``): an argmax decides which
  expert answers — discontinuous, not expressible (:class:`NotExpressible` names the module).

Example::

    exp = to_pwl(loaded)                      # PwlNetwork(network, exact="everywhere" | "on boxes", boxes, note)
    save_pwl_onnx(exp, "repaired.pwl.onnx")   # only Gemm / Relu / Add / ... ; checked in onnxruntime
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..layers import ElementwiseAffine, SumOfNetworks
from ..nets import linear_from

__all__ = ["PWL_OPS", "NotExpressible", "PwlNetwork", "to_pwl", "exact_on", "save_pwl_onnx", "onnx_ops",
           "equivalence", "for_verifier"]

#: ONNX operators a piecewise-linear export may hold (all read by nnmend's reader and by Marabou 2.0)
PWL_OPS = frozenset({"Gemm", "MatMul", "Add", "Sub", "Mul", "Relu", "Conv", "Flatten", "Reshape", "Identity",
                     "Constant", "BatchNormalization", "MaxPool"})
_LEAVES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Identity, nn.BatchNorm1d,
           nn.BatchNorm2d, nn.MaxPool2d, ElementwiseAffine)
DEFAULT_BAND = 1e-3


class NotExpressible(ModelError):
    """The construction has no exact piecewise-linear (continuous) form; the message names the module."""


@dataclass
class PwlNetwork:
    """A piecewise-linear network and where it equals the repaired one.

    Attributes:
        network: plain modules only (see the module docstring).
        exact: ``"everywhere"``, or ``"on boxes"``: equal on the closed boxes ``boxes`` only.
        boxes: ``[(lo, hi)]`` flat float64 boxes (of float32 values) where it is exact (``exact == "on boxes"``).
        inexact: ``[(lo, hi, why)]`` region boxes of the construction on which it is *not* exact.
        note: one line saying what the export equals and what it leaves out.
    """

    network: nn.Module
    exact: str
    boxes: list = field(default_factory=list)
    inexact: list = field(default_factory=list)
    note: str = ""


def _plain(m: nn.Module, where: str) -> nn.Module:
    """A copy of ``m`` built of :data:`_LEAVES`, ``Sequential`` and ``SumOfNetworks`` only (exact everywhere)."""
    from .patch_layer import AdversarialPatch

    name = type(m).__name__
    if isinstance(m, nn.Dropout):
        return nn.Identity()
    if isinstance(m, nn.Sequential):
        return nn.Sequential(*[_plain(c, f"{where}.{n}") for n, c in m.named_children()])
    if isinstance(m, SumOfNetworks):
        return SumOfNetworks(*[_plain(c, f"{where}.branches.{i}") for i, c in enumerate(m.branches)])
    if isinstance(m, AdversarialPatch):
        patch = _plain(m.patch, f"{where}.patch")
        return patch if m.base is None else SumOfNetworks(_plain(m.base, f"{where}.base"), patch)
    if name == "ExpertEnsemble":
        if m.strategy != "merged":
            raise NotExpressible(f"{where} (ExpertEnsemble, strategy {m.strategy!r}): an argmax over the experts' "
                                 "outputs picks the answer, a discontinuous choice no piecewise-linear network equals")
        lin = copy.deepcopy(m.head[0])
        with torch.no_grad():
            lin.weight.add_(m.merged_delta())
        return nn.Sequential(_plain(m.trunk, f"{where}.trunk"), nn.Flatten(), lin,
                             *[_plain(c, f"{where}.head.{i + 1}") for i, c in enumerate(list(m.head)[1:])])
    if isinstance(m, nn.Unflatten) and m.dim in (1, -len(m.unflattened_size) - 1):
        return _Unflat(m.unflattened_size)
    if type(m) in _LEAVES:
        return copy.deepcopy(m)
    raise NotExpressible(f"{where} ({name}): not a piecewise-linear layer nnmend writes for external verifiers")


def _gap(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(R, R) L∞ gap between the boxes (0 where they touch or overlap; inf on the diagonal)."""
    sep = torch.clamp(torch.max(lo[:, None] - hi[None], lo[None] - hi[:, None]), min=0).amax(-1)
    return sep.fill_diagonal_(float("inf"))


def _patch_bound(body: nn.Module, lo: torch.Tensor, hi: torch.Tensor, shape) -> torch.Tensor:
    """Sound bound of ``|body(x)|`` per output over the box (float64 CROWN), with a small relative slack."""
    from ..bounds import crown_bounds

    net = copy.deepcopy(body).double().eval()
    lb, ub = crown_bounds(net, lo.double().reshape(1, *shape), hi.double().reshape(1, *shape))
    return torch.max(lb.detach().abs(), ub.detach().abs())[0] * 1.01 + 1e-3


class _Unflat(nn.Module):
    """``x.reshape(-1, *shape)``: one ONNX ``Reshape`` with a constant shape (``nn.Unflatten`` exports ``Mod``)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *self.shape)


def _relu_of(sign: float, shift: torch.Tensor) -> nn.Sequential:
    """``ReLU(sign · x + shift)``, element-wise (a scalar ``Mul``: Marabou 2.0 reads no per-element one)."""
    return nn.Sequential(ElementwiseAffine(torch.tensor(sign), shift), nn.ReLU())


def _gated_branch(extractor: nn.Module, patch: nn.Module, lo: torch.Tensor, hi: torch.Tensor, shape, M: torch.Tensor,
                  band: float) -> nn.Sequential:
    """``gate(patch(ext(clamp(x))), min(1, dist₁(x, box)/δ))`` (module docstring), exact inside the box."""
    n, out = lo.numel(), M.numel()
    # clamp(x) = x + ReLU(lo - x) - ReLU(x - hi), element-wise (O(n) weights): the identity inside the box
    clamp = SumOfNetworks(nn.Identity(), _relu_of(-1.0, lo),
                          nn.Sequential(*_relu_of(1.0, -hi), ElementwiseAffine(torch.tensor(-1.0), torch.tensor(0.0))))
    to_ext = [] if isinstance(extractor, nn.Identity) else [_Unflat(shape), copy.deepcopy(extractor)]
    embed = torch.zeros(out + 1, out)
    embed[:out] = torch.eye(out)
    dist = torch.zeros(out + 1, n)
    dist[out] = 1.0 / band
    ps = nn.Sequential(nn.Flatten(), clamp, *to_ext, patch, linear_from(embed))                  # [p; 0]
    ss = nn.Sequential(nn.Flatten(), SumOfNetworks(_relu_of(-1.0, lo), _relu_of(1.0, -hi)), linear_from(dist))  # [0; s]
    sel = torch.zeros(1, out + 1)
    sel[0, out] = 1.0
    unit = SumOfNetworks(linear_from(torch.eye(out + 1)),
                         nn.Sequential(linear_from(sel, -torch.ones(1)), nn.ReLU(), linear_from(-sel.T)))
    gate_in = torch.zeros(2 * out, out + 1)
    gate_in[:out, :out], gate_in[out:, :out] = torch.eye(out), -torch.eye(out)
    gate_in[:out, out], gate_in[out:, out] = -M, -M
    return nn.Sequential(SumOfNetworks(ps, ss), unit, linear_from(gate_in), nn.ReLU(),
                         linear_from(torch.cat([torch.eye(out), -torch.eye(out)], 1)))


def _patchpro(net: nn.Module, band: float) -> PwlNetwork:
    from .patchpro.modules import PatchProNetwork

    assert isinstance(net, PatchProNetwork)
    shape = tuple(net.region_lo.shape[1:])
    lo, hi = net.region_lo.flatten(1).float(), net.region_hi.flatten(1).float()
    gap = _gap(lo.double(), hi.double())
    touching = gap == 0
    positive = gap[(gap > 0) & torch.isfinite(gap)]
    delta = min(band, float(positive.min()) / 2) if len(positive) else band
    base = nn.Sequential(_plain(net.extractor, "extractor"), _plain(net.head, "head"))
    if isinstance(net.extractor, nn.Identity):
        base = _plain(net.head, "head")
    branches = [base]
    # the gates are one float32 step wider than the indicator: a float64 box whose float32 rounding is a region
    # box lies inside its gate (in exact arithmetic too), and no float32 input of the region is left out
    glo, ghi = torch.nextafter(lo, torch.full_like(lo, -float("inf"))), torch.nextafter(hi, torch.full_like(hi, float("inf")))
    for r in range(net.n_regions):
        patch = net.patches.as_module(int(net.region_patch[r])).float()
        body = nn.Sequential(_plain(net.extractor, "extractor"), patch)
        M = _patch_bound(body, glo[r], ghi[r], shape).float()
        branches.append(_gated_branch(_plain(net.extractor, "extractor"), patch, glo[r], ghi[r], shape, M, delta))
    exact, inexact = [], []
    for r in range(net.n_regions):
        box = (lo[r].double(), hi[r].double())
        others = torch.nonzero(touching[r]).flatten().tolist()
        if others:
            inexact.append((*box, f"region {r} touches or overlaps region(s) {others[:5]}: PatchPro routes the shared "
                                  "part to the first one, a discontinuous choice"))
        else:
            exact.append(box)
    alloc = ("; the top-2 allocation outside the regions (an argmax) is not written: there the export is the "
             "base network" if net.allocation == "top2" else "; outside the bands: the base network")
    note = (f"equals the PatchPro network on {len(exact)} of {net.n_regions} closed region boxes (patches gated "
            f"by ReLU/big-M, fading over L1 distance {delta:.3g})" + alloc)
    out = SumOfNetworks(*branches).eval()
    return PwlNetwork(out, "on boxes", exact, inexact, note)


def to_pwl(network: nn.Module, *, band: float = DEFAULT_BAND) -> PwlNetwork:
    """The piecewise-linear form of a repaired network (module docstring).

    Args:
        network: a repaired (typically saved and reloaded) network. band: δ for PatchPro's gates (reduced
            below every gap between two region boxes).
    Raises:
        NotExpressible: a module that has no exact continuous piecewise-linear form (named).
    """
    from .patchpro.modules import PatchProNetwork

    if isinstance(network, PatchProNetwork):
        out = _patchpro(network, band)
    else:
        out = PwlNetwork(_plain(network, type(network).__name__).eval(), "everywhere",
                         note="equals the repaired network everywhere (only piecewise-linear layers)")
    for attr in ("nnmend_input_shape", "nnmend_meta"):
        if hasattr(network, attr):
            setattr(out.network, attr, copy.deepcopy(getattr(network, attr)))
    return out


def exact_on(export: PwlNetwork, lo: torch.Tensor, hi: torch.Tensor) -> bool:
    """Whether the export equals the repaired network on the box ``[lo, hi]``: on every float32 input of it
    (the box rounded to float32 lies in an exact box) and, in exact arithmetic, on the whole box (the gates
    reach one float32 step beyond the exact boxes)."""
    if export.exact == "everywhere":
        return True
    lo, hi = lo.float().double().flatten(), hi.float().double().flatten()
    return any(bool((a <= lo).all() and (hi <= b).all()) for a, b in export.boxes)


def onnx_ops(path: str | Path) -> dict[str, str]:
    """``{op_type: first node name}`` of an ONNX file."""
    import onnx

    ops: dict[str, str] = {}
    for node in onnx.load(str(path)).graph.node:
        ops.setdefault(node.op_type, node.name)
    return ops


def _fuse_gemms(proto) -> int:
    """Merge every ``Gemm → Gemm`` pair whose middle value has no other use into one ``Gemm`` (weights multiplied
    in float64); returns how many were merged. Marabou 2.0's parser misreads ``Add → Gemm → Gemm`` chains (an
    ``Add`` of a ``Gemm`` and another path, then two ``Gemm``: measured wrong outputs), and fewer layers are
    cheaper for it anyway."""
    import numpy as np
    from onnx import numpy_helper

    graph = proto.graph
    merged = 0
    while True:
        inits = {t.name: t for t in graph.initializer}
        uses: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                uses[i] = uses.get(i, 0) + 1
        outputs = {o.name for o in graph.output}
        producer = {n.output[0]: n for n in graph.node if n.op_type == "Gemm"}

        def plain(n) -> bool:
            att = {a.name: a for a in n.attribute}
            ok = all(att[k].f == 1.0 for k in ("alpha", "beta") if k in att)
            return ok and ("transA" not in att or att["transA"].i == 0) and len(n.input) == 3 and \
                all(i in inits for i in n.input[1:])

        pair = next(((a, b) for b in graph.node if b.op_type == "Gemm" and b.input[0] in producer
                     for a in [producer[b.input[0]]] if uses.get(a.output[0]) == 1 and a.output[0] not in outputs
                     and plain(a) and plain(b)), None)
        if pair is None:
            used = {i for n in graph.node for i in n.input}
            kept = [t for t in graph.initializer if t.name in used]
            del graph.initializer[:]
            graph.initializer.extend(kept)
            return merged
        a, b = pair

        def weights(n):
            att = {x.name: x for x in n.attribute}
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            w = w.T if "transB" in att and att["transB"].i else w            # (in, out)
            return w, numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)

        (w1, b1), (w2, b2) = weights(a), weights(b)
        name = b.output[0] + "_fused"
        graph.initializer.extend([numpy_helper.from_array((w1 @ w2).astype(np.float32), name + "_w"),
                                  numpy_helper.from_array((b1 @ w2 + b2).astype(np.float32), name + "_b")])
        fused = type(b)()
        fused.CopyFrom(b)
        del fused.input[:]
        fused.input.extend([a.input[0], name + "_w", name + "_b"])
        for att in fused.attribute:
            if att.name == "transB":
                att.i = 0
        nodes = [fused if n is b else n for n in graph.node if n is not a]     # b's place: after a's input
        del graph.node[:]
        graph.node.extend(nodes)
        merged += 1


def save_pwl_onnx(export: PwlNetwork, path: str | Path, input_shape=None) -> Path:
    """Write ``export.network`` to ONNX (checked in onnxruntime by :func:`nnmend.io.onnx.save_onnx`), merge its
    ``Gemm → Gemm`` chains (:func:`_fuse_gemms`, checked in onnxruntime again) and check that it holds
    :data:`PWL_OPS` only; an operator outside them is refused naming it and its node."""
    import onnx

    from ..io.onnx import onnx_max_abs_diff, save_onnx

    path = save_onnx(export.network, path, input_shape)
    proto = onnx.load(str(path))
    if _fuse_gemms(proto):
        onnx.save(proto, str(path))
        shape = tuple(input_shape or getattr(export.network, "nnmend_input_shape", None) or
                      (getattr(export.network, "nnmend_meta", None) or {})["input_shape"])
        diff, scale = onnx_max_abs_diff(export.network, path, shape, n=16)
        if not diff <= 1e-4 * max(1.0, scale):
            path.unlink(missing_ok=True)
            raise ModelError(f"{path}: merging Gemm chains changed the outputs by {diff:.3g}; nothing was written")
    bad = {op: node for op, node in onnx_ops(path).items() if op not in PWL_OPS}
    if bad:
        path.unlink(missing_ok=True)
        op, node = next(iter(bad.items()))
        raise NotExpressible(f"{path}: the export holds operator {op} (node {node!r}), not a piecewise-linear one")
    return path


def _vertices(lo: torch.Tensor, hi: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """All 2^d vertices of the box when d <= 10, else ``k`` random ones."""
    d = lo.numel()
    if d <= 10:
        bits = ((torch.arange(2 ** d)[:, None] >> torch.arange(d)) & 1).bool()
    else:
        bits = torch.rand(k, d, generator=gen) < 0.5
    return torch.where(bits, hi.flatten(), lo.flatten())


def equivalence(original: nn.Module, export: PwlNetwork, path: str | Path, shape, *, n: int = 256, seed: int = 0,
                boxes: list | None = None) -> dict:
    """Max |original(x) − onnxruntime(file)(x)| on random points and box vertices where the export is exact.

    ``exact == "everywhere"``: N(0, 1) points plus uniform points and vertices of the given boxes; ``"on boxes"``:
    uniform points and vertices of every exact box. ``boxes``: more ``(lo, hi)`` to sample where the export is
    exact (the claimed regions). Returns ``{"points", "max_abs_diff", "scale"}``."""
    from ..io.onnx import onnx_max_abs_diff

    gen = torch.Generator().manual_seed(seed)
    numel = int(torch.tensor(shape).prod())
    xs = [torch.randn(n, numel, generator=gen)] if export.exact == "everywhere" else []
    extra = [(a, b) for a, b in boxes or () if exact_on(export, a, b)]
    for lo, hi in export.boxes + extra:
        lo, hi = lo.float().flatten(), hi.float().flatten()
        xs += [lo + torch.rand(n, numel, generator=gen) * (hi - lo), _vertices(lo, hi, n, gen)]
    if not xs:
        return {"points": 0, "max_abs_diff": None, "scale": None}
    x = torch.cat(xs).reshape(-1, *shape)
    diff, scale = onnx_max_abs_diff(original, path, shape, x=x)
    return {"points": len(x), "max_abs_diff": diff, "scale": scale}


def for_verifier(network: nn.Module, boxes: list, where: str = "network") -> nn.Module:
    """What the ordinary verifier (``nnmend verify``, :func:`nnmend.properties.check`) reads for a repaired network.

    A network with no discontinuous routing is returned as it is. A PatchPro network becomes its piecewise-linear
    form (:func:`to_pwl`) when that equals it on every box ``[(lo, hi)]`` of the property, so the proof is about the
    repaired network itself. Otherwise :class:`NotExpressible` says in one line why it cannot be verified.
    """
    from .patchpro.modules import PatchProNetwork

    if not any(isinstance(m, PatchProNetwork) or type(m).__name__ == "ExpertEnsemble" for m in network.modules()):
        return network
    if not isinstance(network, PatchProNetwork):
        try:
            return to_pwl(network).network
        except NotExpressible as exc:
            raise NotExpressible(f"{where}: {exc}") from None
    export = to_pwl(network)
    for i, (lo, hi) in enumerate(boxes):
        if not exact_on(export, torch.as_tensor(lo), torch.as_tensor(hi)):
            raise NotExpressible(f"{where}: a PatchPro network routes inputs by a box indicator (discontinuous); it is "
                                 f"verified only inside its repaired regions, and property region {i} is not inside "
                                 "one (use the property it was repaired for)")
    return export.network
