"""Hostile VNN-LIB files: deep nesting, huge declarations, exploding disjunctions and gzip bombs give one
clean PropertyError naming the file (exit 2 from the CLI), decided before anything large is allocated."""
import gzip
import tracemalloc

import pytest

from nnmend.cli import main
from nnmend.errors import PropertyError
from nnmend.io.vnnlib import VnnlibLimits, parse_vnnlib, read_vnnlib

DECL = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
BOX = "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    except PropertyError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


@pytest.mark.parametrize("depth", [2000, 4000])
def test_deep_nesting_parses_without_recursion(depth):
    text = DECL + BOX + "(assert " + "(and " * depth + "(>= Y_0 1.0)" + ")" * depth + ")\n"
    (A, b), = parse_vnnlib(text).regions[0].unsafe
    assert A.tolist() == [[-1.0]] and b.tolist() == [-1.0]
    linear = DECL + BOX + "(assert (>= " + "(+ " * depth + "Y_0" + ")" * depth + " 1.0))\n"
    assert parse_vnnlib(linear).regions[0].unsafe[0][0].tolist() == [[-1.0]]


@pytest.mark.parametrize("v2", [False, True])
def test_nesting_beyond_the_cap_is_one_clean_error(v2):
    pytest.importorskip("vnnlib")
    head = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
            if v2 else DECL)
    y = "Y[0]" if v2 else "Y_0"
    text = head + "(assert " + "(and " * 200_000 + f"(>= {y} 1.0)" + ")" * 200_000 + ")\n"
    with pytest.raises(PropertyError, match=r"^deep\.vnnlib:\d+: parentheses nested deeper than 5000"):
        parse_vnnlib(text, "deep.vnnlib")           # the C++ 2.0 parser would overflow its stack here


def test_a_billion_declared_inputs_is_refused_without_allocating():
    text = "(declare-const X_999999999 Real)\n(declare-const Y_0 Real)\n(assert (<= X_999999999 1.0))\n"
    assert _peak_mb(lambda: parse_vnnlib(text, "big.vnnlib")) < 50
    with pytest.raises(PropertyError, match=r"^big\.vnnlib:1: declares X_999999999: more than the limit"):
        parse_vnnlib(text, "big.vnnlib")
    small = VnnlibLimits(max_variables=10**12)       # past the cap, the gap in the declarations is reported
    with pytest.raises(PropertyError, match="X_0 is not declared"):
        parse_vnnlib(text, "big.vnnlib", limits=small)
    with pytest.raises(PropertyError, match=r"^big\.vnnlib:1: declares X_999999999 but the network has 5 inputs"):
        parse_vnnlib(text, "big.vnnlib", n_inputs=5)


def test_a_billion_element_v2_tensor_is_refused():
    pytest.importorskip("vnnlib")
    text = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1000, 1000, 1000])"
            " (declare-output Y float32 [1]))\n(assert (<= X[0,0,0] 1.0))\n")
    with pytest.raises(PropertyError, match="declares 1000000000 values, more than the limit"):
        parse_vnnlib(text, "big.vnnlib")


def test_a_million_boxes_by_products_is_refused_before_allocation():
    # 20 independent two-way choices: 2^20 ≈ 10^6 cases
    text = DECL + BOX + "".join(f"(assert (or (<= Y_0 {i}.0) (>= Y_0 {i}.5)))\n" for i in range(20))
    assert _peak_mb(lambda: parse_vnnlib(text, "many.vnnlib")) < 200
    with pytest.raises(PropertyError, match=r"^many\.vnnlib:\d+: the property expands to more than 200000 cases"):
        parse_vnnlib(text, "many.vnnlib")


def test_many_wide_boxes_are_refused_by_the_element_budget():
    n = 100
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "(declare-const Y_0 Real)\n"
    box = "".join(f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 1.0))\n" for i in range(n))
    text = decl + box + "".join(f"(assert (or (<= X_{i} 0.5) (>= X_{i} 0.5)))\n" for i in range(10)) + \
        "(assert (<= Y_0 0.0))\n"
    spec = parse_vnnlib(text)                        # 1024 boxes of 100 inputs fit the default budget
    assert len(spec.regions) == 1024
    with pytest.raises(PropertyError, match="more than the limit of 150000"):
        parse_vnnlib(text, "wide.vnnlib", limits=VnnlibLimits(max_elements=150_000))


def test_a_flat_disjunction_of_too_many_boxes_is_refused():
    text = DECL + "(assert (or " + " ".join(
        "(and (>= X_0 0.0) (<= X_0 1.0) (>= X_1 0.0) (<= X_1 1.0))" for _ in range(1001)) + "))\n(assert (<= Y_0 0.0))\n"
    with pytest.raises(PropertyError, match="more than 1000 cases"):
        parse_vnnlib(text, "or.vnnlib", limits=VnnlibLimits(max_cases=1000))


def test_gzip_bomb_is_capped_while_decompressing(tmp_path):
    bomb = tmp_path / "bomb.vnnlib.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        fh.write(DECL.encode())
        chunk = b" " * (1 << 20)
        for _ in range(100):                        # 100 MB of blanks, about 100 KB compressed
            fh.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    assert _peak_mb(lambda: read_vnnlib(bomb)) < 150
    with pytest.raises(PropertyError, match=r"bomb\.vnnlib\.gz: decompresses to more than 33554432 bytes"):
        read_vnnlib(bomb)
    with pytest.raises(PropertyError, match="more than 1000 bytes"):
        read_vnnlib(bomb, limits=VnnlibLimits(max_bytes=1000))


def test_plain_file_over_the_byte_cap(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(DECL + BOX + "(assert (<= Y_0 0.0))\n")
    assert read_vnnlib(path).n_inputs == 2
    with pytest.raises(PropertyError, match=r"p\.vnnlib: \d+ bytes, more than the limit of 10"):
        read_vnnlib(path, limits=VnnlibLimits(max_bytes=10))


def test_corrupt_gzip_and_binary_give_one_line(tmp_path):
    bad = tmp_path / "bad.vnnlib.gz"
    bad.write_bytes(gzip.compress((DECL + BOX).encode())[:30])
    with pytest.raises(PropertyError, match=r"bad\.vnnlib\.gz: cannot read as text"):
        read_vnnlib(bad)
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(b"\xff\xfe\x00" * 10)
    with pytest.raises(PropertyError, match=r"bin\.vnnlib: cannot read as text"):
        read_vnnlib(binary)


def test_cli_exits_2_with_one_line_for_a_hostile_property(tmp_path, capsys):
    from nnmend.acasxu import acasxu_path

    deep = tmp_path / "deep.vnnlib"
    deep.write_text(DECL + "(assert " + "(and " * 50_000 + "(>= Y_0 1.0)" + ")" * 50_000 + ")\n")
    assert main(["verify", str(acasxu_path(1, 1)), str(deep)]) == 2
    err = capsys.readouterr().err.strip()
    assert "deep.vnnlib" in err and "nested deeper" in err and "Traceback" not in err


def test_token_cap_and_early_disjunction_cap():
    many = DECL + BOX + "(assert (or " + "(<= Y_0 1.0) " * 3000 + "))\n"
    with pytest.raises(PropertyError, match=r"^t\.vnnlib:\d+: more than 5000 tokens, the limit"):
        parse_vnnlib(many, "t.vnnlib", limits=VnnlibLimits(max_tokens=5000))
    with pytest.raises(PropertyError, match=r"^t\.vnnlib:8: the property expands to more than 100 cases"):
        parse_vnnlib(many, "t.vnnlib", limits=VnnlibLimits(max_cases=100))   # refused before its operands are read


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("NNMEND_VNNLIB_MAX_TOKENS", "123")
    monkeypatch.setenv("NNMEND_VNNLIB_MAX_DEPTH", "many")
    with pytest.warns(UserWarning, match="NNMEND_VNNLIB_MAX_DEPTH"):
        limits = VnnlibLimits.from_env()
    assert limits.max_tokens == 123 and limits.max_depth == VnnlibLimits().max_depth
