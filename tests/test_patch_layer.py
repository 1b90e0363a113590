import pytest
import torch

from nnmend import RepairError, load_dataset, pretrained
from nnmend.attacks import AttackSpec
from nnmend.diagnose import trace
from nnmend.faults import damage
from nnmend.io import load_network, save_network
from nnmend.nets import get_layer
from nnmend.repair.patch_layer import AdversarialPatch, PatchAdvConfig, PatchConfig, heal_adversarial, heal_structural
from nnmend.train import accuracy


@pytest.fixture(scope="module")
def net():
    return pretrained("shnn_mlp_mnist")


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist", "train", limit=4000), load_dataset("mnist", "test", limit=2000)


@pytest.mark.parametrize("layer", ["fc2", "fc4"])
def test_structural_heal_activation_target(net, data, layer):
    tr, te = data
    damaged, _ = damage(net, layer, "gaussian", seed=2)
    before = {k: v.clone() for k, v in damaged.state_dict().items()}
    res = heal_structural(damaged, layer, tr, reference=net, config=PatchConfig(epochs=10))
    clean, hurt, healed = accuracy(net, te), accuracy(damaged, te), accuracy(res.network, te)
    assert hurt < 0.5 and healed > clean - 0.01, (clean, hurt, healed)
    for k, v in damaged.state_dict().items():  # input untouched
        assert torch.equal(v, before[k])
    for name in ("fc1", "fc3") if layer == "fc2" else ("fc1", "fc2"):  # others frozen
        assert torch.equal(get_layer(res.network, name).weight, get_layer(damaged, name).weight)


def test_structural_heal_with_recorded_trace_and_task_target(net, data):
    tr, te = data
    damaged, _ = damage(net, "fc3", "zero")
    ref = trace(net, tr.x, ["fc3"])
    res = heal_structural(damaged, "fc3", tr, reference=ref, config=PatchConfig(epochs=5))
    assert accuracy(res.network, te) > accuracy(net, te) - 0.02
    res2 = heal_structural(damaged, "fc3", tr, config=PatchConfig(target="task", epochs=3, lr=1e-3))
    assert accuracy(res2.network, te) > 0.9
    with pytest.raises(RepairError, match="needs a reference"):
        heal_structural(damaged, "fc3", tr)


def test_adversarial_patch_trains_only_patch_and_saves(net, data, tmp_path):
    tr, te = data
    atk = AttackSpec("fgsm", eps=0.1)
    res = heal_adversarial(net, "fc3", tr, PatchAdvConfig(attack=atk, n_samples=2000, epochs=3))
    patch = get_layer(res.network, "fc3.base")
    assert isinstance(res.network.fc3, AdversarialPatch) and torch.equal(patch.weight, net.fc3.weight)
    assert torch.equal(res.network.fc1.weight, net.fc1.weight)
    x_adv = atk.run(net, te.x[:1000], te.y[:1000])
    before, after = accuracy(net, (x_adv, te.y[:1000])), accuracy(res.network, (x_adv, te.y[:1000]))
    assert after > before + 0.05, (before, after)  # transfer accuracy improves
    save_network(res.network, tmp_path / "h.pt")
    back = load_network(tmp_path / "h.pt")
    assert torch.equal(back(te.x[:10]), res.network(te.x[:10]))


def test_adversarial_bad_options(net, data):
    tr, _ = data
    with pytest.raises(Exception, match="adversary"):
        heal_adversarial(net, "fc3", tr, PatchAdvConfig(adversary="oracle"))
    with pytest.raises(RepairError, match="mix"):
        heal_adversarial(net, "fc3", tr, PatchAdvConfig(mix=1.0))
