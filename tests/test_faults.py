import math

import pytest
import torch

from nnmend import NnmendError, shnn_mlp
from nnmend.corruption import corrupt_values, corruption_mask
from nnmend.faults import damage
from nnmend.nets import get_layer


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return shnn_mlp()


def test_zero_whole_layer_weights_and_bias_input_untouched(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out, f = damage(net, "fc2", "zero")
    assert (get_layer(out, "fc2").weight == 0).all() and (get_layer(out, "fc2").bias == 0).all()
    assert f.n_total == 256 * 128 + 128 and f.include_bias and f.pattern == "all"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"input network changed at {k}"
    assert torch.equal(get_layer(out, "fc1").weight, get_layer(net, "fc1").weight)


def test_gaussian_reinit_sigma(net):
    out, _ = damage(net, "fc1", "gaussian", sigma=0.1, seed=3)
    w = get_layer(out, "fc1").weight
    assert abs(float(w.std()) - 0.1) < 0.003 and abs(float(w.mean())) < 0.003
    out2, _ = damage(net, "fc1", "gaussian", sigma=0.1, seed=3)
    assert torch.equal(w, get_layer(out2, "fc1").weight)  # seeded


@pytest.mark.parametrize("pattern", ["scatter", "patch", "rows", "cols", "magnitude"])
def test_mask_patterns_fraction(pattern):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 60, 80)
    m = corruption_mask(w, pattern, 0.25, g)
    frac = m.float().mean((1, 2))
    assert m.shape == w.shape and torch.allclose(frac, torch.full((4,), 0.25), atol=0.02)
    if pattern == "rows":
        assert ((m.all(2)) | (~m.any(2))).all()
    if pattern == "patch":  # one rectangle: rows and columns touched form contiguous ranges
        for b in range(4):
            r = m[b].any(1).nonzero().flatten()
            assert r.max() - r.min() + 1 == len(r)
            assert m[b].sum() == len(r) * m[b].any(0).sum()
    if pattern == "magnitude":
        assert w[0][m[0]].abs().max() <= w[0][~m[0]].abs().min()


@pytest.mark.parametrize("kind", ["zero", "gaussian", "uniform", "shuffle", "sign", "bitflip", "quantize"])
def test_value_rules_only_touch_mask(kind):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 20, 30)
    m = corruption_mask(w, "scatter", 0.3, g)
    out = corrupt_values(w, m, kind, g)
    assert torch.equal(out[~m], w[~m])
    changed = ~torch.eq(out, w)
    assert changed[m].float().mean() > (0.9 if kind != "quantize" else 0.5)
    if kind == "shuffle":
        for b in range(3):
            assert torch.equal(out[b][m[b]].sort().values, w[b][m[b]].sort().values)


def test_bitflip_sign_bit_and_exponent():
    g = torch.Generator()
    w = torch.tensor([[0.5, -0.25]])
    m = torch.ones_like(w, dtype=torch.bool)
    assert torch.equal(corrupt_values(w, m, "bitflip", g, bit=31), -w)
    big = corrupt_values(w, m, "bitflip", g, bit=30)
    assert (big.abs() > 1e30).all() or (~torch.isfinite(big)).any()


def test_partial_and_prune(net):
    out, f = damage(net, "fc3", "zero", fraction=0.3, pattern="patch", seed=1)
    assert not f.include_bias and math.isclose(f.n_selected / (128 * 64), 0.3, abs_tol=0.02)
    out, f = damage(net, "fc3", "prune", fraction=0.5)
    w0, w1 = get_layer(net, "fc3").weight, get_layer(out, "fc3").weight
    assert f.pattern == "magnitude" and (w1 == 0).float().mean() == pytest.approx(0.5, abs=0.01)
    assert w0[w1 == 0].abs().max() <= w0[w1 != 0].abs().min()


def test_bad_input(net):
    with pytest.raises(NnmendError, match="layer 'fc9' not found.*fc1, fc2, fc3, fc4"):
        damage(net, "fc9", "zero")
    with pytest.raises(NnmendError, match="kind='melt'"):
        damage(net, "fc1", "melt")
    with pytest.raises(NnmendError, match="fraction=1.5"):
        damage(net, "fc1", "zero", fraction=1.5, pattern="scatter")
