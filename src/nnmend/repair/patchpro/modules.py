"""The repaired network of PatchPro (paper 002, Sec. III; research B.4, B.7): one ``nn.Module``.

``PatchProNetwork(x) = head(z) + sum_p w_p(x) · patch_p(z)`` with ``z = extractor(x)`` (the identity in
input-space mode). The routing weights ``w(x)`` come from a fixed, exact indicator:

* ``x`` inside repaired region ``r`` (box membership ``lo_r <= x <= hi_r``): only the patch of the
  *first* region containing ``x`` is active (overlaps are certified for that patch too, so routing is
  deterministic and every input in region ``r`` is covered by a certificate);
* ``x`` in no region: the paper's allocation rule (``allocation="top2"``): the original network's top-2
  classes ``(c1, c2)`` activate every patch tagged ``(c1, c2)`` (tag = (true label, wrong label) of its
  repair sample); if none matches, every patch whose true label is ``c1``. ``"none"``: no patch.

The indicator is piecewise constant, so gradient attacks see the base network and the active patches;
the module runs, saves (weights-only checkpoint), reloads and exports to ONNX like any network.

Example::

    net = PatchProNetwork(nn.Identity(), base, StackedPatches(5, 784, 10), lo, hi, tags)
    y = net(x)
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ...io.checkpoint import serializable


@serializable
class StackedPatches(nn.Module):
    """``P`` independent patch MLPs ``in → hidden… → out`` (ReLU), stored as stacked tensors.

    ``weight_k`` has shape (P, out_k, in_k) and ``bias_k`` (P, out_k), so every patch of a batch is
    evaluated (and bounded) in one batched product instead of a loop over patches.
    """

    def __init__(self, n_patches: int, in_features: int, out_features: int, hidden: tuple[int, ...] = (),
                 init_scale: float = 0.0, seed: int = 0):
        super().__init__()
        self.n_patches, self.in_features, self.out_features = int(n_patches), int(in_features), int(out_features)
        self.hidden = tuple(int(h) for h in hidden)
        sizes = [self.in_features, *self.hidden, self.out_features]
        gen = torch.Generator().manual_seed(seed)
        self._n_layers = len(sizes) - 1
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1 / math.sqrt(a)                       # torch's nn.Linear default range
            w = (torch.rand((self.n_patches, b, a), generator=gen) * 2 - 1) * bound
            c = (torch.rand((self.n_patches, b), generator=gen) * 2 - 1) * bound
            last = k == len(sizes) - 2
            # hidden layers keep the default init (a zero hidden layer would have no gradient);
            # the output layer is scaled so the patch starts at (or near) zero
            scale = init_scale if last else 1.0
            self.register_parameter(f"weight{k}", nn.Parameter(w * scale))
            self.register_parameter(f"bias{k}", nn.Parameter(c * scale))

    @property
    def n_layers(self) -> int:
        return self._n_layers

    @property
    def weights(self) -> list[torch.Tensor]:
        """Per layer (P, out_k, in_k)."""
        return [getattr(self, f"weight{k}") for k in range(self._n_layers)]

    @property
    def biases(self) -> list[torch.Tensor]:
        """Per layer (P, out_k)."""
        return [getattr(self, f"bias{k}") for k in range(self._n_layers)]

    def forward_all(self, z: torch.Tensor) -> torch.Tensor:
        """Every patch on every input: (N, P, out)."""
        h = z.flatten(1).unsqueeze(1).expand(-1, self.n_patches, -1)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("npi,poi->npo", h, w) + b
            if k < self.n_layers - 1:
                h = torch.relu(h)
        return h

    def combine(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``sum_p w[:, p] · patch_p(z)``: (N, out). ``w`` (N, P) routing weights."""
        if self.n_layers == 1:
            # linear patches: mix the weights first, (N, P) @ (P, out·in), cheaper than all P outputs;
            # routing rows are sparse (one region patch, or the few patches allocation picks)
            zf = z.flatten(1)
            Wf = self.weights[0].flatten(1)
            if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or w.dtype != Wf.dtype:
                mixed = w @ Wf
            else:
                mixed = torch.sparse.mm(w.to_sparse(), Wf)
            W = mixed.reshape(-1, self.out_features, self.in_features)
            return torch.bmm(W, zf.unsqueeze(-1)).squeeze(-1) + w @ self.biases[0]
        return torch.einsum("np,npo->no", w, self.forward_all(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """All patches summed (every weight 1); :class:`PatchProNetwork` routes with :meth:`combine`."""
        return self.combine(z, z.new_ones((len(z), self.n_patches)))

    def as_module(self, p: int) -> nn.Sequential:
        """Patch ``p`` as a plain ``Sequential`` of Linear/ReLU (same weights), for independent checks."""
        mods: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[2], w.shape[1]).to(w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w[p])
                lin.bias.copy_(b[p])
            mods[f"fc{k + 1}"] = lin
            if k < self.n_layers - 1:
                mods[f"relu{k + 1}"] = nn.ReLU()
        return nn.Sequential(mods).eval()

    def spec_args(self) -> dict:
        return {"n_patches": self.n_patches, "in_features": self.in_features, "out_features": self.out_features,
                "hidden": list(self.hidden)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "StackedPatches":
        return cls(args["n_patches"], args["in_features"], args["out_features"], tuple(args["hidden"]))


@serializable
class PatchProNetwork(nn.Module):
    """Frozen base (``head ∘ extractor``) + patches routed by an exact box indicator (see module doc).

    Args:
        extractor: ``nn.Identity()`` in input space, else the layers before the cut.
        head: the rest of the base network (the whole base in input space).
        patches: :class:`StackedPatches` reading ``extractor(x)``.
        region_lo, region_hi: (R, *in_shape) repaired input regions. region_patch: (R,) patch of each region.
        tags: (P, 2) long, (true label, wrong label) per patch, for allocation; ``allocation``: "top2"/"none".
        chunk: kept for checkpoint compatibility (unused by the pruned membership test).
    """

    def __init__(self, extractor: nn.Module, head: nn.Module, patches: StackedPatches, region_lo: torch.Tensor,
                 region_hi: torch.Tensor, region_patch: torch.Tensor, tags: torch.Tensor, allocation: str = "top2",
                 chunk: int = 64):
        super().__init__()
        self.extractor, self.head, self.patches = extractor, head, patches
        self.register_buffer("region_lo", region_lo.detach().float().clone())
        self.register_buffer("region_hi", region_hi.detach().float().clone())
        self.register_buffer("region_patch", region_patch.detach().long().clone())
        self.register_buffer("tags", tags.detach().long().clone())
        self.allocation = allocation
        self.chunk = int(chunk)
        for p in list(extractor.parameters()) + list(head.parameters()):
            p.requires_grad_(False)

    @property
    def n_regions(self) -> int:
        return self.region_lo.shape[0]

    def region_of(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the first region containing each input, or -1: (N,) long.

        A box lies inside the Euclidean ball around its centre with radius ``|half-width|``, so one
        matrix product (squared distances to every centre) prunes the pairs; the exact box test runs
        only on the pairs that survive. In ONNX export the plain dense test is traced instead.
        """
        lo, hi = self.region_lo.flatten(1).to(x.dtype), self.region_hi.flatten(1).to(x.dtype)
        xf = x.flatten(1)
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            inside = ((xf.unsqueeze(1) >= lo) & (xf.unsqueeze(1) <= hi)).all(-1)
            return torch.where(inside.any(1), inside.to(torch.int64).argmax(1), torch.full_like(inside[:, 0], -1, dtype=torch.int64))
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        d2 = (xf * xf).sum(1, keepdim=True) + (mid * mid).sum(1) - 2 * xf @ mid.T         # (N, R)
        # generous slack: the prefilter only has to keep every true member (rounding of the expansion)
        cand = d2 <= (half * half).sum(1) * (1 + 1e-4) + 1e-4 * (1 + (mid * mid).sum(1))
        n_idx, r_idx = torch.nonzero(cand, as_tuple=True)
        region = torch.full((len(xf),), -1, dtype=torch.long, device=x.device)
        if len(n_idx):
            inside = ((xf[n_idx] >= lo[r_idx]) & (xf[n_idx] <= hi[r_idx])).all(1)
            n_idx, r_idx = n_idx[inside], r_idx[inside]
            big = torch.full((len(xf),), self.n_regions, dtype=torch.long, device=x.device)
            first = big.scatter_reduce(0, n_idx, r_idx, "amin", include_self=True)
            region = torch.where(first < self.n_regions, first, region)
        return region

    def allocation_weights(self, base_out: torch.Tensor) -> torch.Tensor:
        """The paper's top-2 allocation from the original network's output: (N, P) in {0, 1}."""
        top2 = base_out.topk(2, dim=1).indices                                       # (N, 2)
        true, wrong = self.tags[:, 0], self.tags[:, 1]
        pair = (true[None] == top2[:, :1]) & (wrong[None] == top2[:, 1:])
        first = true[None] == top2[:, :1]
        pair, first = pair.to(base_out.dtype), first.to(base_out.dtype)     # (onnxruntime has no bool Where)
        return torch.where(pair.sum(1, keepdim=True) > 0, pair, first)

    def routing(self, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        """Routing weights (N, P): the region's patch inside a region, else the allocation rule."""
        region = self.region_of(x)
        P = self.patches.n_patches
        inside = region >= 0
        onehot = torch.nn.functional.one_hot(self.region_patch[region.clamp_min(0)], P).to(base_out.dtype)
        if self.allocation == "top2":
            alloc = self.allocation_weights(base_out)
        else:
            alloc = torch.zeros_like(onehot)
        return torch.where(inside[:, None], onehot, alloc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.extractor(x)
        out = self.head(z)
        return out + self.patches.combine(z, self.routing(x, out.detach()))

    def restricted(self, p: int) -> nn.Module:
        """The network as it acts where patch ``p`` is the routed one: ``head ∘ ext + patch_p ∘ ext`` as plain
        boxable modules (``SumOfNetworks``), for independent verification of region certificates."""
        from ...layers import SumOfNetworks

        body = SumOfNetworks(self.head, self.patches.as_module(p))
        if isinstance(self.extractor, nn.Identity):
            return body.eval()
        return nn.Sequential(OrderedDict(extractor=self.extractor, body=body)).eval()

    def fixed_allocation(self, weights: torch.Tensor) -> nn.Module:
        """A view that applies fixed routing ``weights`` (P,) to every input (the paper's DGSR protocol,
        where allocation is decided on the clean input and then held fixed while attacking)."""
        return _FixedRouting(self, weights)

    def spec_args(self) -> dict:
        return {"region_shape": list(self.region_lo.shape), "n_patches": self.patches.n_patches,
                "allocation": self.allocation, "chunk": self.chunk}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "PatchProNetwork":
        shape, P = args["region_shape"], args["n_patches"]
        return cls(children["extractor"], children["head"], children["patches"], torch.zeros(shape), torch.zeros(shape),
                   torch.zeros(shape[0], dtype=torch.long), torch.zeros((P, 2), dtype=torch.long), args["allocation"],
                   args.get("chunk", 64))


class _FixedRouting(nn.Module):
    def __init__(self, net: PatchProNetwork, weights: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("w", weights.detach().float().reshape(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net.extractor(x)
        return self.net.head(z) + self.net.patches.combine(z, self.w.to(z.dtype).expand(len(z), -1))
