"""NNrepair's experts and their combination as one ``nn.Module`` (paper 004, Sec. 4.3).

Expert ``e`` is the network with sparse deltas on one layer's weights, built for label ``labels[e]``.
All experts share the trunk (every layer before the repaired one), which runs once; execution then
branches. The combination rules are part of ``forward``, so attacks on the module attack them too:

* an expert *claims* an input when its argmax is its own label; no claimant → the original network;
  one claimant → its output;
* several claimants: ``"naive"`` → the original network; ``"confidence"`` → the claimant with the
  largest logit for its own label; ``"voting"`` → the claimant whose label most experts (claiming or
  not) predict, ties to the first;
* ``"merged"``: one network with the deltas combined — averaged over the active experts on an
  intermediate layer, summed on the last layer (the experts' edges are disjoint there);
* ``active`` masks out experts (the F1 filter, :func:`f1_filter`).

``forward`` returns the chosen branch's logits, so ``argmax`` of the output is the combined label and
gradients flow through the chosen branch.

Example::

    ens = ExpertEnsemble(trunk, head, labels=[0, 1], index=idx, value=val, strategy="confidence")
    ens(x).argmax(1)
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ...io.checkpoint import serializable
from .config import STRATEGIES


@serializable
class ExpertEnsemble(nn.Module):
    """Shared trunk, a head whose first module is the repaired Linear, and K sparse weight deltas.

    Args:
        trunk: modules before the repaired layer (output flattened to (N, in)).
        head: ``nn.Sequential`` starting with the repaired ``nn.Linear`` (original weights).
        labels: (K,) the label each expert is built for.
        index: (K, V) flat indices into ``head[0].weight``; value: (K, V) deltas (0 pads unused slots).
        active: (K,) bool, experts taking part (default all).
        strategy: ``"naive"``, ``"confidence"``, ``"voting"`` or ``"merged"``.
        merge: how ``"merged"`` combines deltas, ``"mean"`` (intermediate layer) or ``"sum"`` (last).
    """

    def __init__(self, trunk: nn.Module, head: nn.Sequential, labels: torch.Tensor, index: torch.Tensor,
                 value: torch.Tensor, active: torch.Tensor | None = None, strategy: str = "confidence",
                 merge: str = "mean"):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not one of {STRATEGIES}")
        self.trunk, self.head = trunk, head
        self.strategy, self.merge = strategy, merge
        self.register_buffer("labels", torch.as_tensor(labels, dtype=torch.long).clone())
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).clone())
        self.register_buffer("value", torch.as_tensor(value, dtype=torch.float32).clone())
        act = torch.ones(len(self.labels), dtype=torch.bool) if active is None else torch.as_tensor(active, dtype=torch.bool)
        self.register_buffer("active", act.clone())

    # --- deltas ------------------------------------------------------------------------------------
    def deltas(self) -> torch.Tensor:
        """(K, out, in) dense deltas of every expert."""
        w = self.head[0].weight
        flat = torch.zeros(len(self.labels), w.numel(), dtype=w.dtype, device=w.device)
        flat.scatter_add_(1, self.index, self.value.to(w.dtype))
        return flat.view(len(self.labels), *w.shape)

    def merged_delta(self) -> torch.Tensor:
        d = self.deltas()[self.active]
        if len(d) == 0:
            return torch.zeros_like(self.head[0].weight)
        return d.mean(0) if self.merge == "mean" else d.sum(0)

    def _rest(self, z: torch.Tensor) -> torch.Tensor:
        return self.head[1:](z) if len(self.head) > 1 else z

    # --- forward -----------------------------------------------------------------------------------
    def expert_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Original logits (N, C) and every expert's logits (K, N, C), the trunk run once."""
        h = self.trunk(x).flatten(1)
        z0 = self.head[0](h)
        z = z0[None] + torch.einsum("ni,koi->kno", h, self.deltas())
        K, N, O = z.shape
        return self._rest(z0), self._rest(z.reshape(K * N, O)).reshape(K, N, -1)

    def choose(self, logits0: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(N,) index of the expert whose output is used, −1 for the original network."""
        K, N, C = logits.shape
        pred = logits.argmax(2)                                               # (K, N)
        claims = (pred == self.labels[:, None]) & self.active[:, None]
        n_claims = claims.sum(0)
        first = claims.float().argmax(0)                                      # first claimant
        if self.strategy == "naive":
            return torch.where(n_claims == 1, first, -1)
        if self.strategy == "confidence":
            own = logits.gather(2, self.labels[:, None, None].expand(K, N, 1)).squeeze(2)
            score = own.masked_fill(~claims, float("-inf"))
        else:  # voting: every active expert votes for its argmax
            votes = torch.zeros(C, N, device=logits.device)
            votes.scatter_add_(0, pred, self.active[:, None].expand(K, N).float())
            score = votes.gather(0, self.labels[:, None].expand(K, N)).masked_fill(~claims, float("-inf"))
        return torch.where(n_claims >= 1, score.argmax(0), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strategy == "merged":
            h = self.trunk(x).flatten(1)
            lin = self.head[0]
            return self._rest(nn.functional.linear(h, lin.weight + self.merged_delta(), lin.bias))
        logits0, logits = self.expert_logits(x)
        pick = self.choose(logits0, logits)
        chosen = logits.gather(0, pick.clamp(min=0)[None, :, None].expand(1, -1, logits.shape[2])).squeeze(0)
        return torch.where((pick >= 0)[:, None], chosen, logits0)

    # --- variants ----------------------------------------------------------------------------------
    def with_strategy(self, strategy: str | None = None, active: torch.Tensor | None = None) -> "ExpertEnsemble":
        """A copy with another combination rule and/or active set (the solved deltas are shared data)."""
        out = copy.deepcopy(self)
        if strategy is not None:
            if strategy not in STRATEGIES:
                raise ValueError(f"strategy={strategy!r} is not one of {STRATEGIES}")
            out.strategy = strategy
        if active is not None:
            out.active = torch.as_tensor(active, dtype=torch.bool).clone()
        return out

    def merged_network(self) -> nn.Sequential:
        """The merged experts as a plain ``nn.Sequential`` (no overhead; exports anywhere)."""
        head = copy.deepcopy(self.head)
        with torch.no_grad():
            head[0].weight += self.merged_delta()
        return nn.Sequential(*copy.deepcopy(list(self.trunk)), nn.Flatten(), *head).eval()

    # --- checkpoints -------------------------------------------------------------------------------
    def spec_args(self) -> dict:
        return {"n_experts": len(self.labels), "width": int(self.index.shape[1]),
                "strategy": self.strategy, "merge": self.merge}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "ExpertEnsemble":
        k, v = int(args["n_experts"]), int(args["width"])
        return cls(children["trunk"], children["head"], torch.zeros(k, dtype=torch.long),
                   torch.zeros(k, v, dtype=torch.long), torch.zeros(k, v), torch.ones(k, dtype=torch.bool),
                   args["strategy"], args["merge"])


def f1_scores(pred: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K,) one-vs-rest F1 of predictions ``pred[k]`` (K, N) for label ``labels[k]`` against ``y`` (N,)."""
    p, t = pred == labels[:, None], y[None, :] == labels[:, None]
    tp = (p & t).sum(1).float()
    denom = (p.sum(1) + t.sum(1)).float()
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))


@torch.no_grad()
def f1_filter(ensemble: ExpertEnsemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(K,) bool: experts whose F1 for their own label on ``(x, y)`` is strictly above the original's."""
    ensemble.eval()
    p0, pk = [], []
    for i in range(0, len(x), batch_size):
        l0, lk = ensemble.expert_logits(x[i:i + batch_size])
        p0.append(l0.argmax(1)), pk.append(lk.argmax(2))
    pred0, predk = torch.cat(p0), torch.cat(pk, 1)                        # (N,), (K, N)
    labels = ensemble.labels
    f_orig = f1_scores(pred0[None].expand(len(labels), -1), y, labels)
    f_exp = f1_scores(predk, y, labels)
    return f_exp > f_orig
