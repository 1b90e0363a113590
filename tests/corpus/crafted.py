"""A fixed corpus of crafted network and data files, one per class of hostile input (issue 20).

``build_corpus(folder)`` writes every file (deterministic, no randomness; about 1 MB in all) and returns
one :class:`Case` per file: which loader reads it and whether it must be accepted or refused. The test
suite (``tests/test_loaders_hardening.py``) runs every case each time; ``benchmarks/hardening_loaders.py``
runs them in subprocesses and measures peak memory. Run ``python tests/corpus/crafted.py DIR`` to look at
the files.

The compression bombs are sized against :data:`BOMB_BYTES` (decompressed size) and the cap that the
suite and the benchmark set (:data:`TEST_CAP_BYTES` via ``$NNMEND_MAX_ALLOC_BYTES``); they are refused by
the ``.gz`` ratio limit on any cap.
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEST_CAP_BYTES = 32 << 20  # the memory cap the hardening test and benchmark run under
BOMB_BYTES = 64 << 20      # what each compression bomb expands to (its .gz is ~65 KB)


PICKLE_MARKER = "pickle_code_ran.marker"  # created only if a loader ever runs the crafted pickle


@dataclass(frozen=True)
class Case:
    name: str       # file class, e.g. "nnet_wide_header"
    loader: str     # "network" (load_network), "dataset" (load_dataset), "state_dict" (load_checkpoint arch=...)
    path: Path
    expect: str     # "refused" or "accepted"
    what: str       # one line: what the file does


# -- helpers -----------------------------------------------------------------------------------------

def _nnet_text(sizes: list[int], *, ranges: list[float] | None = None, mins=None, maxs=None,
               weight: str = "0.5", rows: int | None = None) -> str:
    n_in = sizes[0]
    out = ["// crafted", f"{len(sizes) - 1},{n_in},{sizes[-1]},{max(sizes)},", ",".join(map(str, sizes)) + ",", "0,"]
    out.append(",".join(map(str, mins or [0.0] * n_in)) + ",")
    out.append(",".join(map(str, maxs or [1.0] * n_in)) + ",")
    out.append(",".join(["0.0"] * (n_in + 1)) + ",")
    out.append(",".join(map(str, ranges or [1.0] * (n_in + 1))) + ",")
    written = 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        for _ in range(b):
            if rows is not None and written >= rows:
                return "\n".join(out) + "\n"
            out.append(",".join([weight] * a) + ",")
            written += 1
        out += ["0.1,"] * b
    return "\n".join(out) + "\n"


def _onnx_mlp(path: Path, *, opset: int | None = 13, in_dims=(1, 3), weight=None, w_dims=None,
              nan_constant: bool = False, external: bool = False) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((3, 2), 0.5, np.float32) if weight is None else weight
    init = numpy_helper.from_array(w, "W")
    if w_dims is not None:  # a shape that the stored data does not hold
        del init.dims[:]
        init.dims.extend(w_dims)
    if external:
        init.data_location = TensorProto.EXTERNAL
        init.ClearField("raw_data")
        entry = init.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm")]
    inits = [init]
    out_name = "h"
    if nan_constant:
        c = numpy_helper.from_array(np.array([np.inf, 0.0], np.float32), "c_val")
        nodes += [helper.make_node("Constant", [], ["c"], name="bias_const", value=c),
                  helper.make_node("Add", ["h", "c"], ["y"], name="add")]
        out_name = "y"
    graph = helper.make_graph(nodes, "crafted", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_dims))],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [in_dims[0], 2])], inits)
    imports = [] if opset is None else [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=imports)
    if opset is None:
        del model.opset_import[:]
    model.ir_version = 7
    path.write_bytes(model.SerializeToString())
    return path


def _checkpoint(path: Path, spec, state: dict, meta="{}") -> Path:
    import torch

    from nnmend.io.checkpoint import FORMAT, VERSION

    payload = {"format": FORMAT, "version": VERSION, "spec": spec if isinstance(spec, str) else json.dumps(spec),
               "meta": meta, "state_dict": state}
    torch.save(payload, path)
    return path


def _linear_spec(n_in: int, n_out: int) -> dict:
    return {"type": "Sequential", "children": [["fc", {"type": "Linear", "args": {
        "in_features": n_in, "out_features": n_out, "bias": True}}]]}


def _small_state(n_in: int = 3, n_out: int = 2, fill: float = 0.5) -> dict:
    import torch

    return {"fc.weight": torch.full((n_out, n_in), fill), "fc.bias": torch.zeros(n_out)}


_BOMB: list[bytes] = []


def _gz_bomb(path: Path) -> Path:
    if not _BOMB:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as fh:
            chunk = b"0" * (1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                fh.write(chunk)
        _BOMB.append(buf.getvalue())
    path.write_bytes(_BOMB[0])
    return path


def _npz_declaring(path: Path, shape: tuple[int, ...], payload: bytes) -> Path:
    """An .npz whose ``x.npy`` header declares ``shape`` (float32) but holds ``payload``."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    from numpy.lib import format as npy_format

    npy_format.write_array_header_1_0(buf, header)
    y = io.BytesIO()
    np.save(y, np.zeros(shape[0] if shape[0] < 10 else 3))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + payload)
        zf.writestr("y.npy", y.getvalue())
    return path


class _Evil:
    """Unpickled by an unsafe loader, it creates the file ``marker`` (the test asserts it never appears)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- the corpus ----------------------------------------------------------------------------------------

def build_corpus(folder: str | Path) -> list[Case]:
    import torch

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, loader: str, path: Path, expect: str, what: str) -> None:
        cases.append(Case(name, loader, path, expect, what))

    # .nnet
    ok_nnet = d / "nnet_valid.nnet"
    ok_nnet.write_text(_nnet_text([3, 4, 2]))
    add("nnet_valid", "network", ok_nnet, "accepted", "a small valid MLP (control)")
    p = d / "nnet_wide_header.nnet"
    p.write_text(_nnet_text([3, 100000, 100000, 2], rows=0))
    add("nnet_wide_header", "network", p, "refused", "header declares 100000-wide layers, no weights (40 GB)")
    p = d / "nnet_zero_ranges.nnet"
    p.write_text(_nnet_text([3, 4, 2], ranges=[0.0] * 4))
    add("nnet_zero_ranges", "network", p, "refused", "all-zero normalisation ranges")
    p = d / "nnet_min_above_max.nnet"
    p.write_text(_nnet_text([3, 4, 2], mins=[2.0, 0.0, 0.0], maxs=[1.0, 1.0, 1.0]))
    add("nnet_min_above_max", "network", p, "refused", "an input minimum above its maximum")
    p = d / "nnet_truncated.nnet"
    p.write_text(_nnet_text([3, 4, 2], rows=2))
    add("nnet_truncated", "network", p, "refused", "ends in the middle of the first layer")
    p = d / "nnet_nan_weight.nnet"
    p.write_text(_nnet_text([3, 4, 2], weight="nan"))
    add("nnet_nan_weight", "network", p, "refused", "NaN weights")
    p = d / "nnet_not_numbers.nnet"
    p.write_text(_nnet_text([3, 4, 2], weight="abc"))
    add("nnet_not_numbers", "network", p, "refused", "weights that are not numbers")
    p = d / "nnet_binary.nnet"
    p.write_bytes(bytes(range(256)) * 4)
    add("nnet_binary", "network", p, "refused", "binary garbage, not UTF-8")
    add("nnet_gz_bomb", "network", _gz_bomb(d / "nnet_gz_bomb.nnet.gz"), "refused",
        f".nnet.gz expanding to {BOMB_BYTES >> 20} MB")
    p = d / "nnet_valid.nnet.gz"
    p.write_bytes(gzip.compress(ok_nnet.read_bytes()))
    add("nnet_gz_valid", "network", p, "accepted", "a valid .nnet.gz (control)")

    # ONNX
    add("onnx_valid", "network", _onnx_mlp(d / "onnx_valid.onnx"), "accepted", "a small valid MatMul (control)")
    p = d / "onnx_valid.onnx.gz"
    p.write_bytes(gzip.compress((d / "onnx_valid.onnx").read_bytes()))
    add("onnx_gz_valid", "network", p, "accepted", "a valid .onnx.gz goes to the ONNX loader (control)")
    add("onnx_huge_input", "network", _onnx_mlp(d / "onnx_huge_input.onnx", in_dims=(1, 1000, 1000, 1000)),
        "refused", "a 1 KB file declaring a 10^9-element input")
    add("onnx_nan_initializer", "network",
        _onnx_mlp(d / "onnx_nan_initializer.onnx", weight=np.array([[np.nan, 0], [0, 0], [0, 0]], np.float32)),
        "refused", "a NaN weight in an initializer")
    add("onnx_inf_constant", "network", _onnx_mlp(d / "onnx_inf_constant.onnx", nan_constant=True),
        "refused", "an Inf in a Constant node")
    for opset in (1, 99, 1000):
        add(f"onnx_opset_{opset}", "network", _onnx_mlp(d / f"onnx_opset_{opset}.onnx", opset=opset),
            "refused", f"opset {opset}")
    add("onnx_no_opset", "network", _onnx_mlp(d / "onnx_no_opset.onnx", opset=None), "refused", "no opset import")
    add("onnx_lying_initializer", "network",
        _onnx_mlp(d / "onnx_lying_initializer.onnx", w_dims=[100000, 100000]),
        "refused", "an initializer declaring 100000x100000 but holding 6 values")
    add("onnx_external_data", "network", _onnx_mlp(d / "onnx_external_data.onnx", external=True),
        "refused", "an initializer pointing at an external file")
    p = d / "onnx_truncated.onnx"
    p.write_bytes((d / "onnx_valid.onnx").read_bytes()[:60])
    add("onnx_truncated", "network", p, "refused", "the first 60 bytes of a valid file")
    p = d / "onnx_empty.onnx"
    p.write_bytes(b"")
    add("onnx_empty", "network", p, "refused", "an empty file")
    add("onnx_gz_bomb", "network", _gz_bomb(d / "onnx_gz_bomb.onnx.gz"), "refused",
        f".onnx.gz expanding to {BOMB_BYTES >> 20} MB")

    # checkpoints
    add("pt_valid", "network", _checkpoint(d / "pt_valid.pt", _linear_spec(3, 2), _small_state()), "accepted",
        "a small valid checkpoint (control)")
    p = d / "pt_empty.pt"
    p.write_bytes(b"")
    add("pt_empty", "network", p, "refused", "an empty .pt")
    p = d / "pt_truncated.pt"
    p.write_bytes((d / "pt_valid.pt").read_bytes()[:700])
    add("pt_truncated", "network", p, "refused", "the first 700 bytes of a valid checkpoint")
    add("pt_huge_spec", "network", _checkpoint(d / "pt_huge_spec.pt", _linear_spec(100000, 100000), _small_state()),
        "refused", "a spec declaring Linear(100000, 100000) beside 3x2 weights (40 GB)")
    add("pt_wrong_shapes", "network", _checkpoint(d / "pt_wrong_shapes.pt", _linear_spec(5, 2), _small_state()),
        "refused", "weights of another shape than the spec")
    add("pt_nan_weights", "network",
        _checkpoint(d / "pt_nan_weights.pt", _linear_spec(3, 2), _small_state(fill=float("nan"))),
        "refused", "NaN weights")
    add("pt_deep_spec", "network", _checkpoint(d / "pt_deep_spec.pt", _deep_json(5000), {}), "refused",
        "a spec nested 5000 deep")
    add("pt_spec_not_json", "network", _checkpoint(d / "pt_spec_not_json.pt", "{not json", _small_state()),
        "refused", "a spec that is not JSON")
    add("pt_spec_not_text", "network", _checkpoint(d / "pt_spec_not_text.pt", "[]", _small_state(), meta="[1]"),
        "refused", "spec and meta that are not JSON objects")
    add("pt_negative_size", "network", _checkpoint(d / "pt_negative_size.pt", _linear_spec(-1, 2), _small_state()),
        "refused", "Linear(-1, 2)")
    add("pt_unknown_type", "network",
        _checkpoint(d / "pt_unknown_type.pt", {"type": "os.system", "args": {}}, {}), "refused",
        "a module type outside the registry")
    p = d / "pt_pickle_code.pt"
    torch.save({"state_dict": _Evil(d / PICKLE_MARKER)}, p)
    add("pt_pickle_code", "network", p, "refused", "a pickle that calls a function when loaded")
    p = d / "pt_plain_pickle.pt"
    p.write_bytes(pickle.dumps({"a": 1}))
    add("pt_plain_pickle", "network", p, "refused", "a plain pickle, not a torch file")
    add("pt_zip_bomb", "network", _zip_bomb(d / "pt_zip_bomb.pt"), "refused",
        f"a zip whose entry expands to {BOMB_BYTES >> 20} MB")
    p = d / "pt_other_arch.pt"
    torch.save({"fc1.weight": torch.zeros(7, 5), "fc1.bias": torch.zeros(7)}, p)
    add("pt_other_arch", "state_dict", p, "refused", "a plain state dict for another architecture (arch=shnn_mlp)")
    p = d / "pt_other_widths.pt"
    widths = [(16, 784), (8, 16), (8, 8), (10, 8)]  # shnn_mlp's layer names, other widths
    torch.save({k: torch.zeros(shape if k.endswith("weight") else shape[:1])
                for i, shape in enumerate(widths, start=1) for k in (f"fc{i}.weight", f"fc{i}.bias")}, p)
    add("pt_other_widths", "state_dict", p, "refused", "shnn_mlp's layer names with other widths (arch=shnn_mlp)")
    p = d / "pt_tensor_values.pt"
    _checkpoint(p, _linear_spec(3, 2), {"fc.weight": [[1.0, 2.0, 3.0]] * 2, "fc.bias": [0.0, 0.0]})
    add("pt_list_weights", "network", p, "refused", "weights stored as lists, not tensors")

    # data files
    ok = d / "npz_valid.npz"
    np.savez(ok, x=np.linspace(0, 1, 3 * 784, dtype=np.float32).reshape(3, 784), y=np.array([0, 1, 2]))
    add("npz_valid", "dataset", ok, "accepted", "three MNIST-sized samples (control)")
    p = d / "npz_truncated.npz"
    p.write_bytes(ok.read_bytes()[: len(ok.read_bytes()) // 2])
    add("npz_truncated", "dataset", p, "refused", "half of a valid .npz (BadZipFile)")
    p = d / "npz_corrupt_entry.npz"
    raw = bytearray(ok.read_bytes())
    raw[60:80] = b"\xff" * 20
    p.write_bytes(bytes(raw))
    add("npz_corrupt_entry", "dataset", p, "refused", "bytes overwritten inside an entry")
    p = d / "npz_empty.npz"
    np.savez(p, x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
    add("npz_zero_samples", "dataset", p, "refused", "0 samples")
    p = d / "npz_object.npz"
    np.savez(p, x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    add("npz_object", "dataset", p, "refused", "an object array (would need pickle)")
    p = d / "npz_strings.npz"
    np.savez(p, x=np.array([["a", "b"]] * 3), y=np.zeros(3))
    add("npz_strings", "dataset", p, "refused", "string inputs")
    p = d / "npz_scalar.npz"
    np.savez(p, x=np.float32(1.0), y=np.zeros(1))
    add("npz_scalar", "dataset", p, "refused", "a 0-d input array")
    p = d / "npz_nan_labels.npz"
    np.savez(p, x=np.zeros((3, 4), np.float32), y=np.array([0.0, np.nan, np.inf]))
    add("npz_nan_labels", "dataset", p, "refused", "NaN and Inf labels")
    add("npz_huge_header", "dataset", _npz_declaring(d / "npz_huge_header.npz", (1000000000, 784), b"\0" * 64),
        "refused", "an x.npy header declaring 10^9 x 784 floats over 64 bytes")
    p = d / "npz_is_npy.npz"
    np.save(p.with_suffix(".npy"), np.zeros(3))
    p.with_suffix(".npy").rename(p)
    add("npz_is_npy", "dataset", p, "refused", "a single .npy renamed .npz")
    p = d / "mat_one_sample.mat"
    from scipy.io import savemat

    savemat(p, {"data": np.zeros((784, 1)), "label": np.zeros(1)})
    add("mat_one_sample", "dataset", p, "refused", "a .mat with one sample (no 80/20 split)")
    p = d / "bomb-images-idx3-ubyte.gz"
    _gz_bomb(p)
    lbl = d / "bomb-labels-idx1-ubyte.gz"
    lbl.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 8, 1, 1) + b"\0"))
    add("idx_gz_bomb", "dataset", p, "refused", f"IDX images .gz expanding to {BOMB_BYTES >> 20} MB")

    # .safetensors (the same spec and checks as .pt, in the file's metadata)
    add("safetensors_valid", "network", _safetensors(d / "safetensors_valid.safetensors", _linear_spec(3, 2),
                                                     _small_state()), "accepted", "a small valid checkpoint (control)")
    p = d / "safetensors_header_overrun.safetensors"
    p.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    add("safetensors_header_overrun", "network", p, "refused", "a header length of 2^60 bytes over a 2-byte header")
    p = d / "safetensors_deep_header.safetensors"
    header = b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"
    p.write_bytes(struct.pack("<Q", len(header)) + header)
    add("safetensors_deep_header", "network", p, "refused", "a header nested 100000 brackets deep")
    add("safetensors_huge_spec", "network", _safetensors(d / "safetensors_huge_spec.safetensors",
                                                         _linear_spec(10**6, 10**6), _small_state()),
        "refused", "a spec declaring a 10^6 x 10^6 Linear over a 3 x 2 tensor")
    add("safetensors_plain", "network", _safetensors(d / "safetensors_plain.safetensors", None, _small_state()),
        "refused", "a plain state dict without metadata (needs arch=)")
    return cases


def _safetensors(path: Path, spec, state: dict) -> Path:
    from safetensors.torch import save_file

    from nnmend.io.checkpoint import FORMAT, VERSION

    meta = None if spec is None else {"format": FORMAT, "version": str(VERSION), "spec": json.dumps(spec), "meta": "{}"}
    save_file(state, str(path), metadata=meta)
    return path


def _deep_json(depth: int) -> str:
    return '{"type": "Sequential", "children": [["m", ' * depth + '{"type": "Identity"}' + "]]}" * depth


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            chunk = b"\0" * (1 << 20)
            for _ in range(BOMB_BYTES >> 20):
                fh.write(chunk)
    return path


if __name__ == "__main__":
    for case in build_corpus(sys.argv[1] if len(sys.argv) > 1 else "corpus_files"):
        print(f"{case.expect:9s} {case.loader:10s} {case.path.stat().st_size:>9,d} B  {case.name}: {case.what}")
