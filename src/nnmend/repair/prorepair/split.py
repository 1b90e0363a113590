"""Split ``N = g ∘ h`` at a named layer, choose the editable parameters of ``h``, and bound ``h`` cheaply.

Only the chosen edit layers of ``h`` change; everything before the first edit layer (the *prefix*) is
frozen, so its linear relaxation over an input box is computed once per box and stays sound for the
whole repair (:func:`prefix_relaxation`).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ...bounds.backward import concretize, crown_lower, intermediate_bounds
from ...bounds.graph import compile_network
from ...errors import ModelError

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


def _children(network: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(network, nn.Sequential):
        raise ModelError(f"ProRepair splits nn.Sequential networks at a named child; got {type(network).__name__}")
    return list(network.named_children())


def split_network(network: nn.Module, split_layer: str | None) -> tuple[nn.Sequential, nn.Sequential]:
    """``(h, g)``: ``h`` the children before ``split_layer``, ``g`` it and the rest (shared modules, eval mode).

    ``split_layer=None`` splits at the last Linear layer (``g`` affine). Raises :class:`ModelError`
    naming the layer and the valid choices when the name is unknown or leaves ``h`` or ``g`` empty.
    """
    kids = _children(network)
    names = [n for n, _ in kids]
    if split_layer is None:
        lin = [i for i, (_, m) in enumerate(kids) if isinstance(m, nn.Linear)]
        if not lin:
            raise ModelError("ProRepair: the network has no Linear layer to split at; give split_layer")
        idx = lin[-1]
    else:
        if split_layer not in names:
            raise ModelError(f"ProRepair: split layer {split_layer!r} is not a top-level layer of the network; "
                             f"choose one of: {', '.join(names[1:])}")
        idx = names.index(split_layer)
    if idx == 0:
        raise ModelError(f"ProRepair: split layer {names[idx]!r} leaves no feature extractor h; "
                         f"choose one of: {', '.join(names[1:])}")
    if not any(isinstance(m, WEIGHT_LAYERS) for _, m in kids[:idx]):
        raise ModelError(f"ProRepair: nothing to edit before split layer {names[idx]!r} (no Linear/Conv2d in h)")
    h = nn.Sequential(*[m for _, m in kids[:idx]]).eval()
    g = nn.Sequential(*[m for _, m in kids[idx:]]).eval()
    return h, g


def edit_indices(h: nn.Sequential, edit_layers: tuple[str, ...] | None, names: list[str]) -> list[int]:
    """Positions in ``h`` of the layers to edit (default: the last weight layer of ``h``; ``("*",)``: all of them)."""
    weight = [i for i, m in enumerate(h) if isinstance(m, WEIGHT_LAYERS)]
    if not edit_layers:
        return [weight[-1]]
    if tuple(edit_layers) == ("*",):
        return weight
    out = []
    for name in edit_layers:
        if name not in names[: len(h)]:
            valid = ", ".join(names[i] for i in weight)
            raise ModelError(f"ProRepair: edit layer {name!r} is not a Linear/Conv2d layer of the feature extractor h; "
                             f"choose from: {valid}")
        i = names.index(name)
        if not isinstance(h[i], WEIGHT_LAYERS):
            raise ModelError(f"ProRepair: edit layer {name!r} is a {type(h[i]).__name__}, not Linear/Conv2d")
        out.append(i)
    return sorted(out)


def editable_copy(network: nn.Module, split_idx: int, edit_idx: list[int]) -> tuple[nn.Sequential, list[nn.Parameter]]:
    """A deep copy of ``network`` with only the edit layers trainable; returns it and those parameters."""
    net = copy.deepcopy(network).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for i in edit_idx:
        for p in net[i].parameters():
            p.requires_grad_(True)
            params.append(p)
    return net, params


def fast_feature_path(h: nn.Sequential, edit_idx: list[int]) -> bool:
    """True when one Linear layer is edited and only a ReLU (or nothing) follows it in ``h``."""
    if len(edit_idx) != 1 or not isinstance(h[edit_idx[0]], nn.Linear):
        return False
    tail = list(h)[edit_idx[0] + 1:]
    return all(isinstance(m, nn.ReLU) for m in tail) and len(tail) <= 1


@torch.no_grad()
def prefix_relaxation(prefix: nn.Sequential, lo: torch.Tensor, hi: torch.Tensor) -> dict:
    """Linear bounds ``A_l x + c_l <= prefix(x) <= A_u x + c_u`` and intervals over each box (CROWN).

    Args:
        prefix: the frozen part of ``h`` before the edited layer (may be empty or only a Flatten).
        lo, hi: (B, *in_shape) boxes.
    Returns:
        dict with ``A_l, A_u`` (B, n, d), ``c_l, c_u, z_lo, z_hi`` (B, n) and the flat box ``lo, hi`` (B, d).
    """
    flo, fhi = lo.flatten(1), hi.flatten(1)
    B, d = flo.shape
    if all(isinstance(m, (nn.Flatten, nn.Identity)) for m in prefix):       # nothing frozen before the edit
        eye = torch.eye(d, dtype=flo.dtype).expand(B, d, d)
        zero = flo.new_zeros(B, d)
        return {"A_l": eye, "A_u": eye, "c_l": zero, "c_u": zero, "z_lo": flo, "z_hi": fhi, "lo": flo, "hi": fhi}
    nodes = compile_network(prefix)
    pre = intermediate_bounds(nodes, lo, hi, "crown")
    n = prefix(lo[:1]).flatten(1).shape[1]
    eye = torch.eye(n, dtype=flo.dtype)
    A = torch.cat([eye, -eye]).expand(B, 2 * n, n)
    lb, A_in = crown_lower(nodes, lo, hi, A.reshape(B, 2 * n, *prefix(lo[:1]).shape[1:]), pre)
    A_in = A_in.flatten(2)
    const = lb - concretize(A_in, torch.zeros_like(lb), lo, hi)
    return {"A_l": A_in[:, :n], "c_l": const[:, :n], "A_u": -A_in[:, n:], "c_u": -const[:, n:],
            "z_lo": lb[:, :n], "z_hi": -lb[:, n:], "lo": flo, "hi": fhi}


def edited_feature_bounds(layer: nn.Linear, relu: bool, rel: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds of ``relu?(W z + b)`` for ``z = prefix(x)``, ``x`` in each box; differentiable in ``W, b``.

    Combines the prefix's linear bounds (back-substituted to the input box) with its interval bounds
    and keeps the tighter of the two per neuron. (B, n_out) each.
    """
    W, b = layer.weight, layer.bias
    Wp, Wn = W.clamp(min=0), W.clamp(max=0)
    mid = ((rel["lo"] + rel["hi"]) / 2).unsqueeze(-1)
    rad = ((rel["hi"] - rel["lo"]) / 2).unsqueeze(-1)
    M_lo = Wp @ rel["A_l"] + Wn @ rel["A_u"]                     # (B, m, d)
    M_hi = Wp @ rel["A_u"] + Wn @ rel["A_l"]
    c_lo = rel["c_l"] @ Wp.T + rel["c_u"] @ Wn.T
    c_hi = rel["c_u"] @ Wp.T + rel["c_l"] @ Wn.T
    lin_lo = (M_lo @ mid).squeeze(-1) - (M_lo.abs() @ rad).squeeze(-1) + c_lo
    lin_hi = (M_hi @ mid).squeeze(-1) + (M_hi.abs() @ rad).squeeze(-1) + c_hi
    int_lo = rel["z_lo"] @ Wp.T + rel["z_hi"] @ Wn.T
    int_hi = rel["z_hi"] @ Wp.T + rel["z_lo"] @ Wn.T
    lo = torch.maximum(lin_lo, int_lo)
    hi = torch.minimum(lin_hi, int_hi)
    if b is not None:
        lo, hi = lo + b, hi + b
    if relu:
        lo, hi = lo.clamp(min=0), hi.clamp(min=0)
    return lo, hi
