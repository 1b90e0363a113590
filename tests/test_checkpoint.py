import pickle

import pytest
import torch
from torch import nn

from nnmend import ModelError, pretrained, shnn_mlp
from nnmend.io import load_checkpoint, load_network, save_network
from nnmend.layers import ElementwiseAffine, SumOfNetworks
from nnmend.repair.patch_layer import AdversarialPatch


def test_roundtrip_custom_modules(tmp_path):
    torch.manual_seed(0)
    base = shnn_mlp()
    net = nn.Sequential(ElementwiseAffine(torch.tensor(0.5), torch.tensor(0.1)), SumOfNetworks(base, shnn_mlp()))
    net[1].branches[0].fc3 = AdversarialPatch.around(base.fc3, 32, True, 0)
    save_network(net, tmp_path / "m.pt", meta={"note": "x"})
    ck = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(net(x), ck.model(x)) and ck.meta["note"] == "x"


def test_pretrained_meta_accuracy():
    net = pretrained("shnn_mlp_mnist")
    assert net.nnmend_meta["arch"] == "shnn_mlp" and net.nnmend_meta["test_accuracy"] > 0.975


def test_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pt", "wb") as fh:
        torch.save({"x": Evil()}, fh, pickle_module=pickle)
    with pytest.raises(ModelError, match="refused|weights-only|not a readable"):
        load_network(tmp_path / "evil.pt")


def test_wrong_arch_truncated_nan(tmp_path):
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    torch.save(small.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelError, match="another network|does not match"):
        load_checkpoint(tmp_path / "sd.pt", arch="shnn_mlp")
    with pytest.raises(ModelError, match="plain state dict"):
        load_checkpoint(tmp_path / "sd.pt")
    save_network(shnn_mlp(), tmp_path / "ok.pt")
    raw = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelError, match="trunc.pt"):
        load_network(tmp_path / "trunc.pt")
    bad = shnn_mlp()
    with torch.no_grad():
        bad.fc2.weight[0, 0] = float("nan")
    save_network(bad, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match="fc2.weight.*NaN"):
        load_network(tmp_path / "nan.pt")
    with pytest.raises(ModelError, match="file not found"):
        load_network(tmp_path / "missing.pt")


def test_failed_write_leaves_nothing(tmp_path):
    class Odd(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="cannot save a module"):
        save_network(nn.Sequential(Odd()), tmp_path / "odd.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_deep_spec_is_refused_whatever_the_recursion_limit(tmp_path, monkeypatch):
    """Refusal by counting brackets, not by a RecursionError that a raised recursion limit would postpone."""
    import sys

    import pytest
    import torch

    from nnmend.errors import ModelError
    from nnmend.io.checkpoint import FORMAT, VERSION, load_checkpoint

    spec = '{"type": "Sequential", "children": [["0", ' * 400 + '{"type": "ReLU"}' + "]]}" * 400
    path = tmp_path / "deep.pt"
    torch.save({"format": FORMAT, "version": VERSION, "spec": spec, "meta": "{}", "state_dict": {}}, path)
    monkeypatch.setattr(sys, "getrecursionlimit", sys.getrecursionlimit)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(ModelError, match="nested more than"):
            load_checkpoint(path)
    finally:
        sys.setrecursionlimit(old)
