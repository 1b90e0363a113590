"""ONNX arithmetic beyond affine maps (``nnmend.io._onnx_math``): each graph loads, matches onnxruntime, and
its bounds (IBP and CROWN) contain the outputs of sampled points; several inputs and outputs concatenate."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nnmend.bounds import bound
from nnmend.errors import ModelError
from nnmend.io.onnx import load_onnx, onnx_max_abs_diff
from nnmend.layers_math import Power, Rounding, Sign, Step


def _model(tmp_path, nodes, inits, inputs, outputs, name="m.onnx"):
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, s, t in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


F = TensorProto.FLOAT
f32 = lambda v: np.asarray(v, dtype=np.float32)   # noqa: E731
i64 = lambda v: np.asarray(v, dtype=np.int64)     # noqa: E731
CASES = {
    "reduce_sum_mean": ([helper.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=0),
                         helper.make_node("ReduceMean", ["x", "ax0"], ["m"], keepdims=0),
                         helper.make_node("Concat", ["s", "m"], ["y"], axis=0)],
                        {"ax": i64([1]), "ax0": i64([0])}, [2, 3], [5]),
    "expand_mul_const": ([helper.make_node("Expand", ["x", "shape"], ["e"]),
                          helper.make_node("Mul", ["e", "c"], ["y"])],
                         {"shape": i64([2, 3]), "c": f32([[1, 2, 3]])}, [2, 1], [2, 3]),
    "concat_constant": ([helper.make_node("Concat", ["c", "x", "c"], ["y"], axis=0)], {"c": f32([5, 6])}, [3], [7]),
    "pow_square_and_base": ([helper.make_node("Pow", ["x", "two"], ["p"]), helper.make_node("Pow", ["b", "x"], ["q"]),
                             helper.make_node("Add", ["p", "q"], ["y"])], {"two": f32(2.0), "b": f32(1.5)}, [3], [3]),
    "greater_where": ([helper.make_node("Greater", ["x", "t"], ["g"]), helper.make_node("Where", ["g", "x", "z"], ["y"])],
                      {"t": f32([0.2]), "z": f32([-3.0])}, [4], [4]),
    "equal_cast": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Equal", ["r", "z"], ["e"]),
                    helper.make_node("Cast", ["e"], ["y"], to=F)], {"z": f32([0.0])}, [4], [4]),
    "cast_int_bool": ([helper.make_node("Mul", ["x", "k"], ["s"]), helper.make_node("Cast", ["s"], ["i"], to=TensorProto.INT64),
                       helper.make_node("Cast", ["i"], ["f"], to=F), helper.make_node("Cast", ["s"], ["b"], to=TensorProto.BOOL),
                       helper.make_node("Cast", ["b"], ["g"], to=F), helper.make_node("Add", ["f", "g"], ["y"])],
                      {"k": f32(3.0)}, [4], [4]),
    "mul_div_data": ([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Add", ["s", "one"], ["d"]),
                      helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Div", ["m", "d"], ["y"])],
                     {"one": f32(1.0)}, [4], [4]),
    "sign_binarised": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sign", ["r"], ["s"]),
                        helper.make_node("Sub", ["s", "h"], ["t"]), helper.make_node("Sign", ["t"], ["u"]),
                        helper.make_node("Add", ["u", "c"], ["v"]), helper.make_node("Sign", ["v"], ["y"])],
                       {"h": f32([0.0, 0.5, 1.0, 2.0]), "c": f32(0.1)}, [4], [4]),
    "transpose_batch_axis": ([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], {}, [1, 3], [3, 1]),
    "slice_negative_step": ([helper.make_node("Mul", ["x", "k"], ["s"]), helper.make_node("Slice", ["s", "st", "en", "ax", "sp"], ["y"])],
                            {"k": f32(2.0), "st": i64([4]), "en": i64([0]), "ax": i64([0]), "sp": i64([-2])}, [5], [2]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_matches_onnxruntime_and_bounds_hold(tmp_path, name):
    nodes, inits, in_shape, out_shape = CASES[name]
    path = _model(tmp_path, nodes, inits, [("x", in_shape)], [("y", out_shape, F)])
    net = load_onnx(path)
    shape = net.nnmend_input_shape
    diff, scale = onnx_max_abs_diff(net, path, shape, n=16)
    assert diff <= 1e-5 * max(1, scale)
    g = torch.Generator().manual_seed(0)
    lo = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    hi = lo + torch.rand(2, *shape, generator=g, dtype=torch.float64)
    x = lo + torch.rand(4000, 2, *shape, generator=g, dtype=torch.float64) * (hi - lo)
    with torch.no_grad():
        y = net.double()(x.reshape(-1, *shape)).reshape(4000, 2, -1)
    for method in ("ibp", "crown"):
        lb, ub = bound(net, lo, hi, method=method)
        assert (y >= lb - 1e-9).all() and (y <= ub + 1e-9).all(), method


def test_several_inputs_and_outputs_are_concatenated(tmp_path):
    nodes = [helper.make_node("Sub", ["a", "b"], ["y1"]), helper.make_node("Mul", ["a", "two"], ["y2"]),
             helper.make_node("Shape", ["b"], ["y3"])]
    path = _model(tmp_path, nodes, {"two": f32(2.0)}, [("a", [2]), ("b", [2])],
                  [("y1", [2], F), ("y2", [2], F), ("y3", [1], TensorProto.INT64)])
    net = load_onnx(path)
    assert net.nnmend_input_shape == (4,)
    out = net(torch.tensor([[1.0, 2.0, 10.0, 20.0]]))
    assert out.tolist() == [[-9.0, -18.0, 2.0, 4.0, 2.0]]


def test_a_negative_exponent_on_an_interval_holding_zero_is_refused(tmp_path):
    path = _model(tmp_path, [helper.make_node("Pow", ["x", "e"], ["y"], name="recip")], {"e": f32(-1.0)},
                  [("x", [2])], [("y", [2], F)])
    net = load_onnx(path)
    with pytest.raises(ModelError, match="negative exponent"):
        bound(net, -torch.ones(1, 2), torch.ones(1, 2), method="ibp")


def test_bounds_of_a_network_whose_only_buffer_is_integer_stay_real(tmp_path):
    """A reversed Slice alone is a Gather with integer indices: the boxes keep their dtype (they once took the
    indices' int64 and were truncated, giving bounds that missed the outputs)."""
    path = _model(tmp_path, [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
                  {"st": i64([4]), "en": i64([0]), "ax": i64([0]), "sp": i64([-2])}, [("x", [5])], [("y", [2], F)])
    net = load_onnx(path)
    lo = torch.tensor([[-1.0, -2.0, 0.3, 1.0, 2.5]], dtype=torch.float64)
    for method in ("ibp", "crown"):
        lb, ub = bound(net, lo, lo + 0.5, method=method)
        assert lb.dtype == torch.float64
        torch.testing.assert_close(lb, torch.tensor([[2.5, 0.3]], dtype=torch.float64))
        torch.testing.assert_close(ub, torch.tensor([[3.0, 0.8]], dtype=torch.float64))


@pytest.mark.parametrize("module", [
    lambda: Step("eq", torch.tensor([0.0, 1.0, 2.0])), lambda: Step("ne", torch.tensor([0.0, 1.0, 2.0])),
    lambda: Step("ge", torch.tensor(1.0)), lambda: Step("lt", torch.tensor(1.0)), lambda: Rounding("trunc"),
    lambda: Power(torch.tensor([2.0, 3.0, 0.5])), lambda: Sign(),
], ids=["eq", "ne", "ge", "lt", "trunc", "power", "sign"])
def test_point_boxes_are_bounded_exactly(module):
    """On a box of one point (a threshold itself included) every relaxation gives the value there."""
    net = torch.nn.Sequential(module()).eval().double()
    for point in ([0.0, 1.0, 2.0], [1.0, -2.5, 4.0], [-0.0, 1.0, 0.25]):
        x = torch.tensor([point], dtype=torch.float64)
        if isinstance(net[0], Power) and x.min() < 0:      # x ** 0.5 is not real there
            continue
        for method in ("ibp", "crown"):
            lb, ub = bound(net, x, x, method=method)
            torch.testing.assert_close(lb, net(x), rtol=0, atol=1e-12)
            torch.testing.assert_close(ub, net(x), rtol=0, atol=1e-12)


def test_sign_has_exact_values_and_a_straight_through_gradient():
    """Sign's values are exact (0 at 0) and its gradient is 1, so gradient attacks move on binarised networks."""
    x = torch.tensor([-2.0, -1e-30, 0.0, 1e-30, 3.0], dtype=torch.float64, requires_grad=True)
    y = Sign()(x[None])[0]
    assert y.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    g, = torch.autograd.grad(y.sum(), x)
    assert g.tolist() == [1.0] * 5
