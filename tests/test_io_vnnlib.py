"""VNN-LIB 1.0 reader and writer: the ACAS Xu properties exactly, round trips, and every error path."""
import math

import pytest
import torch

from nnmend.acasxu import acasxu_properties, acasxu_property_path
from nnmend.errors import PropertyError
from nnmend.io.vnnlib import Region, VnnlibSpec, parse_vnnlib, read_vnnlib, write_vnnlib

DECL = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(3))
BOX = "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 -1.0))\n(assert (<= X_1 1.0))\n"


def _coc_not_minimal_rows():
    """Rows of ``Y_i - Y_0 <= 0`` for i = 1..4 (Y_0 is not the minimal score)."""
    A = torch.zeros(4, 5, dtype=torch.float64)
    A[:, 0] = -1.0
    A[torch.arange(4), torch.arange(1, 5)] = 1.0
    return A


def test_all_acasxu_properties_parse():
    props = acasxu_properties()
    assert sorted(props) == list(range(1, 11))
    for k, path in props.items():
        spec = read_vnnlib(path, n_inputs=5, n_outputs=5)
        assert spec.n_inputs == 5 and spec.n_outputs == 5
        for r in spec.regions:
            assert r.lo.dtype == torch.float64 and (r.lo <= r.hi).all(), k
            assert r.unsafe and all(A.shape[1] == 5 and A.shape[0] == b.shape[0] for A, b in r.unsafe), k
    assert [len(read_vnnlib(p).regions) for p in props.values()].count(2) == 1  # only prop_6 has two boxes


def test_prop_2_exact():
    spec = read_vnnlib(acasxu_property_path(2), 5, 5)
    assert len(spec.regions) == 1
    r = spec.regions[0]
    torch.testing.assert_close(r.lo, torch.tensor([0.6, -0.5, -0.5, 0.45, -0.5], dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(r.hi, torch.tensor([0.679857769, 0.5, 0.5, 0.5, -0.45], dtype=torch.float64), rtol=0, atol=0)
    assert len(r.unsafe) == 1  # one conjunction: COC maximal
    A, b = r.unsafe[0]
    assert torch.equal(A, _coc_not_minimal_rows()) and torch.equal(b, torch.zeros(4, dtype=torch.float64))


def test_prop_6_exact_two_boxes_four_cases():
    spec = read_vnnlib(acasxu_property_path(6), 5, 5)
    lo_hi = [
        ([-0.129289109, 0.11140846, -0.499999896, -0.5, -0.5], [0.700434925, 0.499999896, -0.499204121, 0.5, 0.5]),
        ([-0.129289109, -0.499999896, -0.499999896, -0.5, -0.5], [0.700434925, -0.11140846, -0.499204121, 0.5, 0.5]),
    ]
    assert len(spec.regions) == 2
    rows = _coc_not_minimal_rows()
    for r, (lo, hi) in zip(spec.regions, lo_hi):
        assert torch.equal(r.lo, torch.tensor(lo, dtype=torch.float64))
        assert torch.equal(r.hi, torch.tensor(hi, dtype=torch.float64))
        assert len(r.unsafe) == 4  # disjunction of four single-row cases
        for case, (A, b) in enumerate(r.unsafe):
            assert torch.equal(A, rows[case:case + 1]) and torch.equal(b, torch.zeros(1, dtype=torch.float64))


def test_prop_1_output_threshold():
    (A, b), = read_vnnlib(acasxu_property_path(1)).regions[0].unsafe
    # (>= Y_0 3.991125645861615)  <=>  -Y_0 <= -3.991125645861615
    assert torch.equal(A, torch.tensor([[-1.0, 0, 0, 0, 0]], dtype=torch.float64))
    assert b.item() == -3.991125645861615


@pytest.mark.parametrize("k", range(1, 11))
def test_write_read_roundtrip_acasxu(tmp_path, k):
    spec = read_vnnlib(acasxu_property_path(k))
    out = write_vnnlib(spec, tmp_path / f"p{k}.vnnlib", comment=f"copy of prop_{k}")
    assert read_vnnlib(out) == spec


def test_roundtrip_linear_rows_and_per_region_cases(tmp_path):
    text = DECL + """
(assert (or
  (and (>= X_0 0) (<= X_0 0.5) (>= X_1 -1) (<= X_1 1) (<= (+ Y_0 (* -2.5 Y_1) (- Y_2)) 3))
  (and (>= X_0 0.5) (<= X_0 1) (>= X_1 -1) (<= X_1 1) (>= (- Y_2 Y_0) 1e-3) (< Y_1 0.25))
  (and (>= X_0 0.5) (<= X_0 1) (>= X_1 -1) (<= X_1 1) (= Y_0 0.1))
))
"""
    spec = parse_vnnlib(text)
    assert len(spec.regions) == 2
    (A0, b0), = spec.regions[0].unsafe
    assert torch.equal(A0, torch.tensor([[1.0, -2.5, -1.0]], dtype=torch.float64)) and b0.tolist() == [3.0]
    r1 = spec.regions[1]
    assert len(r1.unsafe) == 2
    A1, b1 = r1.unsafe[0]
    assert torch.equal(A1, torch.tensor([[1.0, 0, -1.0], [0, 1.0, 0]], dtype=torch.float64))
    assert b1.tolist() == [-1e-3, 0.25]
    A2, b2 = r1.unsafe[1]  # equality = two inequalities
    assert torch.equal(A2, torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]], dtype=torch.float64)) and b2.tolist() == [0.1, -0.1]
    assert read_vnnlib(write_vnnlib(spec, tmp_path / "mixed.vnnlib")) == spec


def test_roundtrip_exact_float64(tmp_path):
    lo = torch.tensor([0.1, 1 / 3], dtype=torch.float64)
    spec = VnnlibSpec([Region(lo, lo + 1e-9, [(torch.tensor([[math.pi, -math.e, 0.0]], dtype=torch.float64),
                                                torch.tensor([7e-17], dtype=torch.float64))])], 2, 3)
    assert read_vnnlib(write_vnnlib(spec, tmp_path / "f.vnnlib")) == spec


def test_semantics_of_disjunction_matches_direct_evaluation():
    """Sampled check: a point is a counterexample by the text's meaning iff the parsed spec says so."""
    text = DECL + BOX + "(assert (or (and (<= Y_0 Y_1) (<= Y_0 Y_2)) (and (>= Y_2 0.5))))"
    spec = parse_vnnlib(text)
    y = torch.randn(2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    direct = ((y[:, 0] <= y[:, 1]) & (y[:, 0] <= y[:, 2])) | (y[:, 2] >= 0.5)
    parsed = torch.zeros(2000, dtype=torch.bool)
    for A, b in spec.regions[0].unsafe:
        parsed |= (y @ A.T <= b).all(1)
    assert torch.equal(direct, parsed) and direct.any() and (~direct).any()


@pytest.mark.parametrize("body, line, words", [
    ("(assert (<= X_0 abc))", 11, "'abc'"),
    ("(assert (<= X_0 0.5)", 11, "never closed"),
    ("(assert (<= X_0 0.5)))", 11, "unmatched"),
    ("(assert (<= X_7 0.5))", 11, "not declared"),
    ("(assert (<= Z_0 0.5))", 11, "neither a number nor a variable"),
    ("(assert (<= (* Y_0 Y_1) 0.5))", 11, "not linear"),
    ("(assert (<= (+ X_0 X_1) 0.5))", 11, "one variable each"),
    ("(assert (<= X_0 Y_0))", 11, "mixing inputs and outputs"),
    ("(assert (=> Y_0 Y_1))", 11, "unsupported operator"),
    ("(check-model)", 11, "unsupported command"),
    ("(assert (<= X_0))", 11, "two operands"),
])
def test_bad_line_names_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "bad.vnnlib"
    path.write_text(DECL + BOX + "; a comment line\n" + body + "\n")
    with pytest.raises(PropertyError) as err:
        read_vnnlib(path)
    msg = str(err.value)
    assert f"{path}:{line}:" in msg and words in msg, msg


def test_unbounded_input_and_size_mismatch(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(DECL + "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= Y_0 0))\n")
    with pytest.raises(PropertyError, match=r"X_1 has no upper bound"):
        read_vnnlib(path)
    path.write_text(DECL + BOX + "(assert (<= Y_0 0))\n")
    assert read_vnnlib(path, 2, 3).n_outputs == 3
    with pytest.raises(PropertyError, match=r"declares 2 inputs but the network has 5"):
        read_vnnlib(path, n_inputs=5)
    with pytest.raises(PropertyError, match=r"declares 3 outputs but the network has 10"):
        read_vnnlib(path, n_outputs=10)
    with pytest.raises(PropertyError, match="file not found"):
        read_vnnlib(tmp_path / "missing.vnnlib")
    path.write_text(DECL + "(assert (>= X_0 2.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n")
    with pytest.raises(PropertyError, match="contradictory"):
        read_vnnlib(path)


def test_write_failure_leaves_no_file(tmp_path):
    target = tmp_path / "none.vnnlib"
    with pytest.raises(PropertyError):
        write_vnnlib(VnnlibSpec([], 2, 3), target)
    assert list(tmp_path.iterdir()) == []


def test_boxes_stack_regions():
    lo, hi = read_vnnlib(acasxu_property_path(6)).boxes()
    assert lo.shape == hi.shape == (2, 5) and (lo <= hi).all()


def _violations(net, spec, n, seed=0):
    """Counts of sampled points in the property's boxes whose outputs satisfy an unsafe case."""
    gen = torch.Generator().manual_seed(seed)
    hits, outs = 0, []
    for r in spec.regions:
        x = r.lo + (r.hi - r.lo) * torch.rand(n, r.lo.numel(), generator=gen, dtype=torch.float64)
        with torch.no_grad():
            y = net(x.float()).double()
        unsafe = torch.zeros(n, dtype=torch.bool)
        for A, b in r.unsafe:
            unsafe |= (y @ A.T <= b).all(1)
        hits += int(unsafe.sum())
        outs.append((y, unsafe))
    return hits, outs


def test_acasxu_semantics_end_to_end():
    """prop_2 on 2_1 is violated (VNN-COMP: sat) and sampling finds it; the parsed cases mean "COC is
    maximal" exactly; prop_1 on 1_1 holds (unsat), so no sample may be flagged."""
    from nnmend.acasxu import acasxu

    hits, [(y, unsafe)] = _violations(acasxu(2, 1), read_vnnlib(acasxu_property_path(2), 5, 5), 20000)
    assert hits > 0
    assert torch.equal(unsafe, y.argmax(1) == 0)
    hits, [(y, _)] = _violations(acasxu(1, 1), read_vnnlib(acasxu_property_path(1), 5, 5), 20000)
    assert hits == 0 and y[:, 0].max() < 3.991125645861615


def test_gzipped_property_reads_like_the_plain_file(tmp_path):
    import gzip

    gz = tmp_path / "prop_6.vnnlib.gz"
    gz.write_bytes(gzip.compress(acasxu_property_path(6).read_bytes()))
    assert read_vnnlib(gz) == read_vnnlib(acasxu_property_path(6))
    gz.write_bytes(gzip.compress(acasxu_property_path(6).read_bytes())[:200])
    with pytest.raises(PropertyError, match="cannot read"):
        read_vnnlib(gz)
