"""NNrepair's MNIST networks (paper 004, Sec. 5; artefact names MNIST0 / MNIST1).

* :func:`mnist_lq` — MNIST-LQ, Conv(2) → ReLU → Conv(4) → ReLU → MaxPool → Dense(128) → ReLU →
  Dense(10), 75,242 parameters; the artefact trains it on the first 10,000 training images for 8
  epochs (hence "low quality", 96.34 % test accuracy).
* :func:`mnist_hq` — MNIST-HQ, Conv(8) → ReLU → MaxPool → Conv(16) → ReLU → MaxPool → Dense(100) →
  ReLU → Dense(10), 42,358 parameters (98.89 %).

Both use valid padding; layer names follow :func:`nnmend.nets.named_layers` (``conv1``, ``conv2``,
``fc1``, ``fc2``). ``fc1`` is the intermediate layer NNrepair repairs, ``fc2`` the last.

Example::

    net = mnist_lq()
    net(torch.zeros(1, 1, 28, 28)).shape     # (1, 10)
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ...nets import register_architecture


def mnist_lq() -> nn.Sequential:
    """MNIST-LQ (75,242 parameters); see the module docstring."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 2, 3)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(2, 4, 3)), ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(576, 128)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(128, 10)),
    ]))


def mnist_hq() -> nn.Sequential:
    """MNIST-HQ (42,358 parameters); see the module docstring."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(400, 100)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(100, 10)),
    ]))


register_architecture("nnrepair_mnist_lq", mnist_lq)
register_architecture("nnrepair_mnist_hq", mnist_hq)
