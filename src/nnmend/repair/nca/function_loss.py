"""Function-space loss for NCA training: errors weighted by what they do to the network's output.

Most of a trained first layer's weight variance is function-irrelevant — e.g. MNIST border pixels are
always 0, so their weights keep their random initialisation and no rule can (or needs to) predict
them. Matching weights cell by cell therefore wastes the rule's capacity. This loss instead measures a
regenerated crop by the change it causes in the layer's pre-activations on a few hundred real inputs,
each unit weighted by how strongly the network's logits react to it (first-order Taylor expansion):

    L_f = Σ_r Σ_n G_rn (Σ_{p ∈ row r} d_p x_{n, col_p})² / Σ_r Σ_n G_rn Σ_{p ∈ row r} x_{n, col_p}²,

with ``d`` the crop's error in normalised weight units, ``x_n`` the layer's input on image ``n`` and
``G_rn = Σ_k (∂ logit_k / ∂ z_r)²`` (z: the layer's pre-activation). The denominator is the value
for i.i.d. unit-variance errors, so ``L_f`` is on the same scale as the weight-space MSE.

Example::

    target = function_target(net, "fc1", data.x[:512])
    crop_loss = function_space_loss(target, err, rows, cols)     # err, rows, cols: (B, P)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import RepairError
from ...nets import get_layer


@dataclass(frozen=True)
class FunctionTarget:
    """Inputs of one layer and the output sensitivity of its units.

    Attributes:
        x: ``(n_images, in_features)`` the layer's inputs.
        g: ``(out_features, n_images)`` ``Σ_k (∂ logit_k / ∂ z_r)²``, scaled to mean 1.
    """

    x: torch.Tensor
    g: torch.Tensor


def function_target(network: nn.Module, layer: str, inputs: torch.Tensor) -> FunctionTarget:
    """Record ``layer``'s inputs and per-unit output sensitivity on ``inputs`` (network inputs, a batch)."""
    mod = get_layer(network, layer)
    if not isinstance(mod, nn.Linear):
        raise RepairError(f"function-space loss needs a dense (Linear) layer; {layer!r} is {type(mod).__name__}")
    if inputs.shape[0] < 1:
        raise RepairError("function-space loss needs at least one input image")
    seen: dict[str, torch.Tensor] = {}

    def hook(_m, args, out):
        seen["x"] = args[0].detach().reshape(args[0].shape[0], -1)
        out.retain_grad()
        seen["z"] = out
        return out

    handle = mod.register_forward_hook(hook)
    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad():
            logits = network(inputs.float())
            z = seen["z"]
            g = torch.zeros_like(z)
            for k in range(logits.shape[1]):
                (grad,) = torch.autograd.grad(logits[:, k].sum(), z, retain_graph=k + 1 < logits.shape[1])
                g += grad.detach() ** 2
    finally:
        handle.remove()
        network.train(was_training)
    g = g.T.contiguous()
    return FunctionTarget(seen["x"].float(), g / g.mean().clamp_min(1e-12))


def function_space_loss(target: FunctionTarget, err: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of :math:`L_f` (module docstring).

    Args:
        target: :class:`FunctionTarget` of the layer.
        err: ``(B, P)`` error of P crop cells (normalised weight units).
        rows, cols: ``(B, P)`` long, the weight-matrix row (unit) and column (input) of each cell.
        weight: ``(B, P)`` optional 0/1 cell weights (crop interior).
    """
    losses = []
    for b in range(err.shape[0]):  # a handful of crops; per crop, only the units it touches
        e = err[b] if weight is None else err[b] * weight[b]
        live = torch.ones_like(e) if weight is None else weight[b]
        uniq, inv = torch.unique(rows[b], return_inverse=True)
        onehot = torch.zeros(uniq.numel(), e.numel(), dtype=e.dtype)
        onehot[inv, torch.arange(e.numel())] = 1.0
        xs = target.x.T[cols[b]]  # (P, n)
        dz = (onehot * e) @ xs  # (U, n) pre-activation change
        ref = (onehot * live) @ (xs * xs)  # its value for i.i.d. unit-variance errors
        g = target.g[uniq]
        losses.append((g * dz * dz).sum() / (g * ref).sum().clamp_min(1e-12))
    return torch.stack(losses).mean()
