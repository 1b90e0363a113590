"""One verification instance (a model file and a VNN-LIB query) as ``(network, property)``.

Most queries are over the model's own input and output. A VNN-LIB 2.0 query may also read hidden nodes,
declare several networks (each is the given model: ``equal-to``, ``isomorphic-to`` or unrelated), or
constrain inputs beyond a box; :func:`augment` then builds the network the property's variables are
over (:class:`nnmend.io.vnnlib.NetworkQuery`): copies of the model on consecutive blocks of one flat
input, each followed by its hidden tensors, and the input itself appended where constraints read it.
Everything is an ordinary graph of boundable operators, so the ordinary check decides the property.
"""
from __future__ import annotations

import torch
from torch import nn

from .vnnlib import NetworkQuery


def augment(net: nn.Module, query: NetworkQuery, copies: list[nn.Module] | None = None) -> nn.Module:
    """The network ``x -> z = [net_0(x_0), …, net_{k-1}(x_{k-1}), x]`` (flat; ``x`` only if
    ``inputs_as_outputs``), followed by ``z_a * z_b`` for each pair of ``query.products``.

    ``copies``: the module for each network instance (default ``net`` for all); each must map one block of
    ``query.n_in`` inputs (reshaped to ``net.nnmend_input_shape``) to ``n_out`` + hidden values.
    """
    from ..graph import GraphNetwork
    from ..layers import Concat, Reshape, Slice

    copies = copies or [net] * query.copies
    shape = tuple(getattr(net, "nnmend_input_shape", (query.n_in,)))
    nodes, outs = [], []
    for c, module in enumerate(copies):
        nodes.append((f"in{c}", Slice(0, c * query.n_in, (c + 1) * query.n_in), ["input"]))
        src = f"in{c}"
        if shape != (query.n_in,):
            nodes.append((f"shape{c}", Reshape(shape), [src]))
            src = f"shape{c}"
        nodes.append((f"net{c}", module, [src]))
        nodes.append((f"flat{c}", nn.Flatten(), [f"net{c}"]))
        outs.append(f"flat{c}")
    if query.inputs_as_outputs:
        nodes.append(("inputs", nn.Identity(), ["input"]))
        outs.append("inputs")
    nodes.append(("outputs", Concat(0), outs))
    if query.products:                         # z -> [z, z_a * z_b for each pair (a, b)]
        from ..layers import Gather
        from ..layers_math import Product

        a, b = (torch.tensor([p[i] for p in query.products]) for i in (0, 1))
        m = len(query.products)
        nodes += [("left", Gather(0, a), ["outputs"]), ("right", Gather(0, b), ["outputs"]),
                  ("left2", Reshape((1, m)), ["left"]), ("right2", Reshape((1, m)), ["right"]),
                  ("pair", Concat(0), ["left2", "right2"]), ("product", Product(), ["pair"]),
                  ("with_products", Concat(0), ["outputs", "product"])]
    out = GraphNetwork(nodes, nodes[-1][0]).eval()
    out.nnmend_input_shape = (query.copies * query.n_in,)
    out.nnmend_meta = {**getattr(net, "nnmend_meta", {}), "query": {"copies": query.copies,
                       "hidden": [list(h) for h in query.hidden], "inputs_as_outputs": query.inputs_as_outputs}}
    return out
