"""Certificates anyone can check: repaired networks exported to piecewise-linear ONNX and re-proved by Marabou.

On a small ACAS Xu-like network (5 inputs, 5 advisories, a φ2-like property "output 0 is never the largest"
violated on ~10 % of its box): the guard's and PatchPro's repairs are re-proved by Marabou through the harness
(``external="marabou"``); the exported files hold piecewise-linear operators only and equal the torch network
(everywhere for the guard, on the region boxes for PatchPro); constructions with no exact continuous form
say so; a certificate Marabou refutes fails the run; Marabou's own misreading of a file is caught.
"""
from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnmend import marabou
from nnmend.cli import main
from nnmend.io import save_network
from nnmend.io.onnx import save_onnx
from nnmend.io.vnnlib import Region, VnnlibSpec, write_vnnlib
from nnmend.layers import SumOfNetworks
from nnmend.nets import clone
from nnmend.properties import SafetyProperty
from nnmend.repair import RepairResult, registry, run
from nnmend.repair.external import external_proof
from nnmend.repair.export_pwl import (PWL_OPS, NotExpressible, equivalence, onnx_ops, save_pwl_onnx, to_pwl)
from nnmend.repair.guard import GuardConfig, GuardProblem
from nnmend.repair.patchpro import PatchProConfig
from nnmend.repair.patchpro.modules import PatchProNetwork, StackedPatches

pytestmark = pytest.mark.skipif(not marabou.available(), reason="maraboupy is not installed (requirements.txt installs it)")
torch.set_num_threads(1)
LO = torch.tensor([0.2, -0.5, -0.5, 0.3, 0.3])
HI = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5])
DOMAIN = (-0.5 * torch.ones(5), 0.5 * torch.ones(5))
QUICK = {"certify_timeout": 60, "fidelity_samples": 500, "external": "marabou", "external_timeout": 60}


def small_acas(share: float = 0.1) -> nn.Sequential:
    """5-12-12-5 ReLU network whose output 0 is the largest on ``share`` of the property's box."""
    torch.manual_seed(5)
    net = nn.Sequential(OrderedDict([("fc1", nn.Linear(5, 12)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(12, 12)),
                                     ("relu2", nn.ReLU()), ("fc3", nn.Linear(12, 5))])).eval()
    x = LO + torch.rand(4000, 5, generator=torch.Generator().manual_seed(0)) * (HI - LO)
    with torch.no_grad():
        y = net(x)
        net.fc3.bias[0] -= float(torch.quantile(y[:, 0] - y[:, 1:].max(1).values, 1 - share))
    return net


def phi2(lo=LO, hi=HI) -> SafetyProperty:
    """Unsafe: ``y_j - y_0 <= 0`` for every j (output 0 is the largest), as ACAS Xu φ2 over its box."""
    A = torch.zeros(4, 5, dtype=torch.float64)
    for j in range(4):
        A[j, j + 1], A[j, 0] = 1.0, -1.0
    regions = [SimpleNamespace(lo=torch.as_tensor(a).double(), hi=torch.as_tensor(b).double(),
                               unsafe=[(A, torch.zeros(4, dtype=torch.float64))])
               for a, b in zip(lo.reshape(-1, 5), hi.reshape(-1, 5))]
    return SafetyProperty(regions, "phi2-like")


@pytest.fixture(scope="module")
def guarded():
    net = small_acas()
    return net, run("guard", net, GuardProblem(phi2(), domain=DOMAIN), GuardConfig(check_first=0), **QUICK)


@pytest.fixture(scope="module")
def patched():
    net = small_acas()
    cfg = PatchProConfig.acasxu(initial_boxes=200, max_boxes=2000, refine_top_k=100, max_epochs=20, patch_hidden=())
    return net, run("patchpro", net, phi2(), cfg, max_drawdown=100.0, **QUICK)


def _check_reproved(res):
    ext = res.certificate["external"]
    assert res.verified and ext["status"] == "unsat", ext
    assert [c["result"] for c in ext["claims"]] == ["unsat"]
    assert set(ext["export"]["ops"]) <= PWL_OPS
    assert ext["export"]["equivalence"]["max_abs_diff"] <= 1e-5 * max(1.0, ext["export"]["equivalence"]["scale"])
    assert "Marabou re-proof on the piecewise-linear export: unsat" in res.verdict


def test_guard_repair_is_reproved_by_marabou(guarded):
    net, res = guarded
    assert marabou.solve(net, VnnlibSpec([Region(LO.double(), HI.double(), phi2().regions[0].unsafe)], 5, 5),
                         timeout=30, isolate=False).status == "sat"    # the original violates it
    _check_reproved(res)
    assert res.success and res.certificate["external"]["export"]["exact"] == "everywhere"


def test_patchpro_property_repair_is_reproved_by_marabou(patched):
    _, res = patched
    assert isinstance(res.network, PatchProNetwork)
    _check_reproved(res)
    assert res.certificate["external"]["export"]["exact"] == "on boxes"


def test_exported_onnx_equals_the_torch_network(guarded, patched, tmp_path):
    """onnxruntime on the file vs torch: random points and box vertices where the export claims equality."""
    for name, (_, res) in (("guard", guarded), ("patchpro", patched)):
        exp = to_pwl(res.network)
        path = save_pwl_onnx(exp, tmp_path / f"{name}.onnx", (5,))
        assert set(onnx_ops(path)) <= PWL_OPS
        eq = equivalence(res.network, exp, path, (5,), n=500, boxes=[(LO, HI)])
        assert eq["points"] >= 500 + 32 and eq["max_abs_diff"] <= 1e-5 * max(1.0, eq["scale"]), (name, eq)
    exp = to_pwl(patched[1].network)                        # PatchPro: equal on its region only, and says so
    assert exp.boxes and ("allocation" in exp.note or "outside the bands" in exp.note)
    far = torch.full((1, 5), -0.45)
    with torch.no_grad():
        assert torch.allclose(exp.network(far), patched[0](far), atol=1e-6)    # outside: the base network


def test_a_construction_that_cannot_be_expressed_says_so():
    from nnmend.repair.nnrepair.experts import ExpertEnsemble

    net = small_acas()
    trunk = nn.Sequential(net.fc1, net.relu1)
    ens = ExpertEnsemble(trunk, nn.Sequential(net.fc2, net.relu2, net.fc3), torch.tensor([0, 1]),
                         torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0.1, -0.1], [0.2, 0.3]]), strategy="confidence")
    with pytest.raises(NotExpressible, match="ExpertEnsemble.*argmax"):
        to_pwl(ens)
    rec = external_proof(ens, phi2(), timeout=10)
    assert rec["status"] == "not-expressible" and rec["claims"][0]["result"] == "not-expressible"
    merged = to_pwl(ens.with_strategy("merged"))           # the merged deltas are one plain network
    x = LO + torch.rand(64, 5) * (HI - LO)
    with torch.no_grad():
        assert merged.exact == "everywhere" and torch.allclose(merged.network(x), ens.with_strategy("merged")(x), atol=1e-6)
    # PatchPro with two overlapping regions: the shared part goes to the first region, a discontinuous choice
    lo = torch.stack([LO, LO + 0.1])
    hi = torch.stack([HI - 0.1, HI])
    pp = PatchProNetwork(nn.Identity(), net, StackedPatches(2, 5, 5, init_scale=0.1), lo, hi, torch.arange(2),
                         torch.zeros(2, 2, dtype=torch.long), "none").eval()
    rec = external_proof(pp, phi2(lo, hi), timeout=10)
    assert [c["result"] for c in rec["claims"]] == ["not-expressible"] * 2
    assert "overlaps" in rec["claims"][0]["detail"] and rec["status"] == "not-expressible"
    big = external_proof(net, phi2(), timeout=10, max_relus=10)      # too large for Marabou's budget: not tried
    assert big["status"] == "unknown" and "24 ReLU units" in big["detail"]


def test_a_certificate_marabou_refutes_is_a_loud_disagreement(monkeypatch):
    """A method whose certifier lies: Marabou finds the counterexample, the run fails and the verdict says so."""
    spec = registry.get("guard")

    def keep(network, problem, config):
        return RepairResult(clone(network), "liar", 0.0)

    liar = registry.Method("liar", spec.problem, spec.config, keep, "property",
                           certifier=lambda loaded, problem, raw, timeout: {"status": "verified", "method": "trust me"})
    monkeypatch.setitem(registry._REGISTRY, "liar", liar)
    res = run("liar", small_acas(), GuardProblem(phi2(), domain=DOMAIN), **QUICK)
    ext = res.certificate["external"]
    assert ext["status"] == "sat" and ext["claims"][0]["reproduces"] is True
    assert res.success is False and res.verdict.startswith("FAILED") and "DISAGREEMENT" in res.verdict


def test_marabou_misreading_a_file_is_caught_by_the_probe(tmp_path):
    """Marabou 2.0 misreads ``Add → Gemm → Gemm`` (measured); the probe turns that into ``unknown``, and the
    piecewise-linear export merges such chains so that Marabou reads it right."""
    torch.manual_seed(0)
    branch = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    net = nn.Sequential(SumOfNetworks(nn.Linear(2, 2), branch), nn.Linear(2, 2), nn.Linear(2, 2)).eval()
    x = [0.30, 0.31]
    with torch.no_grad():
        y = net(torch.tensor([x])).reshape(-1).tolist()
    spec = VnnlibSpec([Region(torch.tensor([0.29, 0.30], dtype=torch.float64), torch.tensor([0.31, 0.32], dtype=torch.float64),
                              [(torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.tensor([1e3], dtype=torch.float64))])], 2, 2)
    raw = save_onnx(net, tmp_path / "raw.onnx", (2,))
    got = marabou.solve(raw, spec, timeout=20, isolate=False, probe=[(x, y)])
    assert got.status == "unknown" and "differently" in got.detail
    pwl = save_pwl_onnx(to_pwl(net), tmp_path / "pwl.onnx", (2,))
    assert marabou.solve(pwl, spec, timeout=20, isolate=False, probe=[(x, y)]).status == "sat"
    # general rows (Marabou's VNN-LIB reader takes none) and disjunctions, against the outputs' true range
    lo, hi = spec.regions[0].lo, spec.regions[0].hi
    grid = torch.stack(torch.meshgrid(torch.linspace(0.29, 0.31, 41), torch.linspace(0.30, 0.32, 41), indexing="ij"), -1)
    with torch.no_grad():
        d = (net(grid.reshape(-1, 2)) @ torch.tensor([2.0, -1.0])).double()
    row = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    for b, want in ((d.min() - 0.05, "unsat"), (d.max(), "sat")):
        impossible = (torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64), torch.tensor([-1.0, -1.0], dtype=torch.float64))
        two = VnnlibSpec([Region(lo, hi, [impossible, (row, torch.tensor([float(b)], dtype=torch.float64))])], 2, 2)
        assert marabou.solve(pwl, two, timeout=20, isolate=False).status == want


def test_nnmend_verify_reads_a_repaired_patchpro_checkpoint(patched, tmp_path, capsys):
    _, res = patched
    pt = tmp_path / "repaired.pt"
    save_network(res.network, pt)
    prop = write_vnnlib(VnnlibSpec([Region(LO.double(), HI.double(), phi2().regions[0].unsafe)], 5, 5), tmp_path / "p.vnnlib")
    assert main(["verify", str(pt), str(prop), "--timeout", "60"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[0] == "unsat"
    wider = write_vnnlib(VnnlibSpec([Region(LO.double() - 0.1, HI.double(), phi2().regions[0].unsafe)], 5, 5),
                         tmp_path / "wider.vnnlib")
    assert main(["verify", str(pt), str(wider)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not inside one" in err[0]


def test_feature_space_patchpro_exports_with_its_extractor(tmp_path):
    """Patches reading a feature layer: the clamp acts on the input, the patch reads extractor(clamp(x))."""
    from nnmend.properties import check
    from nnmend.repair.export_pwl import for_verifier

    torch.manual_seed(0)
    lo, hi = torch.stack([torch.zeros(5), torch.full((5,), 0.6)]), torch.stack([torch.full((5,), 0.5), torch.ones(5)])
    net = PatchProNetwork(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 5)),
                          StackedPatches(2, 8, 5, hidden=(4,), init_scale=1.0), lo, hi, torch.arange(2),
                          torch.zeros(2, 2, dtype=torch.long), "none").eval()
    exp = to_pwl(net)
    path = save_pwl_onnx(exp, tmp_path / "f.onnx", (5,))
    assert set(onnx_ops(path)) <= PWL_OPS and len(exp.boxes) == 2
    eq = equivalence(net, exp, path, (5,), n=200)
    assert eq["max_abs_diff"] <= 1e-5 * max(1.0, eq["scale"])
    with torch.no_grad():                                   # ...and is the patched network's, not the base's
        assert not torch.allclose(net(lo[:1]), net.head(net.extractor(lo[:1])))
    A = torch.tensor([[-1.0, 1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        margin = float((net(lo[0] + torch.rand(2000, 5) * (hi[0] - lo[0])).double() @ A.T).min())
    prop = SafetyProperty([SimpleNamespace(lo=lo[0].double(), hi=hi[0].double(),
                                           unsafe=[(A, torch.tensor([margin - 1.0], dtype=torch.float64))])])
    assert check(for_verifier(net, [(lo[0], hi[0])]), prop, timeout=30).status == "verified"
