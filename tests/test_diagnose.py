import pytest
import torch
from torch import nn

from nnmend import ModelError, pretrained
from nnmend.attacks import SHNN_PGD
from nnmend.diagnose import diagnose, layer_scores, localize, trace
from nnmend.faults import damage


@pytest.fixture(scope="module")
def net():
    return pretrained("shnn_mlp_mnist")


def test_trace_shapes_post_activation(net, mnist_small):
    _, te = mnist_small
    t = trace(net, te.x[:50])
    assert list(t) == ["fc1", "fc2", "fc3", "fc4"]
    assert [v.shape[1] for v in t.values()] == [256, 128, 64, 10]
    assert (t["fc1"] >= 0).all() and (t["fc4"] < 0).any()  # ReLU after hidden layers, logits at the end
    soft = trace(net, te.x[:50], final_softmax=True)["fc4"]
    assert torch.allclose(soft.sum(1), torch.ones(50), atol=1e-5)


def test_localize_rules():
    s = {"a": 0.05, "b": 0.3, "c": 0.35, "d": 2.0}
    assert localize(s, "first") == "b"
    assert localize(s, "first_increase") == "b"
    assert localize({"a": 0.2, "b": 0.25, "c": 0.9}, "first_increase") == "a"
    assert localize({"a": 0.0, "b": 0.15, "c": 0.2}, "first_increase") == "b"
    assert localize({"a": 0.05, "b": 0.12, "c": 0.2}, "first_increase") == "c"  # no rise > 0.1: falls back to peak
    assert localize({"a": 0.11, "b": 0.15, "c": 0.18}, "first_increase") == "a"
    assert localize(s, "peak") == "d"
    assert localize({"a": 0.01, "b": 0.02}, "first") is None


@pytest.mark.parametrize("layer", ["fc1", "fc2", "fc3", "fc4"])
@pytest.mark.parametrize("kind", ["zero", "gaussian"])
def test_localises_truly_damaged_layer(net, mnist_small, layer, kind):
    _, te = mnist_small
    d, _ = damage(net, layer, kind, seed=1)
    for rule in ("first", "first_increase"):
        diag = diagnose(net, d, te.x[:100], rule=rule)
        assert diag.localized == layer, (rule, diag.mad)
    idx = list(diag.mad).index(layer)
    assert all(v == 0 for v in list(diag.mad.values())[:idx])  # upstream layers unaffected


def test_adversarial_peak_is_hidden_layer(net, mnist_small):
    _, te = mnist_small
    x, y = te.x[:100], te.y[:100]
    adv = SHNN_PGD.run(net, x, y)
    d = diagnose(net, net, x, x_other=adv, metric="mse", rule="peak")
    assert d.localized in ("fc1", "fc2", "fc3") and d.mse[d.localized] == max(d.mse.values())


def test_works_on_any_sequential_cnn():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    x = torch.rand(8, 1, 28, 28)
    d2, _ = damage(cnn, "0", "zero")
    diag = diagnose(cnn, d2, x)
    assert list(diag.mad) == ["0", "3"] and diag.localized == "0"


def test_bad_layer_and_shape():
    with pytest.raises(ModelError, match="layer"):
        trace(nn.Sequential(nn.Linear(2, 2)), torch.rand(3, 2), layers=["x"])
    with pytest.raises(ModelError, match="shapes differ"):
        layer_scores({"a": torch.zeros(2, 3)}, {"a": torch.zeros(2, 4)})
