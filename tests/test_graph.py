"""nnmend.graph: any network as a DAG — a user's own module traced, saved, reloaded, exported, bounded and
verified; every operator case round-trips through .pt and .onnx; ONNX batch axes as the file declares."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnmend.bounds import crown_bounds, interval_bounds
from nnmend.errors import ModelError
from nnmend.graph import GraphNetwork, from_module
from nnmend.io import load_network, save_network

from _operator_cases import CASES, make_case


class ResNetMLP(nn.Module):
    """The kind of network a user brings: residual blocks written in forward()."""

    def __init__(self, width: int = 16, blocks: int = 2):
        super().__init__()
        self.inp = nn.Linear(5, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(blocks))
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for block in self.blocks:
            h = torch.relu(h + block(h))
        return self.out(h)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_every_operator_case_round_trips(tmp_path, name: str, suffix: str) -> None:
    net, shape = make_case(name, 1)
    net.nnmend_input_shape = shape
    x = torch.rand(5, *shape) * 2 - 1
    path = save_network(net, tmp_path / f"net{suffix}")
    back = load_network(path)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x), rtol=1e-5, atol=1e-5)


def test_a_users_residual_module_is_bounded_verified_saved_and_reloaded(tmp_path) -> None:
    from nnmend.properties import LocalRobustness, check

    torch.manual_seed(0)
    net = ResNetMLP().eval()
    x = torch.rand(1, 5)
    lo, hi = x - 0.01, x + 0.01
    lb, ub = crown_bounds(net, lo, hi)
    il, iu = interval_bounds(net, lo, hi)
    y = net(lo + torch.rand(2000, 5) * (hi - lo))
    assert (y >= lb - 1e-5).all() and (y <= ub + 1e-5).all()
    assert ((ub - lb) <= (iu - il) + 1e-6).all()
    label = int(net(x).argmax())
    assert check(net, LocalRobustness(x[0], 1e-3, label), timeout=None).status == "verified"

    net.nnmend_input_shape = (5,)
    for suffix in (".pt", ".onnx"):
        back = load_network(save_network(net, tmp_path / f"res{suffix}"))
        assert isinstance(back, GraphNetwork)
        torch.testing.assert_close(back(x), net(x))
        torch.testing.assert_close(crown_bounds(back, lo, hi)[0], lb, rtol=1e-5, atol=1e-5)
    meta = load_network(tmp_path / "res.pt").nnmend_meta
    assert meta["traced_from"] == "ResNetMLP" and meta["input_shape"] == [5]


def test_graph_refuses_cycles_and_unknown_inputs() -> None:
    with pytest.raises(ModelError, match="no earlier node"):
        GraphNetwork([("a", nn.ReLU(), ["b"]), ("b", nn.ReLU(), ["a"])], "b")
    with pytest.raises(ModelError, match="repeated"):
        GraphNetwork([("a", nn.ReLU(), ["input"]), ("a", nn.ReLU(), ["a"])], "a")


def test_untraceable_forward_is_one_clear_error() -> None:
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ModelError, match="cannot trace DataDependent"):
        from_module(DataDependent(), (3,))


def _onnx_file(tmp_path, nodes, inits, in_shape, out_shape, opset=13):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_onnx_input_without_batch_axis(tmp_path) -> None:
    """An input declared [3, 4] (no batch axis): one sample is the whole [3, 4] matrix."""
    from onnx import helper

    from nnmend.io.onnx import load_onnx, onnx_max_abs_diff

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["L", "r"], ["m"]), helper.make_node("Transpose", ["m"], ["t"], perm=[1, 0]),
             helper.make_node("Flatten", ["t"], ["y"], axis=0)]
    path = _onnx_file(tmp_path, nodes, {"W": rng.normal(size=(4, 2)), "L": rng.normal(size=(5, 3))}, [3, 4], [1, 10])
    net = load_onnx(path)
    assert net.nnmend_input_shape == (3, 4)
    diff, scale = onnx_max_abs_diff(net, path, (3, 4), n=8)
    assert diff <= 1e-5 * max(1.0, scale)
    lo = torch.zeros(1, 3, 4)
    lb, ub = crown_bounds(net, lo, lo + 0.1)
    assert lb.shape == (1, 10)


def test_onnx_asymmetric_conv_padding_and_same_upper(tmp_path) -> None:
    from onnx import helper

    from nnmend.io.onnx import load_onnx, onnx_max_abs_diff

    rng = np.random.default_rng(1)
    for attrs in ({"pads": [0, 1, 1, 2]}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}):
        nodes = [helper.make_node("Conv", ["x", "W"], ["y"], **attrs)]
        path = _onnx_file(tmp_path, nodes, {"W": rng.normal(size=(2, 1, 3, 2))}, [1, 1, 5, 6], None)
        net = load_onnx(path)
        diff, scale = onnx_max_abs_diff(net, path, (1, 5, 6), n=4)
        assert diff <= 1e-5 * max(1.0, scale), attrs


# The operators of the VNN-COMP networks in ../shared/data/vnncomp/ (listed by scripts/vnncomp_operators.py).
VNNCOMP_OPERATORS = ["Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "ConstantOfShape", "Conv",
                     "ConvTranspose", "Div", "Dropout", "Flatten", "Gather", "Gemm", "MatMul", "MaxPool", "Mul",
                     "Pad", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Sign", "Slice", "Softmax", "Sub",
                     "Transpose", "Unsqueeze"]
# read only inside constant sub-graphs, or refused with a reason (ReduceMean: the ViT's layer norm, which
# multiplies data tensors)
NOT_ON_DATA = {"ConstantOfShape", "ReduceMean"}


def test_every_vnncomp_operator_is_read() -> None:
    from nnmend.io.onnx import SUPPORTED_OPS

    missing = [op for op in VNNCOMP_OPERATORS if op not in SUPPORTED_OPS and op not in NOT_ON_DATA]
    assert not missing, missing


_VNNCOMP = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp"


@pytest.mark.skipif(not _VNNCOMP.exists(), reason=f"the shared VNN-COMP data ({_VNNCOMP}) is not present")
def test_the_vnncomp_operator_list_is_current() -> None:
    import importlib.util
    from pathlib import Path

    root = _VNNCOMP
    spec = importlib.util.spec_from_file_location("ops", Path(__file__).parents[1] / "scripts" / "vnncomp_operators.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.operators(root) == VNNCOMP_OPERATORS


def test_input_splitting_on_a_network_whose_output_is_not_flat() -> None:
    """A convolution's (C, H, W) output: the specification rows are laid out in the output's shape."""
    from nnmend.properties import Box, SafetyProperty, check

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 2)).eval()
    net.nnmend_input_shape = (1, 3, 3)
    x = torch.rand(1, 3, 3)
    with torch.no_grad():
        y = net(x[None]).flatten()
    A = torch.zeros(1, 8)
    A[0, 0] = 1.0
    for c, expected in ((float(y[0]) - 1.0, "verified"), (float(y[0]) + 0.01, "falsified")):
        prop = SafetyProperty([Box(x - 0.01, x + 0.01, [(A, torch.tensor([c]))])], "conv")
        assert check(net, prop, timeout=None).status == expected


def test_onnx_export_needs_no_input_shape_when_the_network_fixes_it(tmp_path) -> None:
    """A dense Sequential fixes its input size; a traced user module records its shape; a bare conv asks."""
    from nnmend.errors import ModelError
    from nnmend.graph import from_module
    from nnmend.io import load_network, save_network

    dense = nn.Sequential(nn.Dropout(0.1), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    save_network(dense, tmp_path / "dense.onnx")
    x = torch.rand(4, 5)
    assert torch.allclose(load_network(tmp_path / "dense.onnx")(x), dense(x), atol=1e-5)
    graph = from_module(ResNetMLP().eval(), (5,))
    save_network(graph, tmp_path / "res.onnx")
    x = torch.rand(3, 5)
    assert torch.allclose(load_network(tmp_path / "res.onnx")(x), graph(x), atol=1e-5)
    with pytest.raises(ModelError, match="input_shape"):
        save_network(nn.Sequential(nn.Conv2d(1, 2, 3)), tmp_path / "conv.onnx")


def test_prepend_feeds_a_module_where_the_graph_read_its_input(tmp_path) -> None:
    from nnmend.layers import normalization

    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(12, 4), nn.Linear(4, 2)
    g = GraphNetwork([("flat", nn.Flatten(), ["input"]), ("fc1", fc1, ["flat"]), ("relu", nn.ReLU(), ["fc1"]),
                      ("fc2", fc2, ["relu"])], "fc2", input_shape=(3, 2, 2))
    mean, std = torch.tensor([0.5, 0.2, 0.1]), torch.tensor([2.0, 4.0, 0.5])
    net = g.prepend("normalize", normalization(mean, std)).eval()
    x = torch.rand(7, 3, 2, 2)
    want = fc2(torch.relu(fc1(((x - mean.view(3, 1, 1)) / std.view(3, 1, 1)).flatten(1))))
    assert torch.allclose(net(x), want, atol=1e-6)
    assert net.names()[0] == "normalize" and net.nnmend_input_shape == (3, 2, 2) and g.names()[0] == "flat"
    save_network(net, tmp_path / "n.pt")
    assert torch.allclose(load_network(tmp_path / "n.pt")(x), want, atol=1e-6)
