"""Property-based fuzzing of the network and data loaders (issue 20).

Hypothesis builds valid files (random ``.nnet`` MLPs, random ONNX MLP / CNN graphs across opsets 7-21,
checkpoints, ``.npz`` data) and damaged variants of them (truncated, bytes flipped, fields replaced,
shapes and opsets changed, NaN weights). Every loader must either load the file or refuse it with one
:class:`~nnmend.errors.NnmendError` line naming the file, and ``nnmend convert`` (in-process) must exit
0 or 2 with one line; no other exception. The round-trip properties check that a random ``.nnet`` and a
random ONNX MLP load -> save -> load to the same function.

Runs are derandomized (same examples on every run, CI included) and small; failing examples print the
file recipe that hypothesis shrank to.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from nnmend.cli import main
from nnmend.data import load_dataset
from nnmend.errors import NnmendError
from nnmend.io.checkpoint import load_network, save_checkpoint
from nnmend.io.nnet import load_nnet, save_nnet
from nnmend.io.onnx import OPSET_RANGE, load_onnx, onnx_max_abs_diff, save_onnx

MAX_EXAMPLES = int(os.environ.get("NNMEND_FUZZ_EXAMPLES", "40"))  # raise it for a longer hunt
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
ROUND_TRIP = settings(FUZZ, max_examples=8)


@contextmanager
def _folder():
    with tempfile.TemporaryDirectory(prefix="nnmend-fuzz-") as d:
        yield Path(d)


def _loads_or_refuses(load, path: Path) -> str:
    """``"loaded"`` or ``"refused"``; any exception other than a one-line NnmendError naming the file fails."""
    try:
        load(path)
    except NnmendError as exc:
        msg = str(exc)
        assert "\n" not in msg.strip(), msg
        assert path.name in msg, msg
        return "refused"
    return "loaded"


def _convert_exits_cleanly(path: Path, folder: Path, capsys) -> int:
    out = folder / "converted.pt"
    rc = main(["convert", str(path), str(out)])
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        assert len(err.splitlines()) == 1 and not out.exists(), err
    return rc


# -- strategies: valid files ---------------------------------------------------------------------------

floats32 = st.floats(-4, 4, allow_nan=False, width=32)


@st.composite
def mlp_sizes(draw, max_layers: int = 3, max_width: int = 5) -> list[int]:
    return draw(st.lists(st.integers(1, max_width), min_size=2, max_size=max_layers + 1))


@st.composite
def random_mlps(draw) -> nn.Sequential:
    """A Linear/ReLU chain with weights drawn by hypothesis (exact float32 values)."""
    sizes = draw(mlp_sizes())
    layers: list[nn.Module] = [nn.Flatten()]
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        w = draw(st.lists(floats32, min_size=a * b + b, max_size=a * b + b))
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w[: a * b], dtype=torch.float32).reshape(b, a))
            lin.bias.copy_(torch.tensor(w[a * b:], dtype=torch.float32))
        layers.append(lin)
        if k < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


@st.composite
def nnet_headers(draw, n_in: int) -> dict:
    mins = draw(st.lists(st.floats(-100, 0, allow_nan=False), min_size=n_in, max_size=n_in))
    spans = draw(st.lists(st.floats(0, 100, allow_nan=False), min_size=n_in, max_size=n_in))
    nonzero = st.floats(0.01, 1000, allow_nan=False)
    return {"mins": mins, "maxs": [m + s for m, s in zip(mins, spans)],
            "means": draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=n_in + 1, max_size=n_in + 1)),
            "ranges": draw(st.lists(nonzero, min_size=n_in + 1, max_size=n_in + 1))}


@st.composite
def onnx_graphs(draw):
    """A random small MLP (MatMul+Add or Gemm per layer, Relu between) or CNN (Conv, Relu, Flatten, Gemm)
    built with onnx.helper at a random opset in the supported range; returns the ModelProto."""
    from onnx import TensorProto, helper, numpy_helper

    opset = draw(st.integers(*OPSET_RANGE))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    nodes, inits = [], []

    def init(name: str, shape) -> str:
        inits.append(numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name))
        return name

    cnn = draw(st.booleans())
    if cnn:
        c, h, k, oc = draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        in_shape = [1, c, h, h]
        nodes.append(helper.make_node("Conv", ["x", init("cw", (oc, c, k, k)), init("cb", (oc,))], ["c1"],
                                      name="conv1", kernel_shape=[k, k]))
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
        nodes.append(helper.make_node("Flatten", ["r1"], ["f"], name="flatten", axis=1))
        widths, cur = [oc * (h - k + 1) ** 2] + draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)), "f"
    else:
        widths = draw(mlp_sizes())
        in_shape, cur = [1, widths[0]], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        out = f"h{i}"
        if draw(st.booleans()):
            nodes.append(helper.make_node("Gemm", [cur, init(f"W{i}", (b, a)), init(f"B{i}", (b,))], [out],
                                          name=f"gemm{i}", transB=1))
        else:
            nodes.append(helper.make_node("MatMul", [cur, init(f"W{i}", (a, b))], [f"m{i}"], name=f"matmul{i}"))
            nodes.append(helper.make_node("Add", [f"m{i}", init(f"B{i}", (b,))], [out], name=f"add{i}"))
        cur = out
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [cur], [f"a{i}"], name=f"relu_{i}"))
            cur = f"a{i}"
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, widths[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


# -- strategies: damage --------------------------------------------------------------------------------

TOKENS = ["", "nan", "inf", "-inf", "-0", "1e400", "abc", "99999999999", "-5", "0", ",", "3.5", "100000"]


@st.composite
def damaged_bytes(draw, raw: bytes) -> bytes:
    """``raw`` truncated, with bytes overwritten, or a block deleted/duplicated."""
    if not raw:
        return raw
    kind = draw(st.sampled_from(["truncate", "flip", "delete", "duplicate"]))
    i = draw(st.integers(0, len(raw) - 1))
    j = draw(st.integers(i, min(len(raw), i + 64)))
    if kind == "truncate":
        return raw[:i]
    if kind == "flip":
        noise = draw(st.binary(min_size=1, max_size=8))
        return raw[:i] + noise + raw[i + len(noise):]
    if kind == "delete":
        return raw[:i] + raw[j:]
    return raw[:j] + raw[i:]


@st.composite
def damaged_text(draw, text: str) -> str:
    """A text file with one field replaced, one line deleted or duplicated, or cut short."""
    lines = text.splitlines()
    kind = draw(st.sampled_from(["field", "delete", "duplicate", "truncate"]))
    n = draw(st.integers(0, len(lines) - 1))
    if kind == "field":
        fields = lines[n].split(",")
        f = draw(st.integers(0, len(fields) - 1))
        fields[f] = draw(st.sampled_from(TOKENS))
        lines[n] = ",".join(fields)
    elif kind == "delete":
        del lines[n]
    elif kind == "duplicate":
        lines.insert(n, lines[n])
    else:
        return text[: draw(st.integers(0, len(text)))]
    return "\n".join(lines) + "\n"


def _damage_onnx(draw, model) -> None:
    """One semantic change to the ModelProto: a NaN weight, a wrong shape, a dropped initializer, another
    opset, another input shape, an unknown operator, a dropped output."""
    kind = draw(st.sampled_from(["nan", "dims", "drop_init", "opset", "input", "op", "output"]))
    g = model.graph
    if kind == "nan":
        from onnx import numpy_helper

        t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        arr = numpy_helper.to_array(t).copy()
        arr.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == "dims":
        t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        d = draw(st.integers(0, len(t.dims) - 1))
        t.dims[d] = draw(st.sampled_from([0, 1, 7, 10**5, 10**9]))
    elif kind == "drop_init":
        del g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
    elif kind == "opset":
        model.opset_import[0].version = draw(st.integers(0, 40))
    elif kind == "input":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from([0, 2, 9, 10**6, 10**9]))
    elif kind == "op":
        g.node[draw(st.integers(0, len(g.node) - 1))].op_type = draw(st.sampled_from(["Softmax", "Foo", "Loop", ""]))
    else:
        del g.output[:]


# -- .nnet ---------------------------------------------------------------------------------------------

@FUZZ
@given(net=random_mlps(), data=st.data())
def test_fuzz_nnet_text(net, data, capsys):
    with _folder() as d:
        good = save_nnet(net, d / "good.nnet")
        bad = d / "bad.nnet"
        bad.write_text(data.draw(damaged_text(good.read_text())))
        _loads_or_refuses(load_nnet, bad)
        _convert_exits_cleanly(bad, d, capsys)


@FUZZ
@given(text=st.text(alphabet="0123456789,.-e\n /naif", max_size=300))
def test_fuzz_nnet_random_text(text):
    with _folder() as d:
        p = d / "random.nnet"
        p.write_text(text)
        _loads_or_refuses(load_nnet, p)


@ROUND_TRIP
@given(net=random_mlps(), data=st.data())
def test_random_nnet_round_trips(net, data):
    n_in = net[1].in_features
    header = data.draw(nnet_headers(n_in))
    with _folder() as d:
        first = load_nnet(save_nnet(net, d / "a.nnet", meta=header))
        second = load_nnet(save_nnet(first, d / "b.nnet"))
        assert second.nnmend_meta["nnet"] == header
        for p, q, r in zip(net.parameters(), first.parameters(), second.parameters()):
            assert torch.equal(p, q) and torch.equal(q, r)
        x = torch.randn(5, n_in, generator=torch.Generator().manual_seed(0))
        assert torch.equal(net(x), second(x))


# -- ONNX ----------------------------------------------------------------------------------------------

@FUZZ
@given(model=onnx_graphs(), data=st.data())
def test_fuzz_onnx_graphs(model, data, capsys):
    damage = data.draw(st.sampled_from(["none", "semantic", "semantic", "bytes"]))
    raw = model.SerializeToString()
    if damage == "semantic":
        _damage_onnx(data.draw, model)
        raw = model.SerializeToString()
    elif damage == "bytes":
        raw = data.draw(damaged_bytes(raw))
    with _folder() as d:
        p = d / "net.onnx"
        p.write_bytes(raw)
        outcome = _loads_or_refuses(load_onnx, p)
        if damage == "none":
            assert outcome == "loaded"
        _convert_exits_cleanly(p, d, capsys)


@ROUND_TRIP
@given(model=onnx_graphs())
def test_random_onnx_round_trips(model):
    with _folder() as d:
        p = d / "net.onnx"
        p.write_bytes(model.SerializeToString())
        first = load_onnx(p)
        shape = first.nnmend_input_shape
        diff, scale = onnx_max_abs_diff(first, p, shape, n=8)
        assert diff <= 1e-5 * max(1.0, scale)
        second = load_onnx(save_onnx(first, d / "copy.onnx"))
        x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.allclose(first(x), second(x), atol=1e-6, rtol=1e-6)


# -- checkpoints ---------------------------------------------------------------------------------------

def _payload_damage(draw, payload: dict) -> None:
    spec = json.loads(payload["spec"])
    state = payload["state_dict"]
    kind = draw(st.sampled_from(["size", "type", "drop_state", "reshape", "dtype", "meta", "spec_text", "nan"]))
    linears = [c for _, c in spec["children"] if c["type"] == "Linear"]
    key = draw(st.sampled_from(sorted(state)))
    if kind == "size":
        lin = draw(st.sampled_from(linears))
        lin["args"][draw(st.sampled_from(["in_features", "out_features"]))] = draw(
            st.sampled_from([-3, 0, 1, 9, 10**5, 10**12]))
    elif kind == "type":
        spec["children"][0][1]["type"] = draw(st.sampled_from(["Conv2d", "nnmend.Nope", "builtins.eval", 5]))
    elif kind == "drop_state":
        del state[key]
    elif kind == "reshape":
        state[key] = state[key].reshape(-1)[: max(state[key].numel() - 1, 0)]
    elif kind == "dtype":
        state[key] = draw(st.sampled_from([state[key].to(torch.int64), state[key].to(torch.complex64),
                                           state[key].to(torch.bool), state[key].double()]))
    elif kind == "meta":
        payload["meta"] = draw(st.sampled_from(["[]", "null", "{", json.dumps({"input_shape": "x"}), 7]))
    elif kind == "spec_text":
        payload["spec"] = draw(st.sampled_from(["", "[]", "{}", "null", "{\"type\": 3}", b"bytes"]))
        return
    else:
        state[key] = state[key].clone().fill_(float("nan"))
    payload["spec"] = json.dumps(spec)


@FUZZ
@given(net=random_mlps(), data=st.data())
def test_fuzz_checkpoints(net, data, capsys):
    with _folder() as d:
        good = save_checkpoint(net, d / "good.pt")
        bad = d / "bad.pt"
        if data.draw(st.booleans()):
            payload = torch.load(good, weights_only=True)
            _payload_damage(data.draw, payload)
            torch.save(payload, bad)
        else:
            bad.write_bytes(data.draw(damaged_bytes(good.read_bytes())))
        _loads_or_refuses(load_network, bad)
        _convert_exits_cleanly(bad, d, capsys)


# -- data files ----------------------------------------------------------------------------------------

DTYPES = [np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, np.str_]


@st.composite
def arrays(draw, max_rows: int = 6):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, max_rows), min_size=0, max_size=3)))
    values = draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 255.0, -1.0, np.nan, np.inf]))
    if dtype is np.str_:
        return np.full(shape, "a")
    with np.errstate(invalid="ignore"):
        return np.full(shape, values).astype(dtype)


@st.composite
def valid_arrays(draw):
    """``(x, y)`` as a dataset file holds them: N samples of D features (or 28x28 images), labels 0-9."""
    n, dim = draw(st.integers(1, 5)), draw(st.sampled_from([3, 784, (28, 28)]))
    shape = (n, *dim) if isinstance(dim, tuple) else (n, dim)
    scale = draw(st.sampled_from([1.0, 255.0]))
    x = np.full(shape, draw(st.floats(0, 1)) * scale, dtype=draw(st.sampled_from([np.float32, np.float64])))
    if scale == 255.0 and draw(st.booleans()):
        x = x.astype(np.uint8)
    return x, np.arange(n) % 10


@FUZZ
@given(pair=valid_arrays(), data=st.data())
def test_fuzz_npz_valid_and_damaged(pair, data):
    with _folder() as d:
        p = d / "data.npz"
        np.savez(p, x=pair[0], y=pair[1])
        damaged = data.draw(st.booleans())
        if damaged:
            p.write_bytes(data.draw(damaged_bytes(p.read_bytes())))
        outcome = _loads_or_refuses(load_dataset, p)
        if not damaged:
            assert outcome == "loaded"
            ds = load_dataset(p)
            assert ds.x.shape[0] == len(pair[1]) and torch.equal(ds.y, torch.from_numpy(pair[1]))


@FUZZ
@given(x=arrays(), y=arrays(), keys=st.sampled_from([("x", "y"), ("images", "labels"), ("x_train", "y_train"),
                                                     ("x", "z")]), data=st.data())
def test_fuzz_npz(x, y, keys, data):
    with _folder() as d:
        p = d / "data.npz"
        np.savez(p, **{keys[0]: x, keys[1]: y})
        if data.draw(st.booleans()):
            p.write_bytes(data.draw(damaged_bytes(p.read_bytes())))
        if _loads_or_refuses(load_dataset, p) == "loaded":
            ds = load_dataset(p)
            assert len(ds) > 0 and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
            assert torch.isfinite(ds.x).all() and 0 <= ds.x.min() and ds.x.max() <= 1
