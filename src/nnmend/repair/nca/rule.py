"""The NCA update rule for weight grids (Growing NCA, Mordvintsev et al., Distill 2020, adapted).

State per cell: channel 0 is the normalised weight ``(w − μ)/σ``; channels 1 … are hidden "chemical"
channels. In nnmend the hidden channels are scratch memory of the repair, *not stored*: every repair
starts them at zero, so the stored artefact is the weight matrix itself and an attacker who corrupts a
cell corrupts everything stored about it (the all-channel threat model holds by construction; the
storage overhead is the rule alone, see :func:`storage_bytes`).

One step (per cell, all cells in parallel):

1. Perception: fixed depthwise 3×3 filters — identity, Sobel-x, Sobel-y, Laplacian — on every state
   channel and on the trust channel (1 trusted, 0 known bad, 0.5 unknown = blind mode), with zero
   padding at the true grid border. Optional multi-scale perception: the Sobel and Laplacian filters
   again at dilations 2, 4, … (``dilations``), so that at high corruption a cell sees trusted cells
   beyond its 3×3 neighbourhood within one step.
2. Inputs to the rule: perception and fixed positional channels (:func:`layout.positional_channels`).
   Hidden channels start from a learned coarse seed map (one vector per unit in the receptive-field
   layout, a coarse map otherwise), stored with the rule and counted as overhead (research notes §2.4.2).
3. A per-cell MLP (1×1 convolutions, ReLU), last layer zero-initialised so the untrained CA is the
   identity; the output is added residually.
4. Stochastic firing: each cell applies its update with probability ``fire_rate`` (asynchrony).
5. Informed mode: trusted cells' weight channel is clamped back to its stored value after each step.

There is no alive masking: every cell of a weight matrix exists, and a zeroed cell must be revivable.

Example::

    rule = NCARule(hidden_channels=11, width=64, frequencies=2, meta={...})
    state = rule.initial_state(grid)                   # (N, 12, H, W)
    state = rule.run(state, pos, trust, steps=48, gen=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import RepairError
from ...io.checkpoint import serializable

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_LAPLACE = torch.tensor([[1.0, 2.0, 1.0], [2.0, -12.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
_IDENT = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
N_FILTERS = 4
TRUSTED, BAD, UNKNOWN = 1.0, 0.0, 0.5


@serializable
class NCARule(nn.Module):
    """A neural CA rule bound to one layer's geometry.

    Args:
        hidden_channels: hidden state channels (the state has ``1 + hidden_channels``).
        width: hidden width of the per-cell MLP.
        frequencies: positional sin/cos frequencies (``4·frequencies + 2`` positional channels).
        fire_rate: probability that a cell updates in a step.
        dilations: dilations of the perception filters (``(1,)`` = the Distill model; identity only at 1).
        meta: JSON metadata binding the rule to a layer — ``layer``, ``weight_shape``, ``layout``,
            ``grid_shape``, ``mu``, ``sigma``, ``clip``, ``horizon`` (training steps), ``train_seconds``.
        n_rows, n_cols: sizes of the stored row/column permutations (buffers ``row_perm``, ``col_perm``).
    """

    def __init__(self, hidden_channels: int = 11, width: int = 64, frequencies: int = 2, fire_rate: float = 0.5,
                 meta: dict[str, Any] | None = None, n_rows: int = 1, n_cols: int = 1,
                 seed_shape: tuple[int, int, int] = (1, 1, 1), dilations: tuple[int, ...] = (1,)):
        super().__init__()
        if not dilations or dilations[0] != 1 or any(d < 1 for d in dilations):
            raise RepairError(f"dilations must start with 1 and be positive, got {dilations}")
        self.dilations = tuple(int(d) for d in dilations)
        self.hidden_channels, self.width, self.frequencies = hidden_channels, width, frequencies
        self.fire_rate = fire_rate
        self.meta = dict(meta or {})
        c = 1 + hidden_channels
        self.channels = c
        self.n_pos = 4 * frequencies + 2
        filt = torch.stack([_IDENT, _SOBEL, _SOBEL.T, _LAPLACE])  # (4, 3, 3)
        # the trust channel is perceived like a state channel, so a cell sees how trusted its neighbours are
        self.register_buffer("filters", filt.repeat(c + 1, 1, 1)[:, None], persistent=False)  # (4(c+1), 1, 3, 3)
        self.register_buffer("filters_wide", filt[1:].repeat(c + 1, 1, 1)[:, None], persistent=False)
        n_percept = (N_FILTERS + (N_FILTERS - 1) * (len(self.dilations) - 1)) * (c + 1)
        self.fc1 = nn.Conv2d(n_percept + self.n_pos, width, 1)
        self.fc2 = nn.Conv2d(width, c, 1, bias=False)
        nn.init.zeros_(self.fc2.weight)  # start as the identity map
        # learned hidden-state seed: a coarse (n_grids, hidden, sh, sw) map, bilinearly upsampled to the grid;
        # stored with the rule (counted as overhead), never part of the corruptible state
        self.seed_map = nn.Parameter(0.1 * torch.randn(seed_shape[0], hidden_channels, seed_shape[1], seed_shape[2]))
        self.register_buffer("row_perm", torch.arange(n_rows))
        self.register_buffer("col_perm", torch.arange(n_cols))

    # -- checkpoint protocol -------------------------------------------------------------------------
    def spec_args(self) -> dict:
        return {"hidden_channels": self.hidden_channels, "width": self.width, "frequencies": self.frequencies,
                "fire_rate": self.fire_rate, "meta": self.meta, "n_rows": int(self.row_perm.numel()),
                "n_cols": int(self.col_perm.numel()), "seed_shape": [self.seed_map.shape[0], *self.seed_map.shape[2:]],
                "dilations": list(self.dilations)}

    @classmethod
    def from_spec(cls, args: dict, children: dict) -> "NCARule":
        rule = cls(int(args["hidden_channels"]), int(args["width"]), int(args["frequencies"]),
                   float(args["fire_rate"]), dict(args.get("meta") or {}), int(args["n_rows"]), int(args["n_cols"]),
                   tuple(int(v) for v in args.get("seed_shape", (1, 1, 1))),
                   tuple(int(v) for v in args.get("dilations", (1,))))
        return rule

    # -- dynamics ------------------------------------------------------------------------------------
    def perceive(self, state: torch.Tensor, trust: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, trust], 1)
        out = [F.conv2d(x, self.filters, padding=1, groups=self.channels + 1)]
        for d in self.dilations[1:]:
            out.append(F.conv2d(x, self.filters_wide, padding=d, dilation=d, groups=self.channels + 1))
        return torch.cat(out, 1) if len(out) > 1 else out[0]

    def fused_kernels(self) -> list[tuple[torch.Tensor, int]]:
        """``fc1`` ∘ :meth:`perceive` as one dense 3×3 kernel ``(width, C+1, 3, 3)`` per dilation (both are linear;
        measured on the 100×28×28 small-MLP fc1 grid, a whole CA step runs 1.3–1.6× faster this way)."""
        c1, w = self.channels + 1, self.fc1.weight[:, :, 0, 0]
        filt = self.filters[:N_FILTERS, 0]  # (4, 3, 3): identity, Sobel x, Sobel y, Laplace
        out = [(torch.einsum("ocf,fij->ocij", w[:, :N_FILTERS * c1].reshape(-1, c1, N_FILTERS), filt), 1)]
        off = N_FILTERS * c1
        for d in self.dilations[1:]:
            blk = w[:, off:off + (N_FILTERS - 1) * c1].reshape(-1, c1, N_FILTERS - 1)
            out.append((torch.einsum("ocf,fij->ocij", blk, filt[1:]), d))
            off += (N_FILTERS - 1) * c1
        return out

    def position_term(self, pos: torch.Tensor) -> torch.Tensor:
        """``fc1``'s response to the fixed positional channels, plus its bias: the same at every step of a run."""
        return F.conv2d(pos, self.fc1.weight[:, -self.n_pos:], self.fc1.bias).contiguous(memory_format=torch.channels_last)

    def delta(self, state: torch.Tensor, pos: torch.Tensor, trust: torch.Tensor,
              pos_term: torch.Tensor | None = None) -> torch.Tensor:
        """The per-cell update: perception (fixed filters), then the two-layer MLP (fused; see :meth:`fused_kernels`).
        ``pos_term``: :meth:`position_term` of ``pos``, computed once per run (else every step)."""
        x = torch.cat([state, trust], 1).contiguous(memory_format=torch.channels_last)  # ~3x faster dense convs on CPU
        h = self.position_term(pos.to(x.dtype)) if pos_term is None else pos_term
        for kernel, d in self.fused_kernels():
            h = h + F.conv2d(x, kernel, padding=d, dilation=d)
        return self.fc2(F.relu(h))

    def step(self, state: torch.Tensor, pos: torch.Tensor, trust: torch.Tensor, gen: torch.Generator | None,
             clamp: torch.Tensor | None = None, pos_term: torch.Tensor | None = None) -> torch.Tensor:
        """One CA step. ``clamp``: stored normalised weights for trusted cells (informed mode), or None."""
        n, _, h, w = state.shape
        fire = (torch.rand((n, 1, h, w), generator=gen, device=state.device) < self.fire_rate).to(state.dtype)
        state = state + self.delta(state, pos, trust, pos_term) * fire
        if clamp is not None:
            trusted = trust == TRUSTED
            state = torch.cat([torch.where(trusted, clamp, state[:, :1]), state[:, 1:]], 1)
        return state

    def run(self, state: torch.Tensor, pos: torch.Tensor, trust: torch.Tensor, steps: int,
            gen: torch.Generator | None, clamp: torch.Tensor | None = None) -> torch.Tensor:
        pos_term = self.position_term(pos.to(state.dtype))
        for _ in range(steps):
            state = self.step(state, pos, trust, gen, clamp, pos_term)
        return state

    def hidden_seed(self, height: int, width: int) -> torch.Tensor:
        """The learned seed map upsampled to ``(n_grids, hidden, height, width)``."""
        if self.seed_map.shape[2:] == (1, 1):
            return self.seed_map.expand(-1, -1, height, width)
        return F.interpolate(self.seed_map, size=(height, width), mode="bilinear", align_corners=True)

    def initial_state(self, grid: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` normalised weights (all grids of the layout) → ``(N, C, H, W)``, hidden channels
        from the learned seed."""
        return torch.cat([grid, self.hidden_seed(*grid.shape[2:]).to(grid.dtype)], 1)

    def normalise(self, w: torch.Tensor) -> torch.Tensor:
        clip = float(self.meta["clip"])
        return ((w - float(self.meta["mu"])) / float(self.meta["sigma"])).clamp(-clip, clip)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * float(self.meta["sigma"]) + float(self.meta["mu"])

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def half_precision(rule: NCARule) -> NCARule:
    """A copy of ``rule`` whose parameters are rounded to float16 (stored in 2 bytes each).

    The values stay float32 tensors for computation but are exactly representable in float16, so
    :func:`storage_bytes` counts 2 bytes per parameter (``meta["param_bytes"]``).
    """
    out = NCARule.from_spec(rule.spec_args(), {})
    out.load_state_dict(rule.state_dict())
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(p.half().float())
    out.meta["param_bytes"] = 2
    return out.eval()


def storage_bytes(rule: NCARule) -> dict[str, int]:
    """What the NCA adds to the stored model, in bytes (float32 — or float16 after
    :func:`half_precision` — parameters, int64 permutations).

    The stored state is the weight matrix alone (hidden channels are not stored), so the extra state
    is 0 bytes; the rule's parameters and the layout's permutations are the overhead.
    """
    params = rule.n_parameters() * int(rule.meta.get("param_bytes", 4))
    perms = 0 if rule.meta.get("layout") != "correlation" else (rule.row_perm.numel() + rule.col_perm.numel()) * 8
    r, c = rule.meta["weight_shape"]
    return {"weight_bytes": int(r * c * 4), "extra_state_bytes": 0, "rule_bytes": int(params + perms),
            "overhead_fraction": (params + perms) / float(r * c * 4)}
