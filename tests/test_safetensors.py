"""``.safetensors`` checkpoints beside ``.pt``: every network the checkpoint format takes, the same checks on load."""
import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("safetensors", reason="safetensors not installed (a runtime dependency: pip install safetensors)")
import safetensors.torch as st  # noqa: E402

from nnmend import ModelError, load_network, save_network, shnn_mlp  # noqa: E402
from nnmend.cli import main  # noqa: E402
from nnmend.io.checkpoint import FORMAT, load_checkpoint  # noqa: E402
from nnmend.io.safetensors_io import load_safetensors  # noqa: E402
from nnmend.layers import ElementwiseAffine, SumOfNetworks  # noqa: E402
from nnmend.repair.patch_layer import AdversarialPatch  # noqa: E402

ACAS = Path(__file__).resolve().parents[1] / "src/nnmend/_assets/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx"


class _ResConv(nn.Module):        # a user's own class: saved as the graph torch.fx traces from it
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))) + x
        return self.fc(h.flatten(1))


def _nets():
    torch.manual_seed(0)
    base = shnn_mlp()
    custom = nn.Sequential(ElementwiseAffine(torch.tensor(0.5), torch.tensor(0.1)), SumOfNetworks(base, shnn_mlp()))
    custom[1].branches[0].fc3 = AdversarialPatch.around(base.fc3, 32, True, 0)
    res = _ResConv().eval()
    res.bn.running_mean.uniform_(-1, 1)
    res.nnmend_input_shape = (1, 6, 6)
    return {"nnmend modules": (custom, (5, 1, 28, 28)), "traced class": (res, (5, 1, 6, 6)),
            "onnx graph": (load_network(ACAS), (5, 1, 1, 5))}


@pytest.mark.parametrize("kind", ["nnmend modules", "traced class", "onnx graph"])
def test_roundtrip_like_pt(tmp_path, kind):
    net, shape = _nets()[kind]
    x = torch.rand(shape)
    save_network(net, tmp_path / "m.safetensors", meta={"note": "x"})
    save_network(net, tmp_path / "m.pt", meta={"note": "x"})
    a, b = load_network(tmp_path / "m.safetensors"), load_checkpoint(tmp_path / "m.pt").model
    assert torch.equal(a(x), net(x)) and torch.equal(a(x), b(x))
    assert a.nnmend_meta == b.nnmend_meta and a.nnmend_meta["note"] == "x"
    assert set(a.state_dict()) == set(b.state_dict())
    with open(tmp_path / "m.safetensors", "rb") as fh:        # an ordinary safetensors file for other tools
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    assert header["__metadata__"]["format"] == FORMAT and json.loads(header["__metadata__"]["spec"])["type"]


def test_plain_state_dict_with_arch(tmp_path):
    net = shnn_mlp()
    st.save_file(net.state_dict(), tmp_path / "plain.safetensors")
    with pytest.raises(ModelError, match="name its architecture"):
        load_network(tmp_path / "plain.safetensors")
    back = load_safetensors(tmp_path / "plain.safetensors", arch="shnn_mlp").model
    x = torch.rand(3, 784)
    assert torch.equal(back(x), net.eval()(x))


def _spec_file(path, tensors, spec, **meta):
    st.save_file(tensors, path, metadata={"format": FORMAT, "version": "1", "spec": json.dumps(spec), "meta": "{}", **meta})
    return path


def _raw(path, header: bytes, body: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + body)
    return path


LIN = {"type": "Sequential", "children": [["0", {"type": "Linear", "args": {"in_features": 5, "out_features": 4, "bias": False}}]]}
HUGE = {"type": "Sequential", "children": [["0", {"type": "Linear", "args": {"in_features": 10**6, "out_features": 10**6,
                                                                           "bias": False}}]]}
BAD = {
    "garbage": (lambda p: (p.write_bytes(b"garbage"), p)[1], "truncated"),
    "header_overrun": (lambda p: (p.write_bytes(struct.pack("<Q", 1 << 60) + b"{}"), p)[1], "claims"),
    "not_json": (lambda p: _raw(p, b"{abc}"), "corrupt header"),
    "deep_header": (lambda p: _raw(p, b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"), "nested"),
    "bad_offsets": (lambda p: _raw(p, json.dumps({"w": {"dtype": "F32", "shape": [10**6], "data_offsets": [0, 4 * 10**6]}})
                                   .encode(), b"\0" * 8), "not a readable safetensors"),
    "metadata_not_strings": (lambda p: _raw(p, json.dumps({"__metadata__": {"format": 3}}).encode()), "strings"),
    "wrong_shape": (lambda p: _spec_file(p, {"0.weight": torch.zeros(3, 3)}, LIN), "shape"),
    "huge_spec": (lambda p: _spec_file(p, {"0.weight": torch.zeros(3, 3)}, HUGE), "shape"),
    "nan": (lambda p: _spec_file(p, {"0.weight": torch.full((4, 5), float("nan"))}, LIN), "NaN"),
    "unknown_module": (lambda p: _spec_file(p, {}, {"type": "os.system"}), "unknown module type"),
    "future_version": (lambda p: _spec_file(p, {"0.weight": torch.zeros(4, 5)}, LIN, version="9"), "version"),
    "other_format": (lambda p: st.save_file({"w": torch.zeros(1)}, p, metadata={"format": "x", "spec": "{}"}) or p,
                     "not 'nnmend/checkpoint'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_one_line_and_exit_2(tmp_path, capsys, name):
    make, words = BAD[name]
    path = make(tmp_path / f"{name}.safetensors")
    with pytest.raises(ModelError, match=words) as info:
        load_network(path)
    assert "\n" not in str(info.value) and path.name in str(info.value)
    assert main(["convert", str(path), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path.name in err and not (tmp_path / "out.pt").exists()


def test_truncated_file_is_refused(tmp_path):
    save_network(shnn_mlp(), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.safetensors"):
        load_network(tmp_path / "cut.safetensors")


def test_convert_between_formats(tmp_path, capsys):
    x = torch.rand(4, 1, 1, 5)
    ref = load_network(ACAS)(x)
    assert main(["convert", str(ACAS), str(tmp_path / "a.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "a.safetensors"), str(tmp_path / "a.pt")]) == 0
    assert main(["convert", str(tmp_path / "a.pt"), str(tmp_path / "b.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "b.safetensors"), str(tmp_path / "b.onnx"), "--no-check"]) == 0
    for name in ("a.safetensors", "a.pt", "b.safetensors", "b.onnx"):
        assert torch.allclose(load_network(tmp_path / name)(x), ref, atol=1e-6), name
    assert main(["convert", str(tmp_path / "a.safetensors"), str(tmp_path / "a.safetensors"), "--force"]) == 2
    assert "safetensors" in capsys.readouterr().out
