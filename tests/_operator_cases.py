"""One small random network per operator of the bounds' table (and per attribute variant), shared by the
per-operator soundness test and ``benchmarks/bounds_operators.py``.

Each case puts the operator between weight layers, so its input and output bounds are neither trivial
nor exact, and returns ``(network in eval mode, one sample's input shape)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from nnmend.layers import Add, Concat, ConstMatMul, ElementwiseAffine, Gather, Pad, Reshape, Slice, Sub, Transpose
from nnmend.graph import GraphNetwork
from nnmend.layers_math import ConstantOutput, ConstConcat, Expand, Power, Product, Reduce, Rounding, Sign, Step


def _seq(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers).eval()


def _conv(mode: str, padding, dims: int = 2) -> Callable[[], tuple[nn.Module, tuple]]:
    def make():
        if dims == 2:
            c = nn.Conv2d(2, 3, 3, padding=padding, padding_mode=mode)
            return _seq(c, nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)), (2, 5, 6)
        c = nn.Conv1d(2, 3, 3, padding=padding, padding_mode=mode, stride=2)
        return _seq(c, nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)), (2, 7)
    return make


def _act(act: nn.Module) -> Callable[[], tuple[nn.Module, tuple]]:
    return lambda: (_seq(nn.Linear(4, 8), act, nn.Linear(8, 6), type(act)(*_args(act)), nn.Linear(6, 3)), (4,))


def _args(act: nn.Module) -> tuple:
    return (act.negative_slope,) if isinstance(act, nn.LeakyReLU) else ()


def _pool(pool: nn.Module, shape=(2, 7, 7), conv=None) -> Callable[[], tuple[nn.Module, tuple]]:
    def make():
        first = conv or (nn.Conv2d(shape[0], 3, 3, padding=1) if len(shape) == 3 else nn.Conv1d(shape[0], 3, 3, padding=1))
        return _seq(first, nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(4)), shape
    return make


def _graph(build: Callable[[], list], shape: tuple) -> Callable[[], tuple[nn.Module, tuple]]:
    def make():
        nodes = build()
        return GraphNetwork(nodes, nodes[-1][0]).eval(), shape
    return make


def _bn(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(-1.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return bn


class _UserResNet(nn.Module):
    """A user's own module class with a forward(): residual block, concatenation, view, functional relu."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        r = h + torch.relu(self.fc2(h))
        z = torch.cat([r, h * 0.5 - 1.0], dim=1)
        return self.fc3(z.view(z.size(0), -1))


class _UserCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        x = x.permute(0, 1, 3, 2)[:, :, :3, :3]
        return self.fc(torch.flatten(x, 1))


CASES: dict[str, Callable[[], tuple[nn.Module, tuple]]] = {
    "conv2d_zeros": _conv("zeros", 1),
    "conv2d_reflect": _conv("reflect", 1),
    "conv2d_replicate": _conv("replicate", 1),
    "conv2d_circular": _conv("circular", (1, 2)),
    "conv2d_same": _conv("zeros", "same"),
    "conv2d_same_reflect": _conv("reflect", "same"),
    "conv1d_zeros": _conv("zeros", 1, dims=1),
    "conv2d_1x1_output": lambda: (_seq(nn.Conv2d(2, 3, (5, 6)), nn.ReLU(), nn.Flatten(), nn.Linear(3, 2)), (2, 5, 6)),
    "conv1d_circular": _conv("circular", 2, dims=1),
    "conv_transpose2d": lambda: (_seq(nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1),
                                      nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)), (2, 3, 3)),
    "conv_transpose2d_groups": lambda: (_seq(nn.ConvTranspose2d(2, 4, 2, stride=2, groups=2),
                                             nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)), (2, 3, 3)),
    "leaky_relu": _act(nn.LeakyReLU(0.1)),
    "batchnorm1d_dropout_identity": lambda: (_seq(nn.Linear(4, 6), _bn(nn.BatchNorm1d(6)), nn.ReLU(), nn.Dropout(0.5),
                                                  nn.Identity(), nn.Linear(6, 3)), (4,)),
    "batchnorm2d": lambda: (_seq(nn.Conv2d(1, 3, 2), _bn(nn.BatchNorm2d(3)), nn.ReLU(), nn.Flatten(),
                                 nn.LazyLinear(3)), (1, 4, 4)),
    "sigmoid": _act(nn.Sigmoid()),
    "tanh": _act(nn.Tanh()),
    "maxpool2d": _pool(nn.MaxPool2d(2)),
    "maxpool2d_overlap_pad": _pool(nn.MaxPool2d(3, stride=2, padding=1)),
    "maxpool2d_ceil": _pool(nn.MaxPool2d(2, ceil_mode=True)),
    "maxpool2d_dilation": _pool(nn.MaxPool2d(2, stride=1, dilation=2)),
    "maxpool1d": _pool(nn.MaxPool1d(2), shape=(2, 7)),
    "avgpool2d": _pool(nn.AvgPool2d(2)),
    "avgpool2d_pad_exclude_ceil": _pool(nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    "adaptive_avgpool2d": _pool(nn.AdaptiveAvgPool2d(1)),
    "softmax": lambda: (_seq(nn.Linear(4, 5), nn.Softmax(dim=1)), (4,)),
    "pad_constant": lambda: (_seq(nn.Conv2d(1, 2, 2), Pad((1, 2, 0, 1), "constant", 0.5), nn.ReLU(), nn.Flatten(),
                                  nn.LazyLinear(3)), (1, 4, 4)),
    "pad_reflect": lambda: (_seq(nn.Conv2d(1, 2, 2), Pad((1, 1, 2, 0), "reflect"), nn.Conv2d(2, 2, 2), nn.Flatten(),
                                 nn.LazyLinear(3)), (1, 5, 5)),
    "pad_replicate": lambda: (_seq(nn.Conv2d(1, 2, 2), Pad((2, 0, 1, 1), "replicate"), nn.ReLU(), nn.Flatten(),
                                   nn.LazyLinear(3)), (1, 4, 4)),
    "pad_circular": lambda: (_seq(nn.Conv2d(1, 2, 2), Pad((1, 1, 1, 1), "circular"), nn.Conv2d(2, 2, 2), nn.Flatten(),
                                  nn.LazyLinear(3)), (1, 4, 4)),
    "slice": lambda: (_seq(nn.Linear(5, 8), nn.ReLU(), Slice(0, 1, 7, 2), nn.Linear(3, 2)), (5,)),
    "gather": lambda: (_seq(nn.Linear(5, 8), nn.ReLU(), Gather(0, torch.tensor([6, 0, 0, 3])), nn.Linear(4, 2)), (5,)),
    "transpose": lambda: (_seq(nn.Conv2d(1, 2, 2), nn.ReLU(), Transpose((2, 0, 1)), nn.Flatten(), nn.LazyLinear(3)),
                          (1, 4, 5)),
    "reshape_unflatten": lambda: (_seq(nn.Linear(6, 12), nn.ReLU(), Reshape((3, 2, 2)), nn.Conv2d(3, 2, 2),
                                       nn.Unflatten(1, (2, 1)), nn.Flatten()), (6,)),
    "const_matmul_left": lambda: (_seq(Reshape((3, 2)), ConstMatMul(torch.randn(4, 3), right=False), nn.ReLU(),
                                       nn.Flatten(), nn.Linear(8, 3)), (6,)),
    "const_matmul_right": lambda: (_seq(Reshape((2, 3)), ConstMatMul(torch.randn(3, 5)), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(10, 3)), (6,)),
    "add_residual": _graph(lambda: [("fc1", nn.Linear(5, 6), ["input"]), ("r1", nn.ReLU(), ["fc1"]),
                                    ("fc2", nn.Linear(6, 6), ["r1"]), ("r2", nn.ReLU(), ["fc2"]),
                                    ("add", Add(), ["r2", "fc1"]), ("out", nn.Linear(6, 3), ["add"])], (5,)),
    "sub_branches": _graph(lambda: [("fc1", nn.Linear(5, 6), ["input"]), ("r1", nn.ReLU(), ["fc1"]),
                                    ("fc2", nn.Linear(5, 6), ["input"]), ("r2", nn.Tanh(), ["fc2"]),
                                    ("sub", Sub(), ["r1", "r2"]), ("out", nn.Linear(6, 3), ["sub"])], (5,)),
    "concat": _graph(lambda: [("fc1", nn.Linear(5, 4), ["input"]), ("r1", nn.ReLU(), ["fc1"]),
                              ("fc2", nn.Linear(5, 3), ["input"]), ("cat", Concat(0), ["r1", "fc2", "r1"]),
                              ("r2", nn.ReLU(), ["cat"]), ("out", nn.Linear(11, 3), ["r2"])], (5,)),
    "reduce_sum_mean": _graph(lambda: [("fc1", nn.Linear(4, 6), ["input"]), ("r1", nn.ReLU(), ["fc1"]),
                                       ("re", Reshape((2, 3)), ["r1"]), ("sum", Reduce((1,), keepdims=False), ["re"]),
                                       ("mean", Reduce((0,), True, mean=True), ["re"]), ("f", nn.Flatten(), ["mean"]),
                                       ("cat", Concat(0), ["sum", "f"]), ("out", nn.Linear(5, 3), ["cat"])], (4,)),
    "expand_const_concat": lambda: (_seq(nn.Linear(4, 3), nn.ReLU(), Reshape((3, 1)), Expand((3, 4)), nn.Flatten(),
                                         ConstConcat(0, torch.randn(2), torch.randn(1)), nn.Linear(15, 2)), (4,)),
    "constant_output": _graph(lambda: [("fc1", nn.Linear(4, 3), ["input"]), ("c", ConstantOutput(torch.randn(3)), ["input"]),
                                       ("add", Add(), ["fc1", "c"]), ("out", nn.Linear(3, 2), ["add"])], (4,)),
    "power_integer_and_base": lambda: (_seq(nn.Linear(4, 5), Power(torch.tensor([2.0, 3.0, 1.0, 0.0, 4.0])), nn.Linear(5, 4),
                                            Power(torch.tensor(1.7), base=True), nn.Linear(4, 3)), (4,)),
    "power_fractional_and_negative": lambda: (_seq(nn.Linear(4, 5), nn.Sigmoid(), Power(torch.tensor([0.5, -1.0, -0.5, 1.5, -2.0])),
                                                   nn.Linear(5, 5), nn.ReLU(), ElementwiseAffine(torch.tensor(-1.0), torch.tensor(-0.5)),
                                                   Power(torch.tensor([-1.0, -2.0, -3.0, 3.0, 2.0])), nn.Linear(5, 3)), (4,)),
    "step_rounding": lambda: (_seq(nn.Linear(4, 6), Step("gt", torch.tensor(0.1)), nn.Linear(6, 5), nn.ReLU(),
                                   Step("eq", torch.tensor(0.0)), nn.Linear(5, 5), Step("ne", torch.zeros(5)),
                                   nn.Linear(5, 4), ElementwiseAffine(torch.tensor(3.0), torch.tensor(0.0)),
                                   Rounding("trunc"), Step("le", torch.zeros(4)), nn.Linear(4, 2)), (4,)),
    # a binarised network's sign(sign(x) + 0.1) and sign of a ReLU's output (exact zeros: sign(0) = 0)
    "sign_binarised": lambda: (_seq(nn.Linear(4, 6), nn.ReLU(), Sign(), nn.Linear(6, 5), Sign(),
                                    ElementwiseAffine(torch.tensor(1.0), torch.tensor(0.1)), Sign(), nn.Linear(5, 4),
                                    Sign(), nn.Linear(4, 2)), (4,)),
    "product_mccormick": _graph(lambda: [("fc1", nn.Linear(4, 3), ["input"]), ("r1", Reshape((1, 3)), ["fc1"]),
                                         ("fc2", nn.Linear(4, 3), ["input"]), ("t2", nn.Tanh(), ["fc2"]),
                                         ("r2", Reshape((1, 3)), ["t2"]), ("pair", Concat(0), ["r1", "r2"]),
                                         ("prod", Product(), ["pair"]), ("out", nn.Linear(3, 2), ["prod"])], (4,)),
    "user_resnet_traced": lambda: (_UserResNet().eval(), (6,)),
    "user_cnn_traced": lambda: (_UserCNN().eval(), (1, 6, 6)),
}


def make_case(name: str, seed: int) -> tuple[nn.Module, tuple[int, ...]]:
    """The case's network with seeded random weights (lazy layers materialised by one forward)."""
    torch.manual_seed(seed)
    net, shape = CASES[name]()
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    return net.eval(), shape
