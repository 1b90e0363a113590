"""Fault localisation (paper 004, Sec. 4.1–4.2): faulty neurons and their most suspicious edges.

* Intermediate layer: the faulty neurons are the pattern neurons some selected failing input
  disagrees with (Eq. 3), or every pattern neuron (the artefact).
* Edge defect score (Eq. 4) of incoming edge ``i`` of neuron ``N``::

      score(E_i) = mean_{X in Fail} |a_i(X) w_{N,i}| - mean_{X in Pass} |a_i(X) w_{N,i}|

  with ``a_i`` the previous layer's activation; the top edges per neuron become symbolic (10 % of
  the incoming edges on the intermediate layer, 5 on the last).

Example::

    edges = top_edges(edge_scores(a_fail, a_pass, W[neurons]), k=57)     # (len(neurons), 57)
"""
from __future__ import annotations

import torch


def edge_scores(a_fail: torch.Tensor, a_pass: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for every incoming edge of the given neurons.

    Args:
        a_fail: (F, in) layer inputs of the failing inputs; a_pass: (P, in) of the passing ones.
        weights: (K, in) incoming weights of the K neurons.
    Returns:
        (K, in) scores; |a w| = |a| |w|, so the means factor out.
    """
    mean_f = a_fail.abs().mean(0) if len(a_fail) else torch.zeros(weights.shape[1])
    mean_p = a_pass.abs().mean(0) if len(a_pass) else torch.zeros(weights.shape[1])
    return weights.abs() * (mean_f - mean_p)[None, :]


def top_edges(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(K, k) indices of the k highest-scoring incoming edges per neuron (ties: lower index first)."""
    k = max(1, min(k, scores.shape[1]))
    return torch.topk(scores, k, dim=1, sorted=True).indices


def faulty_neurons(disagree: torch.Tensor, neurons: torch.Tensor, mode: str = "disagreeing") -> torch.Tensor:
    """Pattern neurons to make symbolic: those disagreeing for some failing input (Eq. 3), or all of them.

    Args:
        disagree: (F, len(neurons)) bool from :meth:`Pattern.disagreeing`.
        neurons: (len(neurons),) the pattern's neuron indices.
    """
    if mode == "pattern" or len(disagree) == 0:
        return neurons
    return neurons[disagree.any(0)]
