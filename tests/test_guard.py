"""Output guard: proved on the saved network, the same network outside the box, sound inside, bad input, CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net  # noqa: E402

from nnmend import marabou  # noqa: E402
from nnmend.acasxu import ACASXU_HEADER, acasxu, acasxu_property_path  # noqa: E402
from nnmend.bounds.bab import violation  # noqa: E402
from nnmend.cli import main as cli_main  # noqa: E402
from nnmend.errors import PropertyError, RepairError  # noqa: E402
from nnmend.io import load_network, save_network  # noqa: E402
from nnmend.properties import LocalRobustness, SafetyProperty, check, nnet_domain, read_property  # noqa: E402
from nnmend.repair import run  # noqa: E402
from nnmend.repair.guard import GuardConfig, GuardProblem, repair  # noqa: E402

torch.set_num_threads(1)


def _spec(box):
    C = torch.cat([A for A, _ in box.unsafe])
    d = torch.cat([b for _, b in box.unsafe])
    groups = torch.cat([torch.full((A.shape[0],), i, dtype=torch.long) for i, (A, _) in enumerate(box.unsafe)])
    return C, d, groups, len(box.unsafe)


@pytest.fixture(scope="module")
def n29_phi8():
    net, prop = acasxu(2, 9), read_property(acasxu_property_path(8))
    return net, prop, run("guard", net, GuardProblem(prop), GuardConfig(certify_timeout=None), attack=False)


def test_guard_proves_phi8_on_n29_where_the_original_is_falsified(n29_phi8):
    net, prop, res = n29_phi8
    assert check(net, prop, timeout=None).status == "falsified"
    assert res.verified is True and res.success and res.certificate["status"] == "verified"
    assert res.certificate["checked_on"] == "saved and reloaded network"
    assert res.details["targets"][0]["output"] == 0 and res.details["targets"][0]["direction"] == "lower"


def test_guarded_network_is_exactly_the_original_outside_the_box_and_safe_inside(n29_phi8):
    net, prop, res = n29_phi8
    g = res.network
    box = prop.boxes(5)[0]
    lo, hi = nnet_domain(net)
    gen = torch.Generator().manual_seed(0)
    x = (lo + torch.rand(20000, 5, generator=gen, dtype=torch.float64) * (hi - lo)).float()
    # half of the samples inside the property's box, where the original violates the property somewhere
    xin = (box.lo + torch.rand(20000, 5, generator=gen, dtype=torch.float64) * (box.hi - box.lo)).float()
    with torch.no_grad():
        y0, y1 = net(x), g(x)
        z0, z1 = net(xin), g(xin)
    dist = ((box.lo.float() - x).clamp_min(0) + (x - box.hi.float()).clamp_min(0)).sum(1)
    far = dist > res.details["band"]
    assert far.sum() > 15000
    assert torch.equal(y0[far], y1[far])                      # bit-identical outside the box (and its band)
    spec = _spec(box)
    bad_before = violation(z0.double(), *[s.double() if s.is_floating_point() else s for s in spec[:2]], *spec[2:]) <= 0
    after = violation(z1.double(), spec[0].double(), spec[1].double(), spec[2], spec[3])
    assert bad_before.any(), "the sample should hit the original's violations"
    assert (after > 0).all()                                    # sound: no sampled output is unsafe
    changed = z0.argmin(1) != z1.argmin(1)
    # advisories change only where the original violated (or within the margin of doing so)
    margin_zone = violation(z0.double(), spec[0].double(), spec[1].double() + res.details["margin"], spec[2], spec[3]) <= 0
    assert (~changed | bad_before | margin_zone).all() and changed.any()


def test_guard_does_not_share_the_callers_network(n29_phi8):
    net, _, res = n29_phi8
    mine = {id(p) for p in net.parameters()}
    assert not mine & {id(p) for p in res.network.parameters()}


def test_guard_saves_to_onnx_and_the_export_computes_the_same(n29_phi8, tmp_path):
    _, prop, res = n29_phi8
    save_network(res.network, tmp_path / "g.onnx")
    back = load_network(tmp_path / "g.onnx")
    x = prop.boxes(5)[0].lo.float()[None] + 0.01
    with torch.no_grad():
        assert torch.allclose(back(x), res.network(x), atol=1e-5)


def test_guard_proves_phi7_over_the_whole_domain():
    res = run("guard", acasxu(1, 9), GuardProblem(read_property(acasxu_property_path(7))), GuardConfig(certify_timeout=None),
              attack=False)
    assert res.verified is True
    assert res.details["targets"][0]["partners"] == [[3], [4]]


def test_guard_bad_input_is_a_clear_error():
    net, prop = acasxu(2, 9), read_property(acasxu_property_path(8))
    with pytest.raises(RepairError, match="no output can guard it with target output 3"):
        repair(net, GuardProblem(prop, target=3))
    with pytest.raises(PropertyError, match="region properties"):
        repair(net, GuardProblem(LocalRobustness(torch.zeros(5), 0.1, 0)))
    phi1 = read_property(acasxu_property_path(1))               # "COC <= 1500": a bound on one output, no pair
    with pytest.raises(RepairError, match="no output can guard it"):
        repair(net, GuardProblem(phi1))
    tiny = tiny_net()                                           # no .nnet header: the domain must be given
    box = type("R", (), {"lo": torch.zeros(2), "hi": torch.full((2,), 0.5),
                         "unsafe": [(torch.tensor([[1.0, -1.0]]), torch.zeros(1))]})()
    with pytest.raises(RepairError, match="no input domain"):
        repair(tiny, GuardProblem(SafetyProperty([box], "tiny")))
    with pytest.raises(RepairError, match="margin"):
        repair(net, GuardProblem(prop), GuardConfig(margin=0.0))


def test_guard_with_a_given_domain_and_an_already_satisfied_property():
    tiny = tiny_net()
    box = type("R", (), {"lo": torch.zeros(2), "hi": torch.full((2,), 0.5),
                         "unsafe": [(torch.tensor([[1.0, -1.0]]), torch.zeros(1))]})()
    prop = SafetyProperty([box], "tiny: y0 <= y1 is unsafe")
    dom = (torch.full((2,), -2.0), torch.full((2,), 2.0))
    before = check(tiny, prop, timeout=None).status
    res = run("guard", tiny, GuardProblem(prop, domain=dom), GuardConfig(certify_timeout=None))
    assert res.verified is True
    if before == "verified":
        assert res.details["already_satisfied"] and res.network is not tiny
        x = torch.rand(100, 2)
        with torch.no_grad():
            assert torch.equal(tiny(x), res.network(x))
    else:
        x = dom[0] + torch.rand(5000, 2, generator=torch.Generator().manual_seed(1)) * 4
        far = ((box.lo - x).clamp_min(0) + (x - box.hi).clamp_min(0)).sum(1) > res.details["band"]
        with torch.no_grad():
            assert torch.equal(tiny(x[far]), res.network(x[far]))


def test_cli_guard_writes_a_verified_network(tmp_path, capsys):
    from nnmend.acasxu import acasxu_path

    h = ACASXU_HEADER
    lo = [(a - m) / r for a, m, r in zip(h["mins"], h["means"], h["ranges"])]
    hi = [(a - m) / r for a, m, r in zip(h["maxs"], h["means"], h["ranges"])]
    out = tmp_path / "g.pt"
    args = ["repair", str(acasxu_path(2, 9)), "--method", "guard", "--property", str(acasxu_property_path(8)),
            "--out", str(out)]
    assert cli_main(args + ["--domain-lo=" + ",".join(map(str, lo)), "--domain-hi=" + ",".join(map(str, hi))]) == 0
    printed = capsys.readouterr().out
    assert "VERIFIED" in printed
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["verified"] is True
    from nnmend.marabou import available

    if available():                                         # the CLI's default then: Marabou re-proves the saved network
        external = report["certificate"]["external"]
        assert external["solver"] == "marabou" and external["status"] == "unsat" and external["counts"] == {"unsat": 1}
    assert check(load_network(out), read_property(acasxu_property_path(8)), timeout=None).status == "verified"
    assert cli_main(args[:-2] + ["--out", str(tmp_path / "h.pt")]) != 0        # no domain for an ONNX file
    assert "no input domain" in capsys.readouterr().err and not (tmp_path / "h.pt").exists()


def test_guard_benchmark_quick(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "guard_acasxu.py"), "--quick", "--results", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = {(x["net"], x["prop"]): x for x in json.loads((tmp_path / "guard_acasxu_quick.json").read_text())["records"]}
    assert recs[("1_9", 7)]["proved"] and recs[("2_9", 8)]["proved"]
    assert recs[("2_9", 8)]["unsafe_before"] > 0 and recs[("2_9", 8)]["unsafe_after"] == 0
    assert recs[("2_9", 8)]["exact_outside"] == 1.0
    known = recs[("1_9", 7)].get("known_violations")
    assert known is None or (known["unsafe_before"] > 0 and known["unsafe_after"] == 0)
    assert "| N2_9 | φ8 | yes |" in (tmp_path / "guard_acasxu_quick.md").read_text()


def test_prorepair_falls_back_to_the_guard_when_its_repair_is_not_proved():
    from nnmend.repair.prorepair import ProRepairConfig, RegionProblem
    from nnmend.repair.prorepair import repair as prorepair

    net, prop = acasxu(2, 9), read_property(acasxu_property_path(8))
    cfg = ProRepairConfig(time_budget=4, max_rounds=1, certify_timeout=5, fallback="guard")
    res = prorepair(net, RegionProblem(prop), cfg)
    assert res.details["certificate"]["status"] != "verified"          # the training alone is not proved
    fb = res.details["fallback"]
    assert fb["method"] == "guard" and fb["verified"] and res.details["proved_by_loop_certificate"] is True
    assert check(res.network, prop, timeout=None).status == "verified"
    with pytest.raises(RepairError, match="no output can guard it"):   # refused before any training
        prorepair(net, RegionProblem(read_property(acasxu_property_path(1))), cfg)


@pytest.mark.skipif(not marabou.available(), reason="maraboupy is not installed (requirements.txt installs it)")
def test_marabou_independently_proves_the_exported_guarded_network(tmp_path):
    """Marabou (exact, SMT-based; not our bounds) on the ONNX export: the property holds on the guarded N2,1.

    φ2 on N2,1: Marabou finds the original's violation, and proves the guarded network (0.2–0.4 s measured;
    N2,9 φ8, whose big-M constant is 15× larger, took 5 s alone and timed out at 120 s once under CI load).
    Marabou gets copies in a temporary folder (:func:`nnmend.marabou.solve`), never the bundled files."""
    prop_path = acasxu_property_path(2)
    net = acasxu(2, 1)
    res = repair(net, GuardProblem(read_property(prop_path)), GuardConfig(check_first=0))
    save_network(res.network, tmp_path / "g.onnx")
    assert marabou.solve(tmp_path / "g.onnx", prop_path, timeout=None).status == "unsat"
    assert marabou.solve(net, prop_path, timeout=None).status == "sat"
