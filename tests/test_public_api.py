"""The flat public API: lazy names, the torchattacks-style attack objects, the auto_LiRPA-style bounds object."""
import inspect
import subprocess
import sys

import pytest
import torch
from torch import nn

import nnmend
from nnmend import DataError, ModelError
from nnmend.attacks import FGSM, PGD, Square, fgsm, pgd, square
from nnmend.bounds import BoundedNetwork, bound


def test_import_is_lazy_and_every_public_name_resolves():
    code = "import sys, nnmend; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"                   # torch loads on first use, not on import
    for name in nnmend.__all__:
        assert getattr(nnmend, name) is not None, name
    assert set(nnmend.__all__) <= set(dir(nnmend))
    with pytest.raises(AttributeError, match="no_such_name"):
        nnmend.no_such_name
    assert callable(nnmend.repair.run) and nnmend.io.load_network is nnmend.load_network
    assert nnmend.layers.Add and nnmend.io.onnx.load_onnx and nnmend.io.vnnlib.read_vnnlib   # any submodule


ENTRY_MODULES = ["nnmend.layers", "nnmend.bounds", "nnmend.io.onnx", "nnmend.graph", "nnmend.attacks"]


def test_public_modules_import_first():
    """The lazy package may be entered through any public module (nnmend.layers first once hit an import cycle)."""
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k == 'nnmend' or k.startswith('nnmend.')]:\n"
            "        del sys.modules[k]\n"
            "    importlib.import_module(name)\n")
    proc = subprocess.run([sys.executable, "-c", code, *ENTRY_MODULES], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1500:]


class _Tiny(nn.Module):                             # a user's own class: traced by torch.fx for the bounds
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2, self.out = nn.Linear(6, 12), nn.Linear(12, 12), nn.Linear(12, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.out(torch.relu(h + self.fc2(h)))


@pytest.fixture(scope="module")
def mlp():
    return nnmend.pretrained("shnn_mlp_mnist")


@pytest.fixture(scope="module")
def batch(mnist_small):
    _, te = mnist_small
    return te.x[:16], te.y[:16]


def test_diagnose_is_the_module_and_the_function(mlp, batch):
    from nnmend.diagnose import diagnose as fn, trace

    hurt, _ = nnmend.damage(mlp, "fc2", "zero")
    d = nnmend.diagnose(mlp, hurt, batch[0])
    assert d.localized == fn(mlp, hurt, batch[0]).localized == "fc2"
    assert nnmend.diagnose.trace is trace


def test_attack_objects_call_the_functions(mlp, batch):
    x, y = batch
    assert torch.equal(FGSM(mlp, eps=0.1)(x, y), fgsm(mlp, x, y, 0.1))
    assert torch.equal(PGD(mlp, eps=0.1, alpha=0.02, steps=5, seed=3)(x, y),
                       pgd(mlp, x, y, 0.1, alpha=0.02, steps=5, seed=3))
    assert "eps=0.1" in repr(PGD(mlp, eps=0.1))
    with pytest.raises(DataError, match="shape"):
        PGD(mlp, eps=0.1)(x[:4], y[:3])


def test_attack_objects_match_torchattacks(mlp, batch):
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks not installed")
    x, y = batch
    for ours, theirs in ((FGSM, torchattacks.FGSM), (PGD, torchattacks.PGD)):
        own = {k: p.default for k, p in inspect.signature(ours).parameters.items() if k != "model"}
        for k, p in inspect.signature(theirs).parameters.items():
            if k != "model" and k in own:
                assert own[k] == p.default, (ours.__name__, k)   # the same defaults a torchattacks user knows
    assert torch.equal(Square(mlp, eps=0.1, n_queries=10, seed=1)(x[:4], y[:4]),
                       square(mlp, x[:4], y[:4], 0.1, n_queries=10, seed=1))
    adv = PGD(mlp, eps=0.1, alpha=0.01, steps=5, random_start=False)(x, y)
    ref = torchattacks.PGD(mlp, eps=0.1, alpha=0.01, steps=5, random_start=False)(x, y)
    assert (adv - ref).abs().max() < 1e-5


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_bounded_network_is_bound_and_sound(method):
    net = _Tiny().eval()
    x = torch.rand(4, 6)
    C = torch.randn(2, 3)
    bnet = BoundedNetwork(net, (6,))
    lb, ub = bnet.compute_bounds(x - 0.05, x + 0.05, C, method=method)
    ref = bound(net, x - 0.05, x + 0.05, C, method=method)
    assert torch.equal(lb, ref[0]) and torch.equal(ub, ref[1]) and lb.shape == (4, 2)
    lb2, ub2 = bnet.compute_bounds(x=x, eps=0.05, C=C, method=method.upper())   # auto_LiRPA spelling
    assert torch.equal(lb, lb2) and torch.equal(ub, ub2)
    pts = x[:, None] + (torch.rand(4, 2000, 6) * 2 - 1) * 0.05
    y = net(pts.reshape(-1, 6)).reshape(4, 2000, 3) @ C.T
    assert (y >= lb[:, None] - 1e-5).all() and (y <= ub[:, None] + 1e-5).all()


def test_bounded_network_follows_the_weights_and_takes_an_example_input():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    x = torch.rand(2, 3)
    bnet = BoundedNetwork(net, x)                   # as BoundedModule(model, dummy_input)
    assert bnet.input_shape == BoundedNetwork(net, 3).input_shape == (3,)
    before = bnet.compute_bounds(x, x, method="crown-optimized")[0]
    with torch.no_grad():
        net[2].bias += 1.0
    after = bnet.compute_bounds(x, x, method="CROWN-Optimized")[0]
    assert torch.allclose(after, before + 1.0, atol=1e-5)


def test_bounded_network_bad_input():
    with pytest.raises(ModelError, match="GRU"):
        BoundedNetwork(nn.Sequential(nn.Linear(3, 4), nn.GRU(4, 4)), (3,))
    bnet = BoundedNetwork(nn.Sequential(nn.Linear(3, 2)).eval(), (3,))
    with pytest.raises(DataError, match=r"expected \(B, 3\)"):
        bnet.compute_bounds(torch.zeros(1, 4), torch.ones(1, 4))
    with pytest.raises(DataError, match="method"):
        bnet.compute_bounds(torch.zeros(1, 3), torch.ones(1, 3), method="beta-crown")
    with pytest.raises(DataError, match="either"):
        bnet.compute_bounds(torch.zeros(1, 3), x=torch.zeros(1, 3), eps=0.1)
    with pytest.raises(DataError, match="input_shape"):
        BoundedNetwork(nn.Linear(3, 2), (0,))
