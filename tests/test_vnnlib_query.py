"""VNN-LIB 2.0 queries beyond one input box and output constraints: hidden nodes, several networks and
non-box input constraints are read over an augmented network, and decided by the ordinary verify path."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from nnmend.cli.verify import load_instance, verify_one
from nnmend.io.vnnlib import parse_vnnlib

pytest.importorskip("vnnlib")

HEAD = "(vnnlib-version <2.0>)\n"


@pytest.fixture
def model(tmp_path):
    """y = relu(2 x - 1) with the hidden tensor "pre" = 2 x - 1, x of shape [2]."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Sub", ["m", "one"], ["pre"]),
             helper.make_node("Relu", ["pre"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.float32(2.0), "two"), numpy_helper.from_array(np.float32(1.0), "one")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    return path


def _query(tmp_path, body: str, decl: str = "(declare-network N (declare-input X float32 [2]) "
                                             "(declare-output Y float32 [2]))\n") -> str:
    path = tmp_path / "q.vnnlib"
    path.write_text(HEAD + decl + "(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n(assert (>= X[1] 0.0))\n"
                    "(assert (<= X[1] 1.0))\n" + body)
    return str(path)


HIDDEN = ("(declare-network N (declare-input X float32 [2]) (declare-hidden H float32 [2] \"pre\") "
          "(declare-output Y float32 [2]))\n")
TWO = ("(declare-network N1 (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
       "(declare-network N2 (equal-to N1) (declare-input X2 float32 [2]) (declare-output Y2 float32 [2]))\n"
       "(assert (>= X2[0] 0.5))\n(assert (<= X2[0] 1.0))\n(assert (>= X2[1] 0.5))\n(assert (<= X2[1] 1.0))\n")


@pytest.mark.parametrize("decl, body, expected", [
    (HIDDEN, "(assert (<= H[0] -1.5))\n", "unsat"),                 # pre >= -1 on the box
    (HIDDEN, "(assert (<= H[1] -0.9))\n", "sat"),
    (HIDDEN, "(assert (< Y[0] (- H[0] 0.1)))\n", "unsat"),          # relu(h) >= h
    (TWO, "(assert (> Y[0] Y2[0]))\n(assert (>= X[0] 0.75))\n", "sat"),
    (TWO, "(assert (> (- Y[0] Y2[0]) 1.5))\n", "unsat"),             # each output is in [0, 1]
    (None, "(assert (>= (+ X[0] X[1]) 1.9))\n(assert (<= Y[0] 0.75))\n", "unsat"),   # x0 >= 0.9: y0 >= 0.8
    (None, "(assert (>= (+ X[0] X[1]) 1.9))\n(assert (<= Y[0] 0.95))\n", "sat"),
    (None, "(assert (>= Y[1] (+ X[1] 0.1)))\n", "unsat"),           # 2x - 1 <= x + 0.1 for x <= 1
])
def test_augmented_queries_are_decided(tmp_path, model, decl, body, expected):
    q = _query(tmp_path, body, decl) if decl else _query(tmp_path, body)
    word, _, _ = verify_one(model, q, None)     # no time limit: waits on the answer
    assert word == expected


def test_the_augmented_network_and_spec_agree(tmp_path, model):
    q = _query(tmp_path, "(assert (<= H[1] -0.9))\n(assert (>= (+ X[0] Y[1]) 0.0))\n", HIDDEN)
    net, prop = load_instance(model, q)
    x = torch.tensor([[0.25, 0.75]])
    assert net(x).tolist() == [[0.0, 0.5, -0.5, 0.5, 0.25, 0.75]]     # y, hidden "pre", then the input
    assert prop.regions[0].unsafe[0][0].shape == (2, 6)


def test_networks_of_different_sizes_are_refused():
    text = HEAD + ("(declare-network N1 (declare-input X float32 [2]) (declare-output Y float32 [1]))\n"
                   "(declare-network N2 (declare-input X2 float32 [3]) (declare-output Y2 float32 [1]))\n"
                   "(assert (<= Y[0] Y2[0]))\n")
    from nnmend.errors import PropertyError

    with pytest.raises(PropertyError, match="every network is the given model"):
        parse_vnnlib(text, "q.vnnlib")


def test_an_augmented_query_is_not_written_as_vnnlib_1(tmp_path):
    from nnmend.errors import PropertyError
    from nnmend.io.vnnlib import write_vnnlib

    text = HEAD + HIDDEN + "(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n(assert (>= X[1] 0.0))\n" \
                          "(assert (<= X[1] 1.0))\n(assert (<= H[0] 0.0))\n"
    spec = parse_vnnlib(text, "q.vnnlib", n_inputs=2, n_outputs=2)
    assert spec.query is not None and spec.n_outputs == 4
    with pytest.raises(PropertyError, match="VNN-LIB 1.0 cannot hold"):
        write_vnnlib(spec, tmp_path / "out.vnnlib")
    assert not (tmp_path / "out.vnnlib").exists()
