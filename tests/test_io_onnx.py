"""ONNX reader and writer: ACAS Xu against onnxruntime, operator coverage, round trips, error paths."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from nnmend.acasxu import acasxu, acasxu_path
from nnmend.errors import ModelError
from nnmend.io import load_network, save_network
from nnmend.io.onnx import load_onnx, onnx_max_abs_diff, save_onnx
from nnmend.layers import ElementwiseAffine, SumOfNetworks


def _graph_file(tmp_path, nodes, inits, in_shape, out_shape, name="g.onnx", opset=13):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64), k)
         for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_all_45_acasxu_networks_match_onnxruntime():
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for i in range(1, 6):
        for j in range(1, 10):
            net = acasxu(i, j)
            kinds = [type(m).__name__ for m in net]
            assert kinds == ["Flatten"] + ["Linear", "ReLU"] * 6 + ["Linear"], kinds  # zero Sub dropped
            x = torch.rand(20, 1, 1, 5, generator=gen) - 0.5  # the normalised input domain
            diff, _ = onnx_max_abs_diff(net, acasxu_path(i, j), (1, 1, 5), x=x)
            worst = max(worst, diff)
    assert worst <= 1e-5, worst
    assert net.nnmend_input_shape == (1, 1, 5) and net.nnmend_meta["input_shape"] == [1, 1, 5]
    assert net.nnmend_meta["opset"] == 8 and net.nnmend_meta["network"] == "5_9"
    assert net(torch.zeros(3, 5)).shape == (3, 5)  # flat (N, 5) inputs work too


def test_gemm_and_constant_arithmetic_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"mean": rng.normal(size=(1, 3, 1, 1)), "std": rng.uniform(0.5, 2, size=(1, 3, 1, 1)),
             "three": np.array([3.0]), "shape": np.array([1, -1]),
             "B": rng.normal(size=(4, 12)), "C": rng.normal(size=(4,)),
             "W2": rng.normal(size=(4, 2)), "b2": rng.normal(size=(2,))}
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"], name="norm_sub"),
        helper.make_node("Div", ["s", "std"], ["d"], name="norm_div"),
        helper.make_node("Mul", ["three", "d"], ["m"], name="times3"),
        helper.make_node("Reshape", ["m", "shape"], ["r"], name="flat"),
        helper.make_node("Gemm", ["r", "B", "C"], ["g"], name="gemm", transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g"], ["h"], name="relu"),
        helper.make_node("Constant", [], ["k"], name="const", value=numpy_helper.from_array(np.float32([1.5]))),
        helper.make_node("Sub", ["k", "h"], ["n"], name="neg"),
        helper.make_node("MatMul", ["n", "W2"], ["mm"], name="mm"),
        helper.make_node("Add", ["b2", "mm"], ["y"], name="bias"),
    ]
    path = _graph_file(tmp_path, nodes, inits, [1, 3, 2, 2], [1, 2])
    net = load_onnx(path)
    kinds = [type(m).__name__ for m in net]
    # Sub, Div, Mul compose into one affine; "1.5 - h" is a second; MatMul + Add fold into one Linear.
    assert kinds == ["ElementwiseAffine", "Flatten", "Linear", "ReLU", "ElementwiseAffine", "Linear"], kinds
    diff, scale = onnx_max_abs_diff(net, path, (3, 2, 2), n=32)
    assert diff <= 1e-5 * max(1, scale)


def test_conv_bias_add_folds_and_matches(tmp_path):
    rng = np.random.default_rng(1)
    inits = {"W": rng.normal(size=(4, 2, 3, 3)), "cb": rng.normal(size=(1, 4, 1, 1)),
             "shape": np.array([1, 4 * 3 * 3]), "F": rng.normal(size=(36, 3))}
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "cb"], ["cbias"], name="conv_bias"),
        helper.make_node("Relu", ["cbias"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "F"], ["y"], name="head"),
    ]
    path = _graph_file(tmp_path, nodes, inits, [1, 2, 5, 5], [1, 3])
    net = load_onnx(path)
    assert [type(m).__name__ for m in net] == ["Conv2d", "ReLU", "Flatten", "Linear"]
    diff, scale = onnx_max_abs_diff(net, path, (2, 5, 5), n=16)
    assert diff <= 1e-5 * max(1, scale)


@pytest.mark.parametrize("op, attrs, out_shape", [("Erf", {}, [1, 1, 4, 4]),
                                                   ("LRN", {"size": 3}, [1, 1, 4, 4])])
def test_unsupported_operator_names_op_and_node(tmp_path, op, attrs, out_shape):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first_relu"),
             helper.make_node(op, ["r"], ["y"], name="the_bad_node", **attrs)]
    path = _graph_file(tmp_path, nodes, {}, [1, 1, 4, 4], out_shape)
    with pytest.raises(ModelError) as err:
        load_onnx(path)
    msg = str(err.value)
    assert op in msg and "the_bad_node" in msg and str(path) in msg, msg


def test_skip_connection_becomes_a_graph(tmp_path):
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("Add", ["h", "a"], ["y"], name="skip_add")]  # y = h + relu(h)
    path = _graph_file(tmp_path, nodes, {"W": rng.normal(size=(4, 4))}, [1, 4], [1, 4])
    net = load_onnx(path)
    assert [(n.name, n.inputs) for n in net.nodes] == [("fc1", ("input",)), ("relu1", ("fc1",)),
                                                        ("add1", ("fc1", "relu1"))]
    assert net.nnmend_meta["onnx_names"] == {"fc1": "fc", "relu1": "act", "add1": "skip_add"}
    diff, scale = onnx_max_abs_diff(net, path, (4,), n=16)
    assert diff <= 1e-5 * max(1, scale)


def test_product_of_two_data_tensors_loads_as_a_product(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Mul", ["x", "a"], ["y"], name="gate_mul")]
    path = _graph_file(tmp_path, nodes, {}, [1, 4], [1, 4])
    net = load_onnx(path)
    assert "Product" in {type(m).__name__ for m in net.modules()}
    diff, scale = onnx_max_abs_diff(net, path, (4,), n=16)
    assert diff <= 1e-5 * max(1, scale)


def test_power_of_a_data_base_by_a_data_exponent_is_refused_with_node_name(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="left"),
             helper.make_node("Pow", ["x", "a"], ["y"], name="pw")]
    path = _graph_file(tmp_path, nodes, {}, [1, 4], [1, 4])
    with pytest.raises(ModelError, match=r"'pw' \(Pow\): a power with a data exponent"):
        load_onnx(path)


class _ViewNet(nn.Module):
    """``x.view(x.size(0), -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.view(x.size(0), -1))


def test_pytorch_view_and_batchnorm_export_loads(tmp_path):
    torch.manual_seed(0)
    net = _ViewNet().eval()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.running_var.uniform_(0.5, 2)
    path = tmp_path / "view.onnx"
    with torch.no_grad(), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 1, 6, 6),), str(path), input_names=["input"], dynamo=False,
                          dynamic_axes={"input": {0: "batch"}}, do_constant_folding=False, opset_version=17)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Shape", "Gather", "Concat", "BatchNormalization"} <= ops
    back = load_onnx(path)
    assert [type(m).__name__ for m in back] == ["Conv2d", "ElementwiseAffine", "ReLU", "Flatten", "Linear"]
    x = torch.randn(16, 1, 6, 6)
    with torch.no_grad():
        assert (back(x) - net(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("content", [b"", b"hello, I am not a network\n", "truncate"])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.onnx"
    if content == "truncate":
        content = acasxu_path(1, 1).read_bytes()[:30000]
    path.write_bytes(content)
    with pytest.raises(ModelError, match=str(path).replace(".", r"\.")):
        load_onnx(path)
    with pytest.raises(ModelError, match="file not found"):
        load_onnx(tmp_path / "missing.onnx")


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        ElementwiseAffine(torch.tensor(2.0), torch.tensor(-0.5)),
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 7 * 7, 16), nn.ReLU(), nn.Linear(16, 10),
    ).eval()


def test_torch_cnn_onnx_torch_roundtrip(tmp_path):
    net = _cnn()
    net.nnmend_meta = {"trained_on": "nothing"}
    path = save_onnx(net, tmp_path / "cnn.onnx", input_shape=(1, 14, 14))
    back = load_onnx(path)
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in net]
    x = torch.rand(32, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (back(x) - net(x)).abs().max() <= 1e-5
    diff, _ = onnx_max_abs_diff(back, path, (1, 14, 14), x=x)  # dynamic batch: one run of 32
    assert diff <= 1e-5
    assert back.nnmend_meta["trained_on"] == "nothing" and back.nnmend_input_shape == (1, 14, 14)


def test_acasxu_onnx_roundtrip_through_save_network(tmp_path):
    net = acasxu(2, 1)
    out = save_network(net, tmp_path / "a.onnx")  # input shape from nnmend_input_shape
    back = load_network(out)
    x = torch.rand(64, 5) - 0.5
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    assert back.nnmend_meta["network"] == "2_1" and back.nnmend_meta["nnet"]["ranges"][-1] == 373.94992


def test_sum_of_networks_roundtrip(tmp_path):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    patch = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    net = SumOfNetworks(base, patch, nn.Sequential(nn.Linear(6, 3))).eval()
    path = save_onnx(net, tmp_path / "sum.onnx", input_shape=(6,))
    back = load_onnx(path)
    adds = [n for n in back.nodes if n.name.startswith("add")]
    assert len(adds) == 2                        # (a + b) + c: three branches merged by two Adds
    x = torch.randn(32, 6)
    with torch.no_grad():
        assert (back(x) - net(x)).abs().max() <= 1e-5


def test_save_errors_leave_no_file(tmp_path, monkeypatch):
    net = _cnn()
    with pytest.raises(ModelError, match="input_shape"):
        save_onnx(net, tmp_path / "a.onnx")
    with pytest.raises(ModelError, match="does not accept inputs of shape"):
        save_onnx(net, tmp_path / "b.onnx", input_shape=(3, 14, 14))
    import nnmend.io.onnx as mod

    monkeypatch.setattr(mod, "onnx_max_abs_diff", lambda *a, **k: (1.0, 1.0))  # a failing equivalence check
    with pytest.raises(ModelError, match="differs from the network"):
        save_onnx(net, tmp_path / "c.onnx", input_shape=(1, 14, 14))
    assert list(tmp_path.iterdir()) == []


def test_bundled_acasxu_files_are_the_recorded_copies():
    import hashlib

    from nnmend.acasxu import acasxu_instances, acasxu_properties

    root = acasxu_path(1, 1).parent.parent
    sums = [line.split() for line in (root / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert sum(p.startswith("./onnx/") for _, p in sums) == 45 and len(acasxu_properties()) == 10
    for digest, rel in sums:
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
    rows = acasxu_instances()
    assert len(rows) == 186 and rows[0] == (1, 1, 1, 116.0)
    assert sum(1 for _, _, k, _ in rows if k <= 4) == 180


def test_symbolic_input_needs_input_shape_and_check_option(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="act")], "sym",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "F"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F"])])
    path = tmp_path / "sym.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ModelError, match="pass input_shape"):
        load_onnx(path)
    net = load_onnx(path, input_shape=(7,), check=True)  # check: onnxruntime agrees on random inputs
    assert net.nnmend_input_shape == (7,) and isinstance(net[0], nn.ReLU)
    assert load_onnx(acasxu_path(3, 4), check=True).nnmend_meta["source"] == "ACASXU_run2a_3_4_batch_2000.onnx"


@pytest.mark.parametrize("node, inits, in_shape, words", [
    (helper.make_node("Gemm", ["W", "x"], ["y"], name="g"), {"W": np.ones((2, 3))}, [3, 1], "'g' (Gemm): only Gemm(data"),
    (helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="c", pads=[0, 0, 1, 1]), {"W": np.ones((1, 1, 2, 2))},
     [1, 1, 4, 4], "'c' (ConvTranspose): asymmetric padding"),
    (helper.make_node("Div", ["x", "z"], ["y"], name="d"), {"z": np.array([1.0, 0.0])}, [1, 2], "'d' (Div): division by a constant that contains zero"),
    (helper.make_node("MatMul", ["x", "W"], ["y"], name="m"), {"W": np.ones((5, 2))}, [1, 3], "'m' (MatMul): does not fit|expects 5 input features"),
])
def test_operator_errors_name_the_node(tmp_path, node, inits, in_shape, words):
    graph = helper.make_graph(
        [node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ModelError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_onnx(path)


def test_gzipped_onnx_loads(tmp_path):
    import gzip

    gz = tmp_path / "net.onnx.gz"
    gz.write_bytes(gzip.compress(acasxu_path(4, 4).read_bytes()))
    x = torch.rand(8, 5) - 0.5
    with torch.no_grad():
        assert torch.equal(load_onnx(gz)(x), acasxu(4, 4)(x))


def test_benchmark_quick(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("io_acasxu", Path(__file__).parent.parent / "benchmarks" / "io_acasxu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "io_acasxu.json").exists() and (tmp_path / "io_acasxu.md").exists()
    assert result["summary"]["networks"] == 5 and result["summary"]["max_abs_diff_vs_onnxruntime"] <= 1e-5
    assert [p["regions"] for p in result["properties"]].count(2) == 1


def test_checkpoint_keeps_the_input_shape(tmp_path):
    from nnmend.io import load_checkpoint, save_checkpoint
    from nnmend.nets import input_shape

    back = load_checkpoint(save_checkpoint(acasxu(1, 2), tmp_path / "n.pt")).model
    assert back.nnmend_input_shape == (1, 1, 5) and input_shape(back) == (1, 1, 5)
    assert back.nnmend_meta["network"] == "1_2"
