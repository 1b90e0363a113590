"""Marabou as an independent referee: the shared helper (``nnmend.marabou``) and a random differential test.

The differential test draws small ReLU MLPs and box / linear-output properties (seeded), decides each with
``nnmend.properties.check`` and with Marabou, and fails on any sat/unsat disagreement or on a counterexample
that the float64 network does not confirm.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import nnmend
from nnmend.acasxu import acasxu_path, acasxu_property_path
from nnmend.errors import ModelError
from nnmend.io.vnnlib import Region, VnnlibSpec
from nnmend.marabou import available, solve, staged
from nnmend.properties import SafetyProperty, check

needs_marabou = pytest.mark.skipif(not available(), reason="maraboupy is not installed (requirements.txt installs it)")
PACKAGE = Path(nnmend.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]
ARCHS = ([3, 8, 8, 2], [2, 6, 6, 6, 2], [4, 10, 3])
N_CASES = 36
TOL = 1e-6


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _mlp(sizes: list[int], gen: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen) / a ** 0.5)
            lin.bias.copy_(0.3 * torch.randn(b, generator=gen))
        layers += [lin] + ([nn.ReLU()] if k < len(sizes) - 2 else [])
    return nn.Sequential(*layers).eval()


def _random_case(seed: int) -> tuple[nn.Sequential, VnnlibSpec]:
    """A random MLP and one box with a disjunction of 1–2 conjunctions of 1–2 random output rows.

    Each row's threshold sits near the smallest value 400 samples of the box reach (a little below or
    above), so some cases are falsified by sampling, some need search and some hold. Row coefficients are
    float32 numbers, so :func:`_for_marabou` folds them into the network exactly."""
    gen = torch.Generator().manual_seed(seed)
    sizes = list(ARCHS[seed % len(ARCHS)])
    net = _mlp(sizes, gen)
    n_in, n_out = sizes[0], sizes[-1]
    centre = 2 * torch.rand(n_in, generator=gen, dtype=torch.float64) - 1
    half = 0.05 + 0.45 * torch.rand(n_in, generator=gen, dtype=torch.float64)
    lo, hi = centre - half, centre + half
    with torch.no_grad():
        y = copy.deepcopy(net).double()(lo + (hi - lo) * torch.rand(400, n_in, generator=gen, dtype=torch.float64))
    unsafe = []
    for _ in range(1 + seed % 2):
        A = torch.randn(1 + (seed // 2) % 2, n_out, generator=gen).double()
        v = y @ A.T
        spread = (v.max(0).values - v.min(0).values).clamp_min(1e-3)
        shift = (0.25 * torch.rand(A.shape[0], generator=gen, dtype=torch.float64) - 0.05) * spread
        unsafe.append((A, v.min(0).values - shift))
    return net, VnnlibSpec([Region(lo, hi, unsafe)], n_in, n_out, source=f"random case {seed}")


def _for_marabou(net: nn.Sequential, spec: VnnlibSpec) -> tuple[nn.Sequential, VnnlibSpec]:
    """The same question in the shape Marabou 2.0.0 parses: its VNN-LIB reader throws on a weighted sum
    ``(+ (* a Y_0) (* b Y_1))``, so every output row becomes an output of a last bias-free linear layer and
    each conjunction bounds those outputs one by one (``Z_k <= b_k``)."""
    r = spec.regions[0]
    rows = torch.cat([A for A, _ in r.unsafe])
    head = nn.Linear(rows.shape[1], rows.shape[0], bias=False)
    with torch.no_grad():
        head.weight.copy_(rows.float())
    eye = torch.eye(rows.shape[0], dtype=torch.float64)
    unsafe, k = [], 0
    for A, b in r.unsafe:
        unsafe.append((eye[k:k + A.shape[0]], b))
        k += A.shape[0]
    return nn.Sequential(*net, head).eval(), VnnlibSpec([Region(r.lo, r.hi, unsafe)], spec.n_inputs, rows.shape[0])


def _violates(net: nn.Module, spec: VnnlibSpec, x: torch.Tensor, tol: float) -> bool:
    """``x`` lies in the box and the float64 network reaches one unsafe conjunction there (within ``tol``)."""
    r = spec.regions[0]
    x = x.reshape(-1).double()
    if not ((x >= r.lo - tol).all() and (x <= r.hi + tol).all()):
        return False
    with torch.no_grad():
        y = copy.deepcopy(net).double()(x[None])[0]
    return any(bool((A @ y <= b + tol).all()) for A, b in r.unsafe)


# -- the helper ---------------------------------------------------------------------------------------
def test_staged_copies_are_private_and_removed_with_what_is_written_beside_them():
    with staged(acasxu_path(1, 1), acasxu_property_path(1)) as (net_path, prop_path):
        folder = net_path.parent
        assert prop_path.parent == folder and PACKAGE not in folder.parents
        assert net_path.read_bytes() == acasxu_path(1, 1).read_bytes()
        assert prop_path.read_text() == acasxu_property_path(1).read_text()
        (folder / "property.vnnlib.compiled").write_text("litter")     # what Marabou may leave beside a property
    assert not folder.exists()
    tiny = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 5))   # exported with the property's input size
    with staged(tiny, acasxu_property_path(2)) as (net_path, prop_path):
        assert net_path.suffix == ".onnx" and prop_path.read_bytes() == acasxu_property_path(2).read_bytes()


def test_staged_refuses_a_network_marabou_cannot_read(tmp_path):
    (tmp_path / "net.pt").write_bytes(b"")
    with pytest.raises(ModelError, match="net.pt"):
        with staged(tmp_path / "net.pt", acasxu_property_path(1)):
            pass


@needs_marabou
def test_a_cross_check_on_bundled_assets_leaves_no_file_in_the_package():
    before = _files(PACKAGE)
    tiny = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 5))   # 5 inputs, 5 outputs: fits ACAS Xu's properties
    assert solve(tiny, acasxu_property_path(2), timeout=None).status in ("sat", "unsat")
    spent = solve(acasxu_path(1, 1), acasxu_property_path(1), timeout=1, clock="cpu")    # N1,1 φ1 needs far more
    assert spent.status == "unknown" and spent.detail == "CPU budget of 1 s spent", spent
    after = _files(PACKAGE)
    assert after == before, sorted(str(p) for p in after ^ before)
    assert not [p for p in after if p.name.endswith(".compiled")]


@needs_marabou
def test_isolated_and_in_process_runs_agree_and_report_a_counterexample():
    net, spec = _random_case(3)
    folded, question = _for_marabou(net, spec)
    a, b = solve(folded, question, timeout=None), solve(folded, question, timeout=None, isolate=False)
    assert a.status == b.status and a.status in ("sat", "unsat")
    for r in (a, b):
        assert (r.counterexample is not None) == (r.status == "sat")
        if r.status == "sat":
            assert _violates(net, spec, torch.tensor(r.counterexample), 1e-5)


# -- nnmend against Marabou on random instances ---------------------------------------------------------
@needs_marabou
def test_random_differential_nnmend_against_marabou():
    """No sat/unsat disagreement on 36 random instances; every counterexample (either tool's) is real."""
    tally = {"agree_sat": 0, "agree_unsat": 0, "undecided": 0}
    for seed in range(N_CASES):
        net, spec = _random_case(seed)
        ours = check(net, SafetyProperty(spec.regions, spec.source))
        theirs = solve(*_for_marabou(net, spec), timeout=None, isolate=False)
        word = {"verified": "unsat", "falsified": "sat"}.get(ours.status)
        assert not (word and theirs.status in ("sat", "unsat") and word != theirs.status), (
            f"seed {seed}: nnmend {ours.status}, Marabou {theirs.status}")
        if ours.status == "falsified":
            assert _violates(net, spec, ours.counterexample[0], TOL), f"seed {seed}: nnmend's counterexample is not one"
        if theirs.status == "sat":
            assert _violates(net, spec, torch.tensor(theirs.counterexample), 1e-5), f"seed {seed}: Marabou's is not one"
        if word and word == theirs.status:
            tally[f"agree_{word}"] += 1
        else:
            tally["undecided"] += 1
    # the draw must exercise both answers, or the test proves little
    assert tally["agree_sat"] >= 8 and tally["agree_unsat"] >= 8 and tally["undecided"] <= 2, tally


# -- the benchmark's quick mode -------------------------------------------------------------------------
@needs_marabou
def test_crosscheck_benchmark_quick(tmp_path):
    """Two committed claims (a guarded network, an original one) re-checked: both agree, nothing left behind."""
    before = _files(PACKAGE)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "crosscheck.py"), "--quick", "--budget", "0",
                        "--results-dir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "crosscheck_quick.json").read_text())
    assert [(x["source"], x["net"], x["prop"], x["verdict"]) for x in res["records"]] == [
        ("guard_acasxu", "2_1", 2, "agree"), ("verify_acasxu", "3_1", 4, "agree")]
    assert res["summary"]["disagree"] == 0 and res["summary"]["agree"] == 2
    assert "**Disagreements: 0** of 2" in (tmp_path / "crosscheck_quick.md").read_text()
    assert _files(PACKAGE) == before


def test_crosscheck_confirms_a_disagreement_on_the_network():
    """The benchmark's check of a Marabou counterexample: a committed one of nnmend's holds, the origin does not."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from crosscheck import confirm

    recs = json.loads((ROOT / "benchmarks" / "results" / "verify_acasxu.json").read_text())["records"]
    sat = next(r for r in recs if (r["net"], r["prop"], r["result"]) == ("2_1", 2, "sat"))
    assert confirm(acasxu_path(2, 1), 2, sat["counterexample"]) == {"float64": True, "onnxruntime": True}
    assert confirm(acasxu_path(2, 1), 2, [0.0] * 5) == {"float64": False, "onnxruntime": False}
