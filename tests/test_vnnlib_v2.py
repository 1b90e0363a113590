"""VNN-LIB 2.0 read into the same objects as 1.0; what they cannot hold is refused with one line."""
import pytest
import torch

from nnmend.errors import PropertyError
from nnmend.io.vnnlib import parse_vnnlib, read_vnnlib, vnnlib_version, write_vnnlib

pytest.importorskip("vnnlib")

HEAD = "(vnnlib-version <2.0>)\n"


def net(x: str = "[2]", y: str = "[3]", dtype: str = "float32") -> str:
    return HEAD + f"(declare-network N\n  (declare-input X {dtype} {x})\n  (declare-output Y {dtype} {y})\n)\n"


V1_TWIN = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 1.0))
(assert (>= X_1 -0.5))
(assert (<= X_1 0.25))
(assert (or (and (<= Y_0 Y_1) (>= Y_2 3.0)) (<= (+ Y_0 (* -2.5 Y_1)) 1.5)))
"""
V2_TWIN = net() + """
(assert (>= X[0] 0.0))
(assert (<= X[0] 1.0))
(assert (>= X[1] -0.5))
(assert (<= X[1] 0.25))
(assert (or (and (<= Y[0] Y[1]) (>= Y[2] 3.0)) (<= (+ Y[0] (* -2.5 Y[1])) 1.5)))
"""


def test_version_detection():
    assert vnnlib_version(V1_TWIN) == (1, 0)
    assert vnnlib_version(V2_TWIN) == (2, 0)
    assert vnnlib_version("; a comment\n  " + V2_TWIN) == (2, 0)
    assert vnnlib_version(V2_TWIN.replace(HEAD, "")) == (2, 0)      # declare-network without the header
    with pytest.raises(PropertyError, match="version 3.1 is not supported"):
        parse_vnnlib("(vnnlib-version <3.1>)\n", "p.vnnlib")


def test_v2_reads_exactly_like_its_v1_twin():
    assert parse_vnnlib(V2_TWIN, "two.vnnlib") == parse_vnnlib(V1_TWIN, "one.vnnlib")


def test_v2_tensor_indices_are_row_major_and_write_back_as_v1(tmp_path):
    text = net("[1, 2, 3]", "[2]") + "".join(
        f"(assert (>= X[0,{i},{j}] {-(3 * i + j):.1f}))\n(assert (<= X[0,{i},{j}] {3 * i + j + 0.5}))\n"
        for i in range(2) for j in range(3)) + "(assert (>= Y[1] Y[0]))\n"
    spec = parse_vnnlib(text, "t.vnnlib")
    assert (spec.n_inputs, spec.n_outputs) == (6, 2)
    r = spec.regions[0]
    assert torch.equal(r.lo, -torch.arange(6, dtype=torch.float64))
    assert torch.equal(r.hi, torch.arange(6, dtype=torch.float64) + 0.5)
    (A, b), = r.unsafe
    assert torch.equal(A, torch.tensor([[1.0, -1.0]], dtype=torch.float64)) and b.tolist() == [0.0]
    out = write_vnnlib(spec, tmp_path / "v1.vnnlib")
    assert "declare-const X_5 Real" in out.read_text() and read_vnnlib(out) == spec


def test_v2_size_must_match_the_network():
    with pytest.raises(PropertyError, match="declares 2 inputs but the network has 5"):
        parse_vnnlib(V2_TWIN, "p.vnnlib", n_inputs=5)
    assert parse_vnnlib(V2_TWIN, "p.vnnlib", n_inputs=2, n_outputs=3).n_inputs == 2


@pytest.mark.parametrize("text, words", [
    (net() + "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= X[1] 1.0))\n(assert (>= X[1] 0.0))\n"
     "(assert (<= (* Y[0] Y[1] Y[2]) 1.0))\n", "more than two variables"),
    (net() + "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= X[1] 1.0))\n(assert (>= X[1] 0.0))\n"
     "(assert (!= Y[0] 1.0))\n", "!="),
    (net(dtype="int8") + "(assert (<= Y[0] 1))\n", "type I8"),
    (net() + "(assert (<= X[7] 1.0))\n", "out of bounds"),
    (net() + "(assert (<= X[0] 1.0)\n", "never closed"),
    (net() + "(assert (<= X[0] 1.0 2.0))\n", "syntax error"),
])
def test_v2_refusals_are_one_line_naming_the_file(text, words):
    with pytest.raises(PropertyError) as err:
        parse_vnnlib(text, "q.vnnlib")
    msg = str(err.value)
    assert msg.startswith("q.vnnlib") and words in msg and "\n" not in msg


def test_v2_several_tensors_are_read_concatenated_in_declaration_order():
    text = (HEAD + "(declare-network N (declare-input X1 float32 [1]) (declare-input X2 float32 [2])"
            " (declare-output Y1 float32 [1]) (declare-output Y2 float32 [1]))\n(assert (<= X1[0] 1.0))\n"
            "(assert (>= X1[0] 0.0))\n(assert (<= X2[1] 3.0))\n(assert (>= X2[1] 2.0))\n(assert (<= X2[0] 5.0))\n"
            "(assert (>= X2[0] 4.0))\n(assert (<= Y2[0] Y1[0]))\n")
    spec = parse_vnnlib(text, "q.vnnlib", n_inputs=3, n_outputs=2)
    lo, hi = spec.boxes()
    assert lo.flatten().tolist() == [0.0, 4.0, 2.0] and hi.flatten().tolist() == [1.0, 5.0, 3.0]
    A, b = spec.regions[0].unsafe[0]
    assert A.tolist() == [[-1.0, 1.0]] and b.tolist() == [0.0]


def test_v2_refusal_names_the_line():
    text = net() + "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert (<= X[1] 1.0))\n(assert (>= X[1] 0.0))\n" \
                   "(assert (<= (* Y[0] (+ Y[1] (* Y[2] Y[0]))) 1.5))\n"
    with pytest.raises(PropertyError, match=r"^q\.vnnlib:10: a product of more than two variables"):
        parse_vnnlib(text, "q.vnnlib")


def test_v2_gzipped_file(tmp_path):
    import gzip

    path = tmp_path / "p.vnnlib.gz"
    path.write_bytes(gzip.compress(V2_TWIN.encode()))
    assert read_vnnlib(path) == parse_vnnlib(V1_TWIN)


def test_strict_inequalities_are_remembered_and_written_back(tmp_path):
    text = net("[1]", "[2]") + "(assert (>= X[0] 0.0))\n(assert (<= X[0] 1.0))\n" \
                               "(assert (or (< Y[0] 0.0) (> Y[0] 1.0) (<= Y[1] 2.0)))\n"
    spec = parse_vnnlib(text, "s.vnnlib")
    r, = spec.regions
    assert [s.tolist() for s in r.strict] == [[True], [True], [False]]
    back = read_vnnlib(write_vnnlib(spec, tmp_path / "s1.vnnlib"))
    assert back == spec and [s.tolist() for s in back.regions[0].strict] == [[True], [True], [False]]
    assert parse_vnnlib(V1_TWIN).regions[0].strict == []          # no strict row: nothing stored


def test_a_counterexample_on_a_strict_boundary_is_not_sat():
    """A float softmax reaches exactly 1.0 where a real one never does: ``Y > 1`` must not be answered sat
    by a point with Y == 1 (vnnlib-satisfactory softmax01)."""
    from torch import nn

    from nnmend.properties import SafetyProperty, check

    class Saturate(nn.Module):
        def forward(self, x):
            return torch.nn.functional.relu(x) - torch.nn.functional.relu(x - 1.0)   # in [0, 1], 1 on x >= 1

    closed = parse_vnnlib(net("[1]", "[1]") + "(assert (>= X[0] 0.0))\n(assert (<= X[0] 5.0))\n"
                          "(assert (>= Y[0] 1.0))\n")
    strict = parse_vnnlib(net("[1]", "[1]") + "(assert (>= X[0] 0.0))\n(assert (<= X[0] 5.0))\n"
                          "(assert (> Y[0] 1.0))\n")
    assert check(Saturate(), SafetyProperty(closed.regions), timeout=None).status == "falsified"
    assert check(Saturate(), SafetyProperty(strict.regions), timeout=30).status != "falsified"
