import pytest
import torch

from nnmend import DataError, pretrained
from nnmend.attacks import AttackSpec, fgsm, pgd
from nnmend.train import accuracy


@pytest.fixture(scope="module")
def net():
    return pretrained("shnn_mlp_mnist")


@pytest.fixture(scope="module")
def batch(mnist_small):
    _, te = mnist_small
    return te.x[:256], te.y[:256]


def test_fgsm_matches_torchattacks(net, batch):
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks not installed")
    x, y = batch
    ours = fgsm(net, x, y, 0.1)
    theirs = torchattacks.FGSM(net, eps=0.1)(x, y)
    assert (ours - theirs).abs().max() < 1e-6


def test_pgd_matches_torchattacks_no_random_start(net, batch):
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks not installed")
    x, y = batch
    ours = pgd(net, x, y, 0.1, alpha=0.01, steps=10, random_start=False)
    theirs = torchattacks.PGD(net, eps=0.1, alpha=0.01, steps=10, random_start=False)(x, y)
    assert (ours - theirs).abs().max() < 1e-5


def test_pgd_stays_in_ball_and_beats_fgsm(net, batch):
    x, y = batch
    adv = pgd(net, x, y, 0.1, steps=20, restarts=2)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    a_pgd, a_fgsm = accuracy(net, (adv, y)), accuracy(net, (fgsm(net, x, y, 0.1), y))
    assert a_pgd <= a_fgsm and a_pgd < 0.3 < accuracy(net, (x, y))


def test_training_mode_restored_and_errors(net, batch):
    x, y = batch
    net.train()
    fgsm(net, x[:4], y[:4], 0.1)
    assert net.training
    net.eval()
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fgsm(net, x[:4] * 3, y[:4], 0.1)
    with pytest.raises(DataError, match="shape"):
        pgd(net, x[:4], y[:3], 0.1)
    with pytest.raises(ValueError, match="eps"):
        AttackSpec("pgd", eps=0.0).run(net, x[:4], y[:4])
