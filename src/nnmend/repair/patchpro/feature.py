"""Feature-space repair (paper 002, Sec. III-D; research B.3, B.5): patches read the features ``z = h(x)``.

The network ``net = g ∘ h`` is cut at a layer of its top-level ``nn.Sequential``. Each input region
``X`` is mapped to a *feature box* ``Z ⊇ h(X)``:

* ``"bounds"`` (default): sound CROWN bounds of ``h`` over ``X``, so a proof for ``g + patch`` on ``Z``
  is a proof for the whole network on ``X``;
* ``"empirical"`` (the paper's CIFAR / Tiny-ImageNet setting): element-wise min/max of ``h`` over
  sampled points of ``X``. This box may miss parts of ``h(X)``: a "proof" on it is **not a proof**, and
  every result built on it says so (``details["feature_box"] == "empirical (not a proof)"``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..._validation import check_choice
from ...bounds import bound
from ...errors import ModelError
from ...nets import splittable

EMPIRICAL_LABEL = "empirical (not a proof)"


def split_network(net: nn.Module, layer: int | str) -> tuple[nn.Module, nn.Module]:
    """``(extractor, head)`` = ``(net[:k], net[k:])``; ``layer`` is the index ``k`` or the name of the first
    module of the head: a top-level child of an ``nn.Sequential``, or of any other network a node that every
    path passes through (:func:`nnmend.nets.sequential_view`)."""
    net = splittable(net, layer if isinstance(layer, str) else None)
    names = [n for n, _ in net.named_children()]
    if isinstance(layer, str):
        if layer not in names:
            raise ModelError(f"feature_layer {layer!r} is not a top-level module; the network has: {', '.join(names)}")
        k = names.index(layer)
    else:
        k = int(layer)
    if not 0 < k < len(names):
        raise ModelError(f"feature_layer {layer!r} must cut between modules (1 … {len(names) - 1})")
    mods = list(net.named_children())
    return nn.Sequential(OrderedDict(mods[:k])).eval(), nn.Sequential(OrderedDict(mods[k:])).eval()


def feature_boxes(extractor: nn.Module, lo: torch.Tensor, hi: torch.Tensor, *, mode: str = "bounds",
                  samples: int = 64, seed: int = 0, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature boxes ``(flo, fhi)`` (R, *feature_shape) for input boxes ``lo, hi`` (R, *in_shape).

    Args:
        mode: ``"bounds"`` (sound CROWN) or ``"empirical"`` (min/max over the box centre, its corners
            nearest and farthest and ``samples`` uniform points per box; **not a proof**).
    """
    check_choice("feature_box", mode, ("bounds", "empirical"))
    flo, fhi = [], []
    gen = torch.Generator().manual_seed(seed)
    p = next(iter(extractor.parameters()))
    for i in range(0, len(lo), chunk):
        l, h = lo[i:i + chunk].to(p.dtype), hi[i:i + chunk].to(p.dtype)
        if mode == "bounds":
            # CROWN intersected with IBP: both sound; IBP knows a ReLU output is >= 0, CROWN's line may not
            a, b = bound(extractor, l, h, method="crown")
            ia, ib = bound(extractor, l, h, method="ibp")
            a, b = torch.max(a, ia), torch.min(b, ib)
            with torch.no_grad():
                shape = extractor(l[:1]).shape[1:]
            flo.append(a.detach().reshape(-1, *shape)), fhi.append(b.detach().reshape(-1, *shape))
        else:
            u = torch.rand((samples, *l.shape), generator=gen, dtype=l.dtype)
            pts = torch.cat([((l + h) / 2)[None], l[None], h[None], l + u * (h - l)])     # (S, n, *in)
            with torch.no_grad():
                z = extractor(pts.flatten(0, 1)).reshape(pts.shape[0], len(l), -1)
            flo.append(z.amin(0).reshape(len(l), *z.shape[2:])), fhi.append(z.amax(0).reshape(len(l), *z.shape[2:]))
    return torch.cat(flo), torch.cat(fhi)
