"""The .nnet reader / writer: agreement with ONNX on ACAS Xu, exact round trips, normalisation, errors."""
from pathlib import Path

import pytest
import torch
from torch import nn

from nnmend.acasxu import ACASXU_HEADER, acasxu, acasxu_path
from nnmend.errors import ModelError
from nnmend.io import load_checkpoint, load_network, save_checkpoint, save_network
from nnmend.io.nnet import denormalize_outputs, load_nnet, normalize_inputs, save_nnet
from nnmend.nets import mlp

BUNDLED = Path(acasxu_path(1, 1)).parent.parent / "nnet"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "acasxu" / "nnet"  # all 45 networks, where the project's data folder exists
NNET_DIR = SHARED if len(list(SHARED.glob("*.nnet"))) == 45 else BUNDLED


def _nnet_files():
    return sorted(NNET_DIR.glob("ACASXU_run2a_*_batch_2000.nnet"))


def test_nnet_agrees_with_onnx_on_every_available_network():
    files = _nnet_files()
    assert len(files) >= 3
    x = torch.rand(500, 5, generator=torch.Generator().manual_seed(0)) - 0.5
    worst = 0.0
    for f in files:
        i, j = (int(v) for v in f.name.split("_")[2:4])
        a, b = load_nnet(f), acasxu(i, j)
        assert a.nnmend_meta["nnet"] == ACASXU_HEADER
        assert list(a.state_dict()) == list(b.state_dict())  # same layer names: flatten, fc1, relu1, ..., fc7
        with torch.no_grad():
            worst = max(worst, (a(x) - b(x.view(-1, 1, 1, 5))).abs().max().item())
    assert worst <= 1e-5, worst


def test_nnet_checkpoint_nnet_roundtrip_is_exact(tmp_path):
    src = BUNDLED / "ACASXU_run2a_2_1_batch_2000.nnet"
    net = load_nnet(src)
    ckpt = save_checkpoint(net, tmp_path / "net.pt")
    back = load_checkpoint(ckpt).model
    assert back.nnmend_meta["nnet"] == ACASXU_HEADER  # the header survives the .pt checkpoint
    out = save_nnet(back, tmp_path / "again.nnet")
    again = load_nnet(out)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert again.nnmend_meta["nnet"] == ACASXU_HEADER
    save_nnet(again, tmp_path / "third.nnet")
    assert (tmp_path / "third.nnet").read_text() == out.read_text()  # a fixed point after one trip


def test_convert_via_save_network_dispatch(tmp_path):
    net = mlp([4, 7, 3])
    out = save_network(net, tmp_path / "m.nnet")
    back = load_network(out)
    x = torch.randn(10, 4)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    # no header known: identity normalisation
    assert back.nnmend_meta["nnet"]["means"] == [0.0] * 5 and back.nnmend_meta["nnet"]["ranges"] == [1.0] * 5


def test_normalisation_helpers_reproduce_the_vnncomp_numbers():
    h = load_nnet(BUNDLED / "ACASXU_run2a_1_1_batch_2000.nnet").nnmend_meta["nnet"]
    raw = torch.tensor([[55947.691, -3.141592653589793, 3.141592653589793, 1145.0, 60.0],
                        [70000.0, 0.0, 0.0, 50.0, 600.0]], dtype=torch.float64)
    z = normalize_inputs(raw, h)
    # prop_1/2 in VNN-LIB: X_0 >= 0.6, X_3 >= 0.45, X_4 <= -0.45; clipping maps 70000 to the max, 50 to the min
    torch.testing.assert_close(z[0], torch.tensor([0.6, -0.5, 0.5, 0.45, -0.45], dtype=torch.float64), atol=1e-6, rtol=0)
    assert z[1, 0].item() == pytest.approx((60760.0 - 19791.091) / 60261.0) and z[1, 3].item() == pytest.approx(-0.5)
    assert normalize_inputs(raw, h, clip=False)[1, 0].item() == pytest.approx((70000.0 - 19791.091) / 60261.0)
    y = torch.tensor([(1500 - 7.5188840201005975) / 373.94992], dtype=torch.float64)
    assert denormalize_outputs(y, h).item() == pytest.approx(1500.0)


def _write_variant(tmp_path, edit):
    lines = (BUNDLED / "ACASXU_run2a_1_1_batch_2000.nnet").read_text().splitlines()
    lines = edit(lines)
    path = tmp_path / "bad.nnet"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("edit, line, words", [
    (lambda L: L[:4] + ["5,50,50,50,50,50,50,7,"] + L[5:], 5, "end with outputSize"),
    (lambda L: L[:4] + ["5,50,50,50,50,50,5,"] + L[5:], 5, "expected 8 value(s), found 7"),
    (lambda L: L[:3] + ["7,5,5,x50,"] + L[4:], 4, "'x50' is not an integer"),
    (lambda L: L[:6] + ["0.0,-3.141593,-3.141593,100.0,"] + L[7:], 7, "input mins: expected 5 value(s), found 4"),
    (lambda L: L[:12] + ["5.4e-02,-2.61e+00,abc,2.42e-01,1.41e-01,"] + L[13:], 13, "'abc' is not a number"),
    (lambda L: L[:13] + ["1.0,2.0,3.0,4.0,"] + L[14:], 14, "layer 1 weights of neuron 4: expected 5 value(s), found 4"),
    (lambda L: L + ["1.0,"], None, "unexpected data after the last layer"),
    (lambda L: L[:500], None, "file ends before"),
])
def test_bad_nnet_names_file_and_line(tmp_path, edit, line, words):
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ModelError) as err:
        load_nnet(path)
    msg = str(err.value)
    assert str(path) in msg and words in msg, msg
    if line is not None:
        assert f"{path}:{line}:" in msg, msg


def test_save_nnet_rejects_non_mlps_and_leaves_no_file(tmp_path):
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ModelError, match=r"only Linear/ReLU MLPs; layer '0' is Conv2d"):
        save_nnet(cnn, tmp_path / "cnn.nnet")
    relu_out = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
    with pytest.raises(ModelError, match="none after the output layer"):
        save_nnet(relu_out, tmp_path / "r.nnet")
    with pytest.raises(ModelError, match="header 'mins' has 2 values; the network needs 3"):
        save_nnet(mlp([3, 2]), tmp_path / "h.nnet", meta={"mins": [0, 0], "maxs": [1] * 3, "means": [0] * 4, "ranges": [1] * 4})
    nan = mlp([3, 2])
    with torch.no_grad():
        nan.fc1.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        save_nnet(nan, tmp_path / "n.nnet")
    assert list(tmp_path.iterdir()) == []


def test_cli_convert_chain_keeps_weights_and_header(tmp_path, capsys):
    from nnmend.cli import main

    src = BUNDLED / "ACASXU_run2a_3_3_batch_2000.nnet"
    pt, ox, nn_out = tmp_path / "a.pt", tmp_path / "a.onnx", tmp_path / "a.nnet"
    assert main(["convert", str(src), str(pt)]) == 0
    assert main(["convert", str(pt), str(ox)]) == 0  # the input shape travels in the checkpoint's meta
    assert main(["convert", str(ox), str(nn_out)]) == 0  # the header travels in the ONNX metadata
    assert "wrote" in capsys.readouterr().out
    a, b = load_nnet(src), load_nnet(nn_out)
    assert b.nnmend_meta["nnet"] == ACASXU_HEADER
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_cli_convert_errors_exit_2_without_output(tmp_path, capsys):
    from nnmend.cli import main

    cnn = tmp_path / "cnn.pt"
    save_checkpoint(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), cnn)
    assert main(["convert", str(cnn), str(tmp_path / "cnn.nnet")]) == 2
    assert "only Linear/ReLU MLPs" in capsys.readouterr().err
    assert main(["convert", str(cnn), str(tmp_path / "cnn.onnx")]) == 2  # no input shape known
    assert "--input-shape" in capsys.readouterr().err
    assert main(["convert", str(cnn), str(tmp_path / "cnn.onnx"), "--input-shape", "1,4,4"]) == 0
    assert main(["convert", str(cnn), str(tmp_path / "x.txt")]) == 2
    assert main(["convert", str(cnn), str(cnn)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.onnx", "cnn.pt"]
