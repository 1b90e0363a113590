"""ProRepair: proxy boxes, bounds of the edited features, region-wise and point-wise repair, bad input."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net, tiny_property  # noqa: E402

from nnmend.errors import DataError, ModelError, RepairError  # noqa: E402
from nnmend.io import load_network, save_network  # noqa: E402
from nnmend.properties import check  # noqa: E402
from nnmend.repair import run  # noqa: E402
from nnmend.repair.prorepair import (PointProblem, ProRepairConfig, RegionProblem, grown_proxy, linear_proxy,  # noqa: E402
                                     repair, split_network)
from nnmend.repair.prorepair.proxy import box_distance  # noqa: E402
from nnmend.repair.prorepair.spec import label_spec  # noqa: E402
from nnmend.repair.prorepair.split import edited_feature_bounds, prefix_relaxation  # noqa: E402

torch.set_num_threads(1)


def _sample_box(lo: torch.Tensor, hi: torch.Tensor, n: int, gen: torch.Generator, far: float = 5.0) -> torch.Tensor:
    """Uniform points in each box (B, d) → (B, n, d); infinite sides are sampled up to ``far`` beyond the finite one,
    plus the box corners nearest the boundary (the worst case for a half-space)."""
    lo_f = torch.where(torch.isinf(lo), torch.where(torch.isinf(hi), torch.full_like(lo, -far), hi - far), lo)
    hi_f = torch.where(torch.isinf(hi), lo_f + far, hi)
    u = torch.rand(lo.shape[0], n, lo.shape[1], generator=gen, dtype=lo_f.dtype)
    return lo_f.unsqueeze(1) + u * (hi_f - lo_f).unsqueeze(1)


def test_split_network_and_bad_layer_names():
    net = tiny_net()
    h, g = split_network(net, None)
    assert [type(m) for m in g] == [nn.Linear] and len(h) == 4
    h2, g2 = split_network(net, "fc2")
    assert len(h2) == 2 and len(g2) == 3
    with pytest.raises(ModelError, match="'nope'.*fc1|'nope'.*relu1"):
        split_network(net, "nope")
    with pytest.raises(ModelError, match="fc1"):
        split_network(net, "fc1")          # nothing left for h
    with pytest.raises(ModelError, match="Sequential"):
        split_network(nn.Linear(2, 2), None)
    with pytest.raises(ModelError, match="edit layer 'relu1'|'relu1' is a ReLU"):
        repair(net, RegionProblem(tiny_property()), ProRepairConfig(edit_layers=("relu1",)))


@pytest.mark.parametrize("n_items", [1, 64])
def test_linear_proxy_boxes_are_sound_and_close(n_items):
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(12, 5)
    z = torch.randn(n_items, 12, generator=gen)
    y = torch.randint(0, 5, (n_items,), generator=gen)
    spec = label_spec(y, 5)
    boxes = linear_proxy(lin, spec, z, z, margin=0.05)
    assert boxes.certified.all()
    pts = _sample_box(boxes.lo, boxes.hi, 400, gen).float()                   # (B, n, 12)
    with torch.no_grad():
        out = lin(pts)
    assert (out.argmax(-1) == y[:, None]).all(), "a point of a certified proxy box is misclassified"
    # items already classified with margin keep their feature inside the box (distance 0)
    with torch.no_grad():
        ok = spec.value(lin(z)) > 0.5 * lin.weight.norm(dim=1).max()
    d = box_distance(z.double(), z.double(), boxes)
    assert (d[ok] == 0).all()
    # the box touches the closest correct features: moving z there is no longer than a bound
    assert torch.isfinite(d).all()


def test_grown_proxy_for_a_nonlinear_head_is_sound():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    g = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    z = torch.randn(32, 6, generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    boxes = grown_proxy(g, label_spec(y, 3), z, z, margin=0.02)
    assert boxes.certified.float().mean() > 0.9
    keep = boxes.certified
    pts = _sample_box(boxes.lo[keep], boxes.hi[keep], 300, gen).float()
    with torch.no_grad():
        assert (g(pts).argmax(-1) == y[keep, None]).all()


def test_edited_feature_bounds_are_sound():
    gen = torch.Generator().manual_seed(2)
    net = tiny_net()
    lo = torch.rand(40, 2, generator=gen) * 0.5
    hi = lo + torch.rand(40, 2, generator=gen) * 0.1
    rel = prefix_relaxation(net[:2].eval(), lo, hi)
    flo, fhi = edited_feature_bounds(net.fc2, True, rel)
    x = _sample_box(lo, hi, 500, gen)
    with torch.no_grad():
        f = net[:4](x.reshape(-1, 2)).reshape(40, 500, -1)
    assert (f >= flo[:, None] - 1e-5).all() and (f <= fhi[:, None] + 1e-5).all()


def test_region_repair_is_proved_on_the_saved_network_and_sampling_agrees(tmp_path):
    net, prop = tiny_net(), tiny_property()
    assert check(net, prop, timeout=None).status == "falsified"
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = repair(net, RegionProblem(prop), ProRepairConfig(time_budget=60))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "the input network was modified"
    assert res.details["proved_by_loop_certificate"] is True and res.details["certificate"]["status"] == "verified"
    # the loop says how it ended; the certificate re-proves its leaf partition (batched BaB on the open leaves)
    proof = res.details["loop_proof"]
    assert res.details["loop_status"] == "proven" and proof in ("leaves", "leaves and branch and bound")
    assert "partition" in res.details["certificate"]["method"]
    changed = {n for n, p in res.network.named_parameters() if not torch.equal(p, dict(net.named_parameters())[n])}
    assert changed == {"fc2.weight", "fc2.bias"}, "only the localised edit layer may change"
    path = tmp_path / "fixed.pt"
    save_network(res.network, path)
    loaded = load_network(path)
    x = torch.rand(200_000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.5
    with torch.no_grad():
        y = loaded.double()(x)
    assert (y[:, 0] - y[:, 1] > 0).all(), "a sampled input of a proved region is unsafe"


def test_region_repair_already_satisfied_and_unprovable():
    net = tiny_net()
    safe = tiny_property((0.45, 0.45), (0.5, 0.5))
    assert check(net, safe, timeout=None).status == "verified", "fixture: the small region must already be safe"
    res = run("prorepair", net, RegionProblem(safe), attack=False)
    assert res.details["already_satisfied"] and res.verified is True and "nothing repaired" in res.details["message"]
    # zero rounds and no time: the loop cannot finish; nothing may be called verified
    res = run("prorepair", net, RegionProblem(tiny_property()), ProRepairConfig(max_rounds=0, time_budget=0.0))
    assert res.verified is False and res.success is False and res.details["unproven_regions"]
    assert res.verdict.startswith("FAILED")


def test_point_repair_fixes_points_and_resists_a_white_box_attack(tmp_path):
    from nnmend.attacks import pgd

    gen = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)).eval()
    clean_x = torch.rand(600, 8, generator=gen)
    with torch.no_grad():
        clean_y = net(clean_x).argmax(1)
    x = torch.rand(40, 8, generator=gen)
    with torch.no_grad():
        y = (net(x).argmax(1) + 1) % 3                      # every repair point starts wrong
    res = repair(net, PointProblem(x, y, clean_x, clean_y), ProRepairConfig(lr=1e-2, steps=60, max_rounds=15, preserve="labels"))
    path = tmp_path / "p.pt"
    save_network(res.network, path)
    loaded = load_network(path)
    with torch.no_grad():
        assert (loaded(x).argmax(1) == y).float().mean() >= 0.95
        assert res.details["certificate"]["rsr_on_saved_network"] >= 95.0
    # white-box PGD on the saved network, at the points it claims to fix: within the proxy margin
    # the decision must hold (a tiny radius; a repair that only flipped knife-edge logits fails this)
    fixed = loaded(x).argmax(1) == y
    adv = pgd(loaded, x[fixed], y[fixed], eps=1e-3, steps=20)
    with torch.no_grad():
        assert (loaded(adv).argmax(1) == y[fixed]).float().mean() >= 0.9


def test_point_repair_bad_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x, cx = torch.rand(5, 8), torch.rand(10, 8)
    with pytest.raises(DataError, match="labels"):
        repair(net, PointProblem(x, torch.tensor([0, 1, 2, 3, 0]), cx, torch.zeros(10, dtype=torch.long)))
    with pytest.raises(DataError, match="5 repair inputs but 4 labels"):
        repair(net, PointProblem(x, torch.zeros(4, dtype=torch.long), cx, torch.zeros(10, dtype=torch.long)))
    with pytest.raises(DataError, match="shape"):
        repair(net, PointProblem(torch.rand(5, 7), torch.zeros(5, dtype=torch.long), torch.rand(10, 7),
                                 torch.zeros(10, dtype=torch.long)))
    with pytest.raises(RepairError, match="RegionProblem or PointProblem"):
        repair(net, object())
    with torch.no_grad():
        y = net(x).argmax(1)
    res = repair(net, PointProblem(x, y, cx, net(cx).argmax(1).detach()))
    assert res.details["already_satisfied"]
