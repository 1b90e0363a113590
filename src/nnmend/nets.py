"""Model zoo and layer access.

``named_layers(model)`` lists a network's weight layers (``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d``) in
execution order; every other module (faults, diagnose, repair) refers to layers by those names: the node
names of a :class:`nnmend.graph.GraphNetwork` (``"layer1_0_conv1"``), the qualified module paths of any
other network (``"fc2"``, ``"layer1.0.conv1"`` of a user's own class, ordered as its ``forward()`` calls
them when ``torch.fx`` can trace it). ``pretrained(name)`` loads a small checkpoint shipped with the package.

Example::

    net = shnn_mlp()
    list(named_layers(net))        # ['fc1', 'fc2', 'fc3', 'fc4']
    get_layer(net, "fc2")           # Linear(256, 128)
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import ModelError

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.GELU, nn.ELU)


def mlp(sizes: list[int], *, flatten: bool = True, prefix: str = "fc") -> nn.Sequential:
    """A ReLU MLP with layers named ``fc1 … fcK`` (no activation after the last)."""
    mods: "OrderedDict[str, nn.Module]" = OrderedDict()
    if flatten:
        mods["flatten"] = nn.Flatten()
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        mods[f"{prefix}{i}"] = nn.Linear(a, b)
        if i < len(sizes) - 1:
            mods[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(mods)


def shnn_mlp() -> nn.Sequential:
    """SHNN's MNIST MLP 784-256-128-64-10 (paper 000, Sec. IV; Adam, 10 epochs, batch 128)."""
    return mlp([784, 256, 128, 64, 10])


def small_mlp() -> nn.Sequential:
    """A small 784-100-10 MLP (the NCA talk's scale)."""
    return mlp([784, 100, 10])


def fnn_small() -> nn.Sequential:
    """PatchPro's MNIST FNN_small (paper 002, research B.3): 784-50-50-50-50-50-32-10 ReLU MLP."""
    return mlp([784, 50, 50, 50, 50, 50, 32, 10])


def fnn_big() -> nn.Sequential:
    """PatchPro's MNIST FNN_big (paper 002, research B.3): 784-200-200-200-200-200-32-10 ReLU MLP."""
    return mlp([784, 200, 200, 200, 200, 200, 32, 10])


def cnn_small() -> nn.Sequential:
    """PatchPro's MNIST CNN_small (paper 002, research B.3): Conv(1,16,k4,s2,p1)-ReLU-Flatten-100-10."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 4, stride=2, padding=1)), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(16 * 14 * 14, 100)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(100, 10))]))


ZOO: dict[str, Callable[[], nn.Module]] = {"shnn_mlp": shnn_mlp, "small_mlp": small_mlp, "fnn_small": fnn_small,
                                           "fnn_big": fnn_big, "cnn_small": cnn_small}


def register_architecture(name: str, builder: Callable[[], nn.Module]) -> None:
    """Make ``builder`` available to :func:`build` and checkpoints under ``name``."""
    ZOO[name] = builder


def build(name: str) -> nn.Module:
    if name not in ZOO:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(ZOO))}")
    return ZOO[name]()


def _is_graph(m: nn.Module) -> bool:
    from .graph import GraphNetwork

    return isinstance(m, GraphNetwork)


def module_paths(model: nn.Module) -> "OrderedDict[str, str]":
    """Every computing leaf module in execution order: ``{name: qualified path}``.

    Names are those of :func:`named_layers` (a graph's node names, prefixed by the path of a graph nested
    in another module; module paths elsewhere). Sub-modules that ``forward()`` never calls are listed after
    the called ones, in registration order.
    """
    out: "OrderedDict[str, str]" = OrderedDict()
    _walk(model, "", "", out)
    return out


def _walk(m: nn.Module, path: str, name: str, out: "OrderedDict[str, str]") -> None:
    join = (lambda a, b: f"{a}.{b}" if a else b)
    if _is_graph(m):
        for node in m.nodes:
            _walk(m.ops[node.name], join(path, f"ops.{node.name}"), join(name, node.name), out)
        return
    children = list(m.named_children())
    if not children:
        if path:
            out.setdefault(name, path)
        return
    for child, sub in _call_order(m, children):
        # a graph inside a chain (e.g. a normalisation layer in front of an ONNX network) names its nodes
        # as they are, as the graph that inlines it does (:func:`_inline`), unless a name is taken
        if isinstance(m, nn.Sequential) and _is_graph(sub):
            _walk_inner(sub, join(path, child), name, child, out)
        else:
            _walk(sub, join(path, child), join(name, child), out)


def _walk_inner(g: nn.Module, path: str, name: str, child: str, out: "OrderedDict[str, str]") -> None:
    for node in g.nodes:
        key = node.name if node.name not in out else f"{child}_{node.name}"
        _walk(g.ops[node.name], f"{path}.ops.{node.name}", f"{name}.{key}" if name else key, out)


def _call_order(m: nn.Module, children: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """``children`` as ``m.forward`` first calls them (``torch.fx``, one level deep), else as registered."""
    if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) or len(children) < 2:
        return children
    import torch.fx as fx

    class _Shallow(fx.Tracer):
        def is_leaf_module(self, sub: nn.Module, qualname: str) -> bool:
            return "." not in qualname

    try:
        graph = _Shallow().trace(m)
    except Exception:  # noqa: BLE001 - untraceable forward(): registration order is the best we know
        return children
    called = [n.target for n in graph.nodes if n.op == "call_module"]
    order = list(OrderedDict.fromkeys(t.split(".")[0] for t in called))
    rank = {c: i for i, c in enumerate(order)}
    return sorted(children, key=lambda kv: rank.get(kv[0], len(rank)))


def linear_from(w: torch.Tensor, b: torch.Tensor | None = None) -> nn.Linear:
    """An ``nn.Linear`` holding the weight ``w`` (out × in) and the bias ``b`` (zeros when None)."""
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(torch.zeros(w.shape[0]) if b is None else b)
    return lin


def named_layers(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    """Weight layers (Linear, Conv1d, Conv2d) in execution order, keyed by name (see the module docstring)."""
    return OrderedDict((n, model.get_submodule(p)) for n, p in module_paths(model).items()
                       if isinstance(model.get_submodule(p), WEIGHT_LAYERS))


def layer_path(model: nn.Module, name: str) -> str:
    """The qualified module path of the layer or node ``name`` (``"ops.conv1"`` in a graph)."""
    paths = module_paths(model)
    if name in paths:
        return paths[name]
    if name in dict(model.named_modules()) and name:
        return name
    layers = [n for n, p in paths.items() if isinstance(model.get_submodule(p), WEIGHT_LAYERS)]
    raise ModelError(f"layer {name!r} not found; the network's layers are: {', '.join(layers) or '(none)'}")


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The weight layer (Linear / Conv1d / Conv2d) ``name``; a ModelError naming it and the valid names
    otherwise (also when ``name`` is a node of another kind, such as a ReLU or a residual add)."""
    paths = module_paths(model)
    layers = [n for n, p in paths.items() if isinstance(model.get_submodule(p), WEIGHT_LAYERS)]
    if name not in layers:
        kind = f"is a {type(model.get_submodule(paths[name])).__name__}, not a Linear or Conv layer" \
            if name in paths else "not found"
        raise ModelError(f"layer {name!r} {kind}; the network's layers are: {', '.join(layers) or '(none)'}")
    return model.get_submodule(paths[name])


def sequential_view(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> nn.Sequential:
    """``model`` as an ``nn.Sequential`` cut at every node that all paths pass through, sharing its modules.

    Methods that split a network at a layer (NNrepair, PatchPro's feature space, ProRepair) work on this
    view of any network the graph representation accepts. A node every path from the input to the output
    passes through becomes a top-level child named by the node; the parts between two such nodes (a
    residual block, parallel branches) become one :class:`nnmend.graph.GraphNetwork` child named by the
    node it computes. An ``nn.Sequential`` whose children are plain layers is returned as it is.
    ``input_shape``: one sample's shape, for a module that does not record it (see :func:`nnmend.graph.from_module`).

    Example::

        seq = sequential_view(from_module(MyResNet()))
        list(dict(seq.named_children()))     # ['stem', 'relu', 'add_1', 'pool', 'flatten', 'head']: add_1 a block
    """
    from .graph import GraphNetwork, from_module

    if isinstance(model, nn.Sequential) and not any(_has_graph(m) or list(m.children()) for m in model):
        return model
    try:
        g = _inline(model) if isinstance(model, nn.Sequential) and _has_graph(model) else from_module(model, input_shape)
    except (RuntimeError, TypeError) as exc:   # a probe of the guessed input shape that the network cannot take
        raise ModelError(f"cannot trace {type(model).__name__} into a graph ({str(exc).splitlines()[0][:160]}); "
                         "pass input_shape=(…) or set net.nnmend_input_shape") from None
    keep = _ancestors_of(g, g.output)
    nodes = [n for n in g.nodes if n.name in keep]
    pos = {g.INPUT: -1, **{n.name: i for i, n in enumerate(nodes)}}
    first_read = [min(pos[i] for i in n.inputs) if n.inputs else len(nodes) for n in nodes]
    children: "OrderedDict[str, nn.Module]" = OrderedDict()
    start, reads_after = 0, len(nodes)
    cuts = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):   # node i is a cut when nothing after it reads from before it
        cuts[i] = reads_after >= i
        reads_after = min(reads_after, first_read[i])
    for i, n in enumerate(nodes):
        if not cuts[i]:
            continue
        seg = nodes[start:i + 1]
        src = g.INPUT if start == 0 else nodes[start - 1].name
        if len(seg) == 1:
            children[n.name] = g.ops[n.name]
        else:
            children[n.name] = GraphNetwork([(m.name, g.ops[m.name], [("input" if j == src else j) for j in m.inputs])
                                             for m in seg], n.name)
        start = i + 1
    view = nn.Sequential(children)
    shape = getattr(g, "nnmend_input_shape", None)
    if shape:
        view.nnmend_input_shape = tuple(shape)
    return view.train(model.training)


def splittable(model: nn.Module, *names: str | None, input_shape: tuple[int, ...] | None = None) -> nn.Sequential:
    """``model`` itself when it is an ``nn.Sequential`` holding each of ``names`` (a string) at its top level,
    else :func:`sequential_view` of it: the form the methods that cut a network at a named layer work on."""
    if isinstance(model, nn.Sequential):
        top = dict(model.named_children())
        if all(not isinstance(n, str) or n in top for n in names) and not _has_graph(model):
            return model
    return sequential_view(model, input_shape if getattr(model, "nnmend_input_shape", None) is None else None)


def _inline(seq: nn.Sequential):
    """A chain of layers and graphs as one graph (node names as :func:`module_paths` gives them)."""
    from .graph import GraphNetwork

    nodes: list[tuple[str, nn.Module, list[str]]] = []
    used: set[str] = set()
    prev = GraphNetwork.INPUT
    for child, sub in seq.named_children():
        if isinstance(sub, nn.Sequential) and _has_graph(sub):
            sub = _inline(sub)
        if not _is_graph(sub):
            key = child if child not in used else f"{child}_{len(used)}"
            nodes.append((key, sub, [prev]))
            used.add(key)
            prev = key
            continue
        rename = {GraphNetwork.INPUT: prev}
        for node in sub.nodes:
            key = node.name if node.name not in used else f"{child}_{node.name}"
            nodes.append((key, sub.ops[node.name], [rename[i] for i in node.inputs]))
            used.add(key)
            rename[node.name] = key
        prev = rename[sub.output]
    return GraphNetwork(nodes, prev, getattr(seq, "nnmend_input_shape", None) or _leading_shape(seq))


def _leading_shape(seq: nn.Sequential) -> tuple[int, ...] | None:
    """The input shape a graph in ``seq`` records, when only shape-keeping affine layers come before it."""
    from .layers import ElementwiseAffine

    for sub in seq.children():
        if _is_graph(sub):
            return getattr(sub, "nnmend_input_shape", None)
        if not isinstance(sub, ElementwiseAffine):
            return None
    return None


def _has_graph(m: nn.Module) -> bool:
    return any(_is_graph(x) for x in m.modules())


def _ancestors_of(g, node: str) -> set[str]:
    inputs = {n.name: n.inputs for n in g.nodes}
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n not in seen and n != g.INPUT:
            seen.add(n)
            todo += list(inputs[n])
    return seen


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """A weight layer's weight as an ``(out, fan-in)`` matrix (a view; conv kernels flattened per output
    channel, ``(out, in · k_h · k_w)``)."""
    if not isinstance(layer, WEIGHT_LAYERS):
        raise ModelError(f"{type(layer).__name__} is not a Linear or Conv layer")
    return layer.weight.reshape(layer.weight.shape[0], -1)


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module (layer, graph node or dotted path) ``name`` (on ``model`` itself; callers copy
    first)."""
    parent_name, _, leaf = layer_path(model, name).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def trace_points(model: nn.Module) -> "OrderedDict[str, str]":
    """For each weight layer, the module path whose output is that layer's activation.

    That is the element-wise activation that alone consumes the layer's output (the next module of a
    chain, or a graph node reading only that layer, as a Keras ``Dense(..., activation=...)`` would
    report), or the layer itself when none follows.
    """
    paths = module_paths(model)
    items = list(paths.items())
    consumers = _graph_consumers(model, paths)
    points: "OrderedDict[str, str]" = OrderedDict()
    for i, (n, p) in enumerate(items):
        if not isinstance(model.get_submodule(p), WEIGHT_LAYERS):
            continue
        nxt = consumers.get(n) if n in consumers else (items[i + 1] if i + 1 < len(items) else None)
        points[n] = nxt[1] if nxt and isinstance(model.get_submodule(nxt[1]), ACTIVATIONS) else p
    return points


def _graph_consumers(model: nn.Module, paths: "OrderedDict[str, str]") -> dict[str, tuple[str, str] | None]:
    """For each graph node (nested graphs included), by name: its only consumer ``(name, path)``, else None."""
    name_of = {p: n for n, p in paths.items()}
    out: dict[str, tuple[str, str] | None] = {}
    for gpath, g in model.named_modules():
        if not _is_graph(g):
            continue
        at = (lambda node: f"{gpath}.ops.{node}" if gpath else f"ops.{node}")
        users: dict[str, list[str]] = {}
        for node in g.nodes:
            for i in node.inputs:
                users.setdefault(i, []).append(node.name)
        for node in g.nodes:
            u = users.get(node.name, [])
            if at(node.name) in name_of:
                one = len(u) == 1 and node.name != g.output and at(u[0]) in name_of
                out[name_of[at(node.name)]] = (name_of[at(u[0])], at(u[0])) if one else None
    return out


def clone(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode; nnmend never edits the caller's network."""
    return copy.deepcopy(model).eval()


def num_classes(model: nn.Module) -> int:
    last = list(named_layers(model).values())[-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def pretrained_path(name: str) -> Path:
    return Path(str(resources.files("nnmend") / "_assets" / "models" / f"{name}.pt"))


def pretrained(name: str) -> nn.Module:
    """Load a checkpoint shipped with the package (e.g. ``"shnn_mlp_mnist"``)."""
    from .io.checkpoint import load_checkpoint

    path = pretrained_path(name)
    if not path.exists():
        avail = sorted(p.stem for p in path.parent.glob("*.pt")) if path.parent.exists() else []
        raise ModelError(f"no bundled model {name!r}; available: {', '.join(avail) or '(none)'}")
    return load_checkpoint(path).model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def input_shape(model: nn.Module, default: tuple[int, ...] = (1, 28, 28)) -> tuple[int, ...]:
    """Best-effort per-sample input shape: ``meta['input_shape']`` if recorded, else ``default``."""
    shape = getattr(model, "nnmend_input_shape", None)
    return tuple(shape) if shape else default


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
