"""What a network must satisfy, and a complete-where-possible check of it.

* :class:`LocalRobustness` — every ``x'`` in the L∞ ball of radius ``eps`` around ``x`` (clipped to the
  valid input range) gets label ``label``; the unsafe set is ``y_label - y_j <= 0`` for some ``j``.
* :class:`SafetyProperty` — input boxes (a union) and, per box, an unsafe output set given as a
  disjunction of conjunctions ``A y <= b`` (VNN-LIB semantics: the property holds iff no input in any
  box reaches the unsafe set), read with :func:`read_property` from a ``.vnnlib`` file.

:func:`check` answers ``verified`` only from sound bounds (CROWN / alpha-CROWN inside input-splitting
branch and bound), ``falsified`` only with a counterexample that the float64 network confirms,
otherwise ``unknown`` or ``timeout``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import torch
from torch import nn

from .attacks.base import eval_mode
from .bounds.bab import BabConfig, bab_box, violation
from .errors import PropertyError

STATUSES = ("verified", "falsified", "unknown", "timeout")


@dataclass(frozen=True, eq=False)
class Box:
    """One input box ``[lo, hi]`` (``in_shape`` or flat) and its unsafe set, a list of ``(A (k, n_out), b (k,))``;
    ``strict``: empty, or one bool tensor (k,) per pair marking rows that must hold strictly (``A y < b``)."""

    lo: torch.Tensor
    hi: torch.Tensor
    unsafe: list = field(default_factory=list)
    strict: list = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class LocalRobustness:
    """L∞ local robustness: every input within ``eps`` of ``x`` (and inside ``[clip_lo, clip_hi]``) gets ``label``.

    Args:
        x: one input, shape ``in_shape`` (no batch dimension). eps: L∞ radius. label: the class to keep.
        clip_lo, clip_hi: valid input range the ball is intersected with (default [0, 1]; ``None`` = no clip).
    Example::

        result = check(net, LocalRobustness(x, 0.02, 7), timeout=10)
    """

    x: torch.Tensor
    eps: float
    label: int
    clip_lo: float | None = 0.0
    clip_hi: float | None = 1.0

    def boxes(self, n_outputs: int) -> list[Box]:
        if not (isinstance(self.label, int) and 0 <= self.label < n_outputs):
            raise PropertyError(f"LocalRobustness: label {self.label!r} is not in [0, {n_outputs})")
        if not self.eps >= 0:
            raise PropertyError(f"LocalRobustness: eps={self.eps} must be >= 0")
        x = self.x.detach().to(torch.float64)
        lo, hi = x - self.eps, x + self.eps
        if self.clip_lo is not None:
            lo = lo.clamp(min=self.clip_lo)
        if self.clip_hi is not None:
            hi = hi.clamp(max=self.clip_hi)
        eye = torch.eye(n_outputs, dtype=torch.float64)
        # disjunct j: y_label - y_j <= 0 (class j ties or beats the label)
        unsafe = [((eye[self.label] - eye[j])[None], torch.zeros(1, dtype=torch.float64))
                  for j in range(n_outputs) if j != self.label]
        return [Box(lo, hi, unsafe)]

    def spec_matrix(self, n_outputs: int) -> torch.Tensor:
        """Rows ``e_label - e_j`` for every ``j != label``: lower bounds > 0 prove robustness."""
        eye = torch.eye(n_outputs)
        return torch.stack([eye[self.label] - eye[j] for j in range(n_outputs) if j != self.label])


@dataclass(frozen=True, eq=False)
class SafetyProperty:
    """Union of input boxes, each with an unsafe set (disjunction of conjunctions ``A y <= b``).

    ``regions``: objects with ``lo``, ``hi`` (flat, n_in) and ``unsafe`` (list of ``(A, b)``), e.g. the
    regions of :func:`nnmend.io.vnnlib.read_vnnlib` or :class:`Box`. ``source``: where it came from.
    """

    regions: Sequence[Any]
    source: str = ""

    def boxes(self, n_outputs: int) -> list[Box]:
        out = []
        where = self.source or "property"
        for i, r in enumerate(self.regions):
            unsafe = []
            for A, b in r.unsafe:
                A = torch.as_tensor(A, dtype=torch.float64)
                b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
                A = A.reshape(0, n_outputs) if A.numel() == 0 else A
                if A.dim() != 2 or A.shape[1] != n_outputs:
                    raise PropertyError(f"{where}: region {i}: output constraints have shape {tuple(A.shape)} but the "
                                        f"network has {n_outputs} outputs")
                if A.shape[0] != b.shape[0]:
                    raise PropertyError(f"{where}: region {i}: A has {A.shape[0]} rows but b has {b.shape[0]}")
                unsafe.append((A, b))
            strict = list(getattr(r, "strict", None) or [])
            out.append(Box(torch.as_tensor(r.lo, dtype=torch.float64), torch.as_tensor(r.hi, dtype=torch.float64), unsafe,
                           strict))
        return out


Property = Union[LocalRobustness, SafetyProperty]


def nnet_domain(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The normalised input range (float64 ``lo, hi``) recorded by an ACAS Xu ``.nnet`` header, if any."""
    hdr = getattr(net, "nnmend_meta", {}).get("nnet") if hasattr(net, "nnmend_meta") else None
    if not hdr:
        return None
    mins, maxs = torch.tensor(hdr["mins"], dtype=torch.float64), torch.tensor(hdr["maxs"], dtype=torch.float64)
    means = torch.tensor(hdr["means"][: len(mins)], dtype=torch.float64)
    ranges = torch.tensor(hdr["ranges"][: len(mins)], dtype=torch.float64)
    return (mins - means) / ranges, (maxs - means) / ranges


def input_domain(net: nn.Module, boxes: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat float32 ``(lo, hi)`` of the inputs a network is used on: :func:`nnet_domain` when its size fits
    the boxes, else the hull of ``boxes`` (flat ``(lo, hi)`` pairs)."""
    dom = nnet_domain(net)
    if dom is not None and dom[0].numel() == boxes[0][0].numel():
        return dom[0].float(), dom[1].float()
    return torch.stack([b[0] for b in boxes]).min(0).values, torch.stack([b[1] for b in boxes]).max(0).values


def read_property(path: str | os.PathLike, n_inputs: int | None = None) -> SafetyProperty:
    """Read a VNN-LIB file (1.0 or 2.0) into a :class:`SafetyProperty` (parsing is
    :func:`nnmend.io.vnnlib.read_vnnlib`'s); ``n_inputs``, the network's input size where known, caps the
    declarations before anything is allocated."""
    from .io.vnnlib import read_vnnlib

    spec = read_vnnlib(path, n_inputs=n_inputs)
    return SafetyProperty(list(spec.regions), str(path))


@dataclass(frozen=True)
class CheckResult:
    """``status`` in verified / falsified / unknown / timeout; ``counterexample`` = ``(x, y)`` (float64,
    ``x`` in the network's input shape) when falsified; ``seconds`` wall time; ``stats`` search figures."""

    status: str
    counterexample: tuple[torch.Tensor, torch.Tensor] | None
    seconds: float
    stats: dict


def _input_shape(net: nn.Module, prop: Property, n_in: int) -> tuple[int, ...]:
    if isinstance(prop, LocalRobustness):
        return tuple(prop.x.shape)
    shape = getattr(net, "nnmend_input_shape", None)
    if shape is not None:
        if math.prod(shape) != n_in:
            raise PropertyError(f"{prop.source or 'property'} has {n_in} inputs but the network takes input of shape "
                                f"{tuple(shape)} ({math.prod(shape)} values)")
        return tuple(shape)
    return (n_in,)


def _output_size(net: nn.Module, shape: tuple[int, ...], where: str) -> int:
    p = next(iter(net.parameters()), None)
    x = torch.zeros((1, *shape), dtype=p.dtype if p is not None else torch.float32)
    try:
        with torch.no_grad():
            return net(x)[0].numel()
    except RuntimeError as exc:
        raise PropertyError(f"{where}: the network does not accept inputs of shape {shape} ({str(exc).splitlines()[0]})") from None


def check(network: nn.Module, prop: Property, timeout: float | None = None, *, config: BabConfig = BabConfig()
          ) -> CheckResult:
    """Decide ``prop`` on ``network`` by branch and bound with sound bounds and a counterexample search.

    Args:
        network: an ``nn.Module`` of supported layers (see :mod:`nnmend.bounds`); not modified.
        prop: :class:`LocalRobustness` or :class:`SafetyProperty`.
        timeout: seconds (default ``None``: no limit). Checked between the search's steps: an answer comes
            at most one step after it (one batch of bounds, one PGD run); ``nnmend verify`` adds a hard stop.
        config: :class:`nnmend.bounds.bab.BabConfig` (batch size, alpha-CROWN steps, PGD, dtype, seed).
    Returns:
        :class:`CheckResult`.

    Example::

        prop = read_property("prop_1.vnnlib")
        result = check(load_network("ACASXU_run2a_1_1_batch_2000.onnx"), prop, timeout=116)
    """
    start = time.monotonic()
    deadline = start + timeout if timeout is not None else float("inf")
    where = getattr(prop, "source", "") or type(prop).__name__
    with eval_mode(network):
        if isinstance(prop, LocalRobustness):
            n_in = prop.x.numel()
        elif isinstance(prop, SafetyProperty):
            if not prop.regions:
                raise PropertyError(f"{where}: the property has no input region")
            n_in = torch.as_tensor(prop.regions[0].lo).numel()
        else:
            raise PropertyError(f"check: expected LocalRobustness or SafetyProperty, got {type(prop).__name__}")
        shape = _input_shape(network, prop, n_in)
        n_out = _output_size(network, shape, where)
        boxes = prop.boxes(n_out)
        stats: dict = {"regions": len(boxes), "per_region": []}
        unknown = False
        screened = _screen(network, boxes, shape, deadline, config, stats)
        if isinstance(screened, tuple):
            return CheckResult("falsified", screened, time.monotonic() - start, stats)
        for i, box in enumerate(boxes):
            if i in screened:
                continue                                         # proved by the batched first pass
            if time.monotonic() > deadline:   # every region shares one deadline
                return CheckResult("timeout", None, time.monotonic() - start, stats)
            if box.lo.numel() != n_in:
                raise PropertyError(f"{where}: regions have different input sizes ({box.lo.numel()} vs {n_in})")
            lo, hi = box.lo.reshape(shape), box.hi.reshape(shape)
            if (lo > hi).any():
                continue  # an empty box holds no counterexample
            if any(A.shape[0] == 0 for A, _ in box.unsafe):      # "true" disjunct: every point is unsafe
                with torch.no_grad():
                    y = _copy64(network)(((lo + hi) / 2)[None])[0]
                return CheckResult("falsified", ((lo + hi) / 2, y), time.monotonic() - start, stats)
            if not box.unsafe:
                continue                                         # nothing is unsafe in this box
            C = torch.cat([A for A, _ in box.unsafe])
            d = torch.cat([b for _, b in box.unsafe])
            groups = torch.cat([torch.full((A.shape[0],), i, dtype=torch.long) for i, (A, _) in enumerate(box.unsafe)])
            out = bab_box(network, lo, hi, C, d, groups, deadline=deadline, config=config)
            stats["per_region"].append({"status": out.status, **out.stats})
            if out.status == "falsified" and not _strictly_unsafe(out.counterexample[1], box):
                # the point satisfies only the closure of a strict constraint (y == b where y < b is asked)
                stats["per_region"][-1]["status"] = "unknown"
                stats["per_region"][-1]["reason"] = "counterexample only on the boundary of a strict inequality"
                unknown = True
                continue
            if out.status == "falsified":
                return CheckResult("falsified", out.counterexample, time.monotonic() - start, stats)
            if out.status == "timeout":
                return CheckResult("timeout", None, time.monotonic() - start, stats)
            unknown |= out.status == "unknown"
    return CheckResult("unknown" if unknown else "verified", None, time.monotonic() - start, stats)


def _screen(network: nn.Module, boxes: list[Box], shape: tuple[int, ...], deadline: float, config: BabConfig,
            stats: dict) -> set[int] | tuple[torch.Tensor, torch.Tensor]:
    """With two or more regions, one batched CROWN pass and counterexample probe over all of them
    (:mod:`nnmend.bounds.screen`). Returns the indices of the regions it proved, or a counterexample ``(x, y)``."""
    from .bounds.bab import memory_budget
    from .bounds.screen import screen_regions, stack_specs

    todo = [i for i, b in enumerate(boxes) if b.unsafe and not any(A.shape[0] == 0 for A, _ in b.unsafe)
            and b.lo.numel() == math.prod(shape) and not bool((b.lo > b.hi).any())]
    if len(todo) < 2:
        return set()
    specs = []
    for i in todo:              # one spec per region (the padding is built once per property)
        unsafe = boxes[i].unsafe
        specs.append((torch.cat([A for A, _ in unsafe]), torch.cat([b for _, b in unsafe]),
                      torch.cat([torch.full((A.shape[0],), g, dtype=torch.long) for g, (A, _) in enumerate(unsafe)])))
    lo = torch.stack([boxes[i].lo.reshape(shape) for i in todo])
    hi = torch.stack([boxes[i].hi.reshape(shape) for i in todo])
    t0 = time.monotonic()
    proven, cex = screen_regions(network, lo, hi, stack_specs(specs, torch.float64), deadline=deadline,
                                 budget=memory_budget(config), margin=config.proof_margin, seed=config.seed)
    stats["screen"] = {"regions": len(todo), "proven": int(proven.sum()), "seconds": round(time.monotonic() - t0, 3)}
    if cex is not None and _strictly_unsafe(cex[2], boxes[todo[cex[0]]]):
        stats["screen"]["found_by"] = "batched probe of all regions"
        return cex[1].reshape(shape), cex[2]
    return {todo[j] for j in torch.nonzero(proven).flatten().tolist()}


def _strictly_unsafe(y: torch.Tensor, box: Box) -> bool:
    """Whether output ``y`` satisfies some disjunct of ``box.unsafe`` with its strict rows holding strictly."""
    if not box.strict:
        return True
    y = y.reshape(-1).to(torch.float64)
    for (A, b), strict in zip(box.unsafe, box.strict):
        v = A @ y - b
        if bool(((v < 0) | (~strict & (v <= 0))).all()):
            return True
    return False


def _copy64(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net).double().eval()


__all__ = ["LocalRobustness", "SafetyProperty", "Box", "CheckResult", "check", "read_property", "violation", "STATUSES"]
