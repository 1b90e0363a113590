"""Random networks covering every supported layer, shared by the bounds tests."""
from __future__ import annotations

import torch
from torch import nn

from nnmend.layers import ElementwiseAffine, SumOfNetworks


def _randomize_bn(bn: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
        bn.weight.copy_(torch.randn(bn.weight.shape, generator=g))
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.3)


def mlp_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Sequential(nn.Linear(24, 24), nn.ReLU()),
                        nn.Dropout(0.3), nn.Linear(24, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Identity(), nn.Linear(16, 5))
    _randomize_bn(net[5], torch.Generator().manual_seed(seed))
    return net.eval(), (6,)


def cnn_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(
        ElementwiseAffine(torch.tensor([2.0]).reshape(1, 1, 1), torch.tensor([-0.5]).reshape(1, 1, 1)),
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=1, padding=0), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 12), nn.ReLU(), nn.Linear(12, 4))
    _randomize_bn(net[2], torch.Generator().manual_seed(seed))
    return net.eval(), (1, 9, 9)


def patched_net(seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A base network plus two patches (one nested SumOfNetworks), then more layers after the sum."""
    torch.manual_seed(seed)
    base = nn.Sequential(nn.Linear(5, 20), nn.ReLU(), nn.Linear(20, 8))
    patch1 = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 8))
    patch2 = SumOfNetworks(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 8)),
                           nn.Sequential(ElementwiseAffine(torch.randn(5), torch.randn(5)), nn.Linear(5, 8)))
    net = nn.Sequential(SumOfNetworks(base, patch1, patch2), nn.ReLU(), nn.Linear(8, 3))
    return net.eval(), (5,)


NETS = {"mlp": mlp_net, "cnn": cnn_net, "patched": patched_net}


def random_boxes(shape: tuple[int, ...], B: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    center = torch.randn((B, *shape), generator=g, dtype=dtype)
    radius = torch.rand((B, *shape), generator=g, dtype=dtype) * torch.rand((B, *[1] * len(shape)), generator=g, dtype=dtype)
    return center - radius, center + radius


def sample_box(lo: torch.Tensor, hi: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` points per box, (n, B, *shape): half uniform, half random vertices (where extremes sit)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand((n, *lo.shape), generator=g, dtype=lo.dtype)
    u[: n // 2] = u[: n // 2].round()
    return lo + u * (hi - lo)


def extreme_points(net, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor, x0: torch.Tensor, steps: int = 60) -> torch.Tensor:
    """Projected signed-gradient descent on ``C_i f(x)`` and ``-C_i f(x)`` for every box and row, started
    at the best sampled points: a much stronger attempt than sampling to step outside the bounds.

    ``x0`` (n, B, *shape) samples; returns the values reached, (2, B, m) (minima, then maxima)."""
    B, m = C.shape[:2]
    shape = lo.shape[1:]
    with torch.no_grad():
        cy = torch.einsum("bmo,nbo->nbm", C, net(x0.reshape(-1, *shape)).reshape(x0.shape[0], B, -1))
    out = []
    for sign in (1.0, -1.0):
        start = (sign * cy).argmin(0)                                       # (B, m) best sample per row
        x = x0[start, torch.arange(B)[:, None]].clone()                     # (B, m, *shape)
        l, h = lo[:, None].expand_as(x), hi[:, None].expand_as(x)
        step = (h - l) / 20
        for _ in range(steps):
            x.requires_grad_(True)
            y = net(x.reshape(B * m, *shape)).reshape(B, m, -1)
            val = sign * (C * y).sum(-1)
            (g,) = torch.autograd.grad(val.sum(), x)
            x = torch.min(torch.max(x.detach() - step * g.sign(), l), h)
            step = step * 0.93
        with torch.no_grad():
            out.append((C * net(x.reshape(B * m, *shape)).reshape(B, m, -1)).sum(-1))
    return torch.stack(out)


def split_property(seed: int):
    """A random 3-12-12-2 ReLU network and a property ``y0 - y1 >= c`` on a box around a random point, with ``c``
    just below (even seeds: holds) or just above (odd seeds: violated) the margin's minimum over a 61^3 grid, so
    the root bound does not decide and branch and bound must. Returns ``(network, property, expected status)``."""
    from nnmend.properties import Box, SafetyProperty

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2)).eval()
    x, eps = torch.rand(3), 0.3
    t = torch.linspace(0, 1, 61)
    grid = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        margin = net(x - eps + 2 * eps * grid) @ torch.tensor([1.0, -1.0])
    lo_m, span = float(margin.min()), float(margin.max() - margin.min())
    c = lo_m + (0.02 if seed % 2 else -0.05) * span
    prop = SafetyProperty([Box(x - eps, x + eps, [(torch.tensor([[1.0, -1.0]]), torch.tensor([c]))])], "random")
    return net, prop, ("falsified" if seed % 2 else "verified")
