"""PatchPro (paper 002): proofs hold on the saved network, the composite behaves like any network, bad input is refused."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nnmend.acasxu import acasxu, acasxu_property_path
from nnmend.attacks import pgd
from nnmend.bounds import crown_bounds, crown_linear_form
from nnmend.bounds.backward import concretize
from nnmend.data import load_dataset
from nnmend.errors import ModelError, PropertyError
from nnmend.io import load_checkpoint, save_checkpoint, save_network
from nnmend.layers import SumOfNetworks
from nnmend.nets import pretrained
from nnmend.properties import LocalRobustness, read_property
from nnmend.repair.patchpro import PatchProConfig, PatchProNetwork, StackedPatches, repair
from nnmend.repair.patchpro.distance import patch_form
from nnmend.repair.repair_sets import build_repair_set

torch.set_num_threads(1)


def _reload(net, tmp_path, name="r.pt"):
    save_checkpoint(net, tmp_path / name)
    return load_checkpoint(tmp_path / name).model


def _phi2_holds(y):
    return y[:, 1:].max(1).values > y[:, 0]


@pytest.fixture(scope="module")
def acas_repair():
    net = acasxu(2, 1)
    prop = read_property(acasxu_property_path(2))
    return net, prop, repair(net, prop, PatchProConfig.acasxu(initial_boxes=300))


def test_acasxu_property2_is_proved_rechecked_and_holds_on_samples(acas_repair, tmp_path):
    net, prop, res = acas_repair
    lo = torch.as_tensor(prop.regions[0].lo, dtype=torch.float32)
    hi = torch.as_tensor(prop.regions[0].hi, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    x = lo + torch.rand((20000, 5), generator=gen) * (hi - lo)
    with torch.no_grad():
        assert not _phi2_holds(net(x)).all()                          # the original violates φ2
    assert res.details["proved_by_method"] and res.details["n_open"] == 0
    assert res.details["recheck"]["all_verified"]
    loaded = _reload(res.network, tmp_path)
    corners = lo + (hi - lo) * torch.tensor([[(k >> b) & 1 for b in range(5)] for k in range(32)], dtype=torch.float32)
    with torch.no_grad():
        assert _phi2_holds(loaded(torch.cat([x, corners]))).all()      # sampled soundness on the saved network
        # outside the region the network is the original, exactly
        far = torch.rand((2000, 5), generator=gen) - 0.5
        far = far[~((far >= lo) & (far <= hi)).all(1)]
        assert torch.equal(loaded(far), net(far))
    # PGD on the violation inside the box (white-box through base + patch + indicator) finds nothing
    class Violation(nn.Module):
        def forward(self, u):
            y = loaded(lo + u.clamp(0, 1) * (hi - lo))
            return torch.stack([y[:, 1:].max(1).values - y[:, 0], torch.zeros(len(y))], 1)
    u = pgd(Violation(), torch.full((256, 5), 0.5), torch.zeros(256, dtype=torch.long), 0.5, steps=20, seed=3)
    with torch.no_grad():
        assert _phi2_holds(loaded(lo + u * (hi - lo))).all()


def test_acasxu_composite_exports_to_onnx(acas_repair, tmp_path):
    import numpy as np
    import onnxruntime as ort

    _, _, res = acas_repair
    save_network(res.network, tmp_path / "r.onnx")                     # save_onnx checks it against onnxruntime
    sess = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    x = torch.tensor([[0.62, 0.1, -0.2, 0.47, -0.48], [0.0, 0.0, 0.0, 0.0, 0.0]])
    out = sess.run(None, {sess.get_inputs()[0].name: x.reshape(2, 1, 1, 5).numpy()})[0]
    with torch.no_grad():
        assert np.allclose(out, res.network(x).numpy(), atol=1e-4)


@pytest.fixture(scope="module")
def mnist_case():
    net = pretrained("fnn_small")
    rs = build_repair_set(net, load_dataset("mnist", "train", limit=300), n=8, radius=0.1, start=0, steps=60, chunk=100)
    return net, rs, repair(net, rs, PatchProConfig.mnist())


def test_mnist_neighbourhoods_proved_and_robust_on_the_saved_network(mnist_case, tmp_path):
    net, rs, res = mnist_case
    assert res.details["proved_by_method"] and res.details["recheck"]["verified"] == len(rs)
    loaded = _reload(res.network, tmp_path)
    lo, hi = rs.boxes()
    gen = torch.Generator().manual_seed(0)
    u = torch.rand((len(rs), 200, 1, 28, 28), generator=gen)
    pts = torch.cat([lo[:, None] + u * (hi - lo)[:, None], lo[:, None], hi[:, None], rs.repair_x[:, None],
                     rs.test_x.reshape(len(rs), 10, 1, 28, 28)], 1)
    with torch.no_grad():
        pred = loaded(pts.flatten(0, 1)).argmax(1).reshape(len(rs), -1)
    assert (pred == rs.labels[:, None]).all()
    # white-box PGD on the whole saved composite (base + patches + indicator) inside each ball
    adv = pgd(loaded, rs.origins, rs.labels, rs.radius, steps=30, restarts=2)
    with torch.no_grad():
        assert (loaded(adv).argmax(1) == rs.labels).all()
        assert (net(rs.repair_x).argmax(1) != rs.labels).all()          # the repair samples were bugs
    # away from the repaired balls the decisions stay the original's (the allocation adds the top class's patches)
    test = load_dataset("mnist", "test", limit=500)
    with torch.no_grad():
        agree = (loaded(test.x).argmax(1) == net(test.x).argmax(1)).float().mean().item()
    assert agree >= 0.99


def test_original_network_is_not_modified_and_repair_is_seeded(mnist_case):
    net, rs, res = mnist_case
    fresh = pretrained("fnn_small")
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    again = repair(net, rs, PatchProConfig.mnist())
    for a, b in zip(res.network.patches.state_dict().values(), again.network.patches.state_dict().values()):
        assert torch.equal(a, b)


def test_overlapping_regions_are_certified_for_the_routed_patch(tmp_path):
    net = pretrained("fnn_small")
    x = load_dataset("mnist", "test", limit=1).x[0]
    label = int(net(x[None]).argmax(1))
    shifted = (x + 0.05).clamp(0, 1)
    props = [LocalRobustness(x, 0.08, label), LocalRobustness(shifted, 0.08, label)]
    res = repair(net, props, PatchProConfig.mnist())
    assert res.details["overlap_boxes"] == 1
    assert res.details["proved_by_method"] and res.details["recheck"]["overlaps_verified"] == 1
    loaded = _reload(res.network, tmp_path)
    lo = torch.max(x - 0.08, shifted - 0.08).clamp(0, 1)
    hi = torch.min(x + 0.08, shifted + 0.08).clamp(0, 1)
    pts = lo + torch.rand((300, *x.shape)) * (hi - lo)
    with torch.no_grad():
        assert (loaded.region_of(pts) == 0).all()                       # the first region wins
        assert (loaded(pts).argmax(1) == label).all()


def test_already_satisfied_property_repairs_nothing():
    net = pretrained("fnn_small")
    x = load_dataset("mnist", "test", limit=1).x[0]
    label = int(net(x[None]).argmax(1))
    res = repair(net, [LocalRobustness(x, 1e-4, label)], PatchProConfig.mnist())
    assert res.details["already_satisfied"] and res.details["proved_by_method"]
    assert not isinstance(res.network, PatchProNetwork)
    assert torch.equal(res.network(x[None]), net(x[None]))


def test_unprovable_properties_report_open_boxes_and_are_not_verified():
    net = pretrained("fnn_small")
    x = load_dataset("mnist", "test", limit=1).x[0]
    # the same ball must keep two different labels: impossible
    res = repair(net, [LocalRobustness(x, 0.05, 3), LocalRobustness(x, 0.05, 5)], PatchProConfig.mnist(max_epochs=3))
    assert res.details["proved_by_method"] is False
    assert res.details["n_open"] >= 1 and res.details["open_boxes"][0]["lo"]
    assert res.details["recheck"] is None


@pytest.mark.parametrize("make, match", [
    (lambda x: [LocalRobustness(x * 2 + 0.5, 0.1, 1)], "outside the input domain"),
    (lambda x: [LocalRobustness(torch.rand(7), 0.1, 1)], "does not accept inputs of shape"),
    (lambda x: [LocalRobustness(x, 0.0, 1)], "eps"),
    (lambda x: [LocalRobustness(x, 0.1, 12)], "label"),
    (lambda x: "not a problem", "RepairSet"),
])
def test_bad_problems_are_clear_errors(make, match):
    net = pretrained("fnn_small")
    x = load_dataset("mnist", "test", limit=1).x[0]
    with pytest.raises(PropertyError, match=match):
        repair(net, make(x), PatchProConfig.mnist())


def test_safety_region_outside_the_acasxu_domain_is_refused():
    from nnmend.properties import Box, SafetyProperty

    prop = read_property(acasxu_property_path(2))
    r = prop.regions[0]
    bad = SafetyProperty([Box(torch.as_tensor(r.lo) - 1.0, torch.as_tensor(r.hi), r.unsafe)], "shifted")
    with pytest.raises(PropertyError, match="input domain"):
        repair(acasxu(2, 1), bad, PatchProConfig.acasxu(initial_boxes=10))


def test_feature_space_repair_sound_box_and_empirical_box():
    net = pretrained("fnn_big")
    rs = build_repair_set(net, load_dataset("mnist", "train", limit=300), n=4, radius=0.05, start=0, steps=60, chunk=100)
    sound = repair(net, rs, PatchProConfig.mnist(feature_layer="fc7"))
    assert sound.details["feature_box"] == "sound CROWN bounds" and sound.details["proved_by_method"]
    assert sound.network.patches.in_features == 32                      # patches read the 32 penultimate features
    emp = repair(net, rs, PatchProConfig.mnist(feature_layer="fc7", feature_box="empirical"))
    assert emp.details["feature_box"] == "empirical (not a proof)" and emp.details["proved_by_method"] is False
    with pytest.raises(ModelError, match="not a top-level module"):
        repair(net, rs, PatchProConfig.mnist(feature_layer="nope"))


def test_patch_form_plus_base_form_equals_shared_bounds_of_the_sum():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    patches = StackedPatches(2, 4, 3, hidden=(5,), init_scale=1.0, seed=1)
    lo = torch.rand(6, 4) - 0.5
    hi = lo + 0.3
    idx = torch.tensor([0, 1, 0, 1, 1, 0])
    C = torch.tensor([[1.0, -1, 0], [0, 1, -1]]).expand(6, -1, -1)
    A, c = crown_linear_form(base, lo, hi, C)
    Ap, cp = patch_form(patches, idx, C, lo, hi)
    lb = concretize(A + Ap, c + cp, lo, hi)
    for b in range(6):
        summed = SumOfNetworks(base, patches.as_module(int(idx[b]))).eval()
        ref, _ = crown_bounds(summed, lo[b:b + 1], hi[b:b + 1], C[b:b + 1])
        assert torch.allclose(lb[b], ref[0], atol=1e-5)
        pts = lo[b] + torch.rand(2000, 4) * (hi[b] - lo[b])
        with torch.no_grad():
            assert ((summed(pts) @ C[b].T) >= lb[b] - 1e-5).all()        # sound by sampling


def test_composite_checkpoint_keeps_routing_and_tags(mnist_case, tmp_path):
    _, rs, res = mnist_case
    loaded = _reload(res.network, tmp_path)
    assert torch.equal(loaded.tags, res.network.tags) and torch.equal(loaded.region_lo, res.network.region_lo)
    assert loaded.allocation == "top2"
    x = torch.cat([rs.repair_x, load_dataset("mnist", "test", limit=50).x])
    with torch.no_grad():
        assert torch.allclose(loaded(x), res.network(x))
    view = copy.deepcopy(loaded).fixed_allocation(torch.ones(len(rs)))
    assert view(x).shape == (len(x), 10)


def test_indicator_matches_the_exact_box_test_at_the_edges():
    gen = torch.Generator().manual_seed(0)
    mid = torch.rand((40, 1, 6, 6), generator=gen)
    half = torch.rand((40, 1, 6, 6), generator=gen) * 0.2
    lo, hi = mid - half, mid + half
    net = PatchProNetwork(nn.Identity(), nn.Sequential(nn.Flatten(), nn.Linear(36, 3)), StackedPatches(40, 36, 3),
                          lo, hi, torch.arange(40), torch.zeros((40, 2), dtype=torch.long))
    k = torch.randint(40, (3000,), generator=gen)
    u = torch.rand((3000, 1, 6, 6), generator=gen)
    u = torch.where(torch.rand(u.shape, generator=gen) < 0.3, u.round(), u)       # many coordinates exactly on an edge
    out = torch.rand(3000, generator=gen) < 0.5                                   # half the points leave by one coordinate
    u.flatten(1)[out, torch.randint(36, (int(out.sum()),), generator=gen)] = 1.0 + 1e-3
    x = lo[k] + u * (hi[k] - lo[k])
    dense = ((x.flatten(1)[:, None] >= lo.flatten(1)) & (x.flatten(1)[:, None] <= hi.flatten(1))).all(-1)
    expected = torch.where(dense.any(1), dense.int().argmax(1), torch.full((len(x),), -1))
    assert torch.equal(net.region_of(x), expected)
    assert (expected >= 0).sum() > 500 and (expected < 0).sum() > 500
