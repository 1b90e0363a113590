"""Where is a network hurt? Per-layer activation deviation and layer localisation (SHNN, paper 000).

``trace`` records each weight layer's activation (after the element-wise activation that follows it)
with forward hooks. ``layer_scores`` compares two traces per layer by mean absolute difference (MAD)
or mean squared error (MSE). ``localize`` picks the hurt layer:

* ``"first"`` — the first layer whose score exceeds ``threshold`` (the paper: MAD > 0.1);
* ``"first_increase"`` — the first layer whose score exceeds ``threshold`` *and* rises by more than
  ``threshold`` over the previous layer (the SHNN code's variant); falls back to the peak;
* ``"peak"`` — the layer with the largest score (the paper's rule for adversarial damage, on MSE).

Works on any network: layers are named and ordered by :func:`nnmend.nets.named_layers` (execution order;
a :class:`nnmend.graph.GraphNetwork`'s node names), and ``trace(..., layers=[...])`` also records any other
node or module by name (a residual ``add``, a pooling node, a ReLU), so a DAG is traced anywhere, not only
along a chain of weight layers. For functional operations of your own ``forward()`` (``x + y``,
``torch.relu``) trace ``nnmend.graph.from_module(net)``, where each is a node.

Example::

    d = diagnose(clean_net, damaged_net, x_probe)                   # structural damage
    d.localized, d.mad
    d = diagnose(net, net, x, x_other=x_adv, metric="mse", rule="peak")   # adversarial damage
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from ._validation import check_choice
from .errors import ModelError
from .nets import layer_path, module_paths, trace_points

RULES = ("first", "first_increase", "peak")


@torch.no_grad()
def trace(model: nn.Module, x: torch.Tensor, layers: list[str] | None = None, batch_size: int = 4096, *,
          final_softmax: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """Activations of each weight layer, flattened per sample: ``{layer: (N, features)}``.

    ``layers``: weight layers (recorded after the activation that follows them) or any other node or
    module by name (its own output); default every weight layer. ``final_softmax`` applies a softmax to
    the last layer when no activation follows it (a classifier's logits), so that the output layer is
    compared as probabilities, as a Keras ``Dense(softmax)`` is.
    """
    points = trace_points(model)
    if not points:
        raise ModelError("the network has no Linear or Conv layers to trace")
    last = next(reversed(points))
    soft_last = final_softmax and points[last] == layer_path(model, last)
    if layers is not None:
        nodes = module_paths(model)
        unknown = [n for n in layers if n not in points and n not in nodes]
        if unknown:
            raise ModelError(f"layer(s) or node(s) {unknown} not found; the network's layers are: "
                             f"{', '.join(points)}; its nodes: {', '.join(nodes)}")
        points = OrderedDict((n, points[n] if n in points else nodes[n]) for n in layers)
    store: dict[str, list[torch.Tensor]] = {n: [] for n in points}

    def keep(layer: str, out: torch.Tensor) -> None:
        out = out.detach().reshape(out.shape[0], -1)
        store[layer].append(out.softmax(1) if soft_last and layer == last else out)

    was = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            for layer, out in _outputs(model, x[i : i + batch_size], points).items():
                keep(layer, out)
    finally:
        model.train(was)
    return OrderedDict((n, torch.cat(v)) for n, v in store.items())


def _outputs(model: nn.Module, x: torch.Tensor, points: "OrderedDict[str, str]") -> dict[str, torch.Tensor]:
    """``{name: output of the module at path points[name]}`` for one batch: a graph's nodes are read off its
    evaluation (a module shared by two nodes is told apart), other modules by a hook on their first call."""
    from .graph import GraphNetwork

    if isinstance(model, GraphNetwork) and all(p[:4] == "ops." and p[4:] in model.ops for p in points.values()):
        vals = {model.INPUT: x}
        for node in model.nodes:
            vals[node.name] = model.ops[node.name](*(vals[i] for i in node.inputs))
        return {n: vals[p[4:]] for n, p in points.items()}
    modules, got, handles = dict(model.named_modules()), {}, []
    for layer, point in points.items():
        def hook(_m, _inp, out, layer=layer):
            got.setdefault(layer, out)
        handles.append(modules[point].register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in points if n not in got]
    if missing:
        raise ModelError(f"layer(s) {missing} are never called by the network's forward()")
    return {n: got[n] for n in points}


def layer_scores(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor], metric: str = "mad") -> "OrderedDict[str, float]":
    """Per-layer MAD (mean |a − b|) or MSE (mean (a − b)²) between two traces of the same inputs."""
    check_choice("metric", metric, ("mad", "mse"))
    out: "OrderedDict[str, float]" = OrderedDict()
    for name, a in ref.items():
        if name not in other:
            raise ModelError(f"trace has no layer {name!r} (layers: {', '.join(other)})")
        b = other[name]
        if a.shape != b.shape:
            raise ModelError(f"layer {name!r}: activation shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        d = (a - b).float()
        out[name] = float(d.abs().mean() if metric == "mad" else d.pow(2).mean())
    return out


def localize(scores: dict[str, float], rule: str = "first", threshold: float = 0.1) -> str | None:
    """Pick the hurt layer from per-layer scores (see module docstring); ``None`` if nothing exceeds."""
    check_choice("rule", rule, RULES)
    names, vals = list(scores), list(scores.values())
    if not names:
        return None
    if rule == "peak":
        return names[max(range(len(vals)), key=vals.__getitem__)]
    prev = 0.0
    for n, v in zip(names, vals):
        if v > threshold and (rule == "first" or v - prev > threshold):
            return n
        prev = v
    if rule == "first_increase" and max(vals) > threshold:
        return names[max(range(len(vals)), key=vals.__getitem__)]
    return None


@dataclass(frozen=True)
class Diagnosis:
    """Per-layer scores and the localised layer."""

    mad: dict[str, float]
    mse: dict[str, float]
    localized: str | None
    metric: str
    rule: str
    threshold: float
    n_samples: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"mad": self.mad, "mse": self.mse, "localized": self.localized, "metric": self.metric,
                "rule": self.rule, "threshold": self.threshold, "n_samples": self.n_samples, **self.extra}


def diagnose(reference: nn.Module | dict[str, torch.Tensor], suspect: nn.Module, x: torch.Tensor, *,
             x_other: torch.Tensor | None = None, metric: str = "mad", rule: str = "first",
             threshold: float = 0.1, final_softmax: bool = True) -> Diagnosis:
    """Compare ``suspect`` on ``x`` (or on ``x_other``) with ``reference`` on ``x``, and localise.

    Args:
        reference: the healthy network, or a trace of it on ``x`` recorded earlier (what a deployed
            self-healing system stores).
        suspect: the network under suspicion (damaged, or the same network for adversarial inputs).
        x: probe inputs. x_other: the inputs fed to ``suspect`` (e.g. adversarial versions of ``x``).
        metric: the score used for localisation (both are always reported).
        final_softmax: compare a classifier's output layer as probabilities (SHNN's Keras model ends in
            ``Dense(softmax)``); otherwise raw logits, whose scale dominates MSE.
    """
    ref = reference if isinstance(reference, dict) else trace(reference, x, final_softmax=final_softmax)
    sus = trace(suspect, x if x_other is None else x_other, final_softmax=final_softmax)
    mad, mse = layer_scores(ref, sus, "mad"), layer_scores(ref, sus, "mse")
    scores = mad if metric == "mad" else mse
    return Diagnosis(dict(mad), dict(mse), localize(scores, rule, threshold), metric, rule, threshold, len(x))


from ._api import callable_module  # noqa: E402  (nnmend.diagnose(...) calls diagnose(); see nnmend._api)

callable_module(__name__, diagnose)
