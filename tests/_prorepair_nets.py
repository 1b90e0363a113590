"""Small fixtures for the ProRepair tests: a 2-input network that violates a box property on ~5 % of it."""
from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import torch
from torch import nn

from nnmend.properties import SafetyProperty


def tiny_net(seed: int = 8) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([("fc1", nn.Linear(2, 16)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(16, 16)),
                                      ("relu2", nn.ReLU()), ("fc3", nn.Linear(16, 2))])).eval()


def tiny_property(lo=(0.0, 0.0), hi=(0.5, 0.5)) -> SafetyProperty:
    """Unsafe: ``y0 - y1 <= 0`` (class 1 wins) anywhere in the box."""
    region = SimpleNamespace(lo=torch.tensor(lo, dtype=torch.float64), hi=torch.tensor(hi, dtype=torch.float64),
                             unsafe=[(torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))])
    return SafetyProperty([region], "tiny")
