"""``nnmend convert IN OUT``: convert a network between ``.onnx``, ``.nnet`` and nnmend ``.pt`` / ``.safetensors``
checkpoints."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ModelError, NnmendError
from ._common import add_force_arg, check_outputs, reading

FORMATS = {".onnx": "ONNX", ".nnet": "NNet", ".pt": "nnmend checkpoint", ".pth": "nnmend checkpoint",
           ".safetensors": "nnmend checkpoint, safetensors"}


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,28,28") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape of positive sizes like 1,28,28")
    return dims


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert a network between .onnx, .nnet, .pt and .safetensors",
        description="Convert a network between ONNX (.onnx), the Reluplex/Marabou text format (.nnet, "
                    "Linear/ReLU MLPs only) and nnmend's weights-only checkpoints (.pt, .safetensors). The input file is "
                    "never modified; an ONNX output is checked against the network in onnxruntime.")
    p.add_argument("input", type=Path, help="network to read (.onnx, .nnet, .pt, .safetensors)")
    p.add_argument("output", type=Path, help="file to write (.onnx, .nnet, .pt, .safetensors)")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="per-sample input shape, e.g. 1,28,28 or 784 (needed for ONNX output when the "
                        "network does not record one, or for ONNX input with symbolic dimensions)")
    p.add_argument("--arch", default=None, help="architecture name for a plain state-dict .pt / .safetensors input")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime check of an ONNX output")
    add_force_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.checkpoint import load_checkpoint, save_checkpoint
    from ..io.nnet import load_nnet, save_nnet
    from ..io.onnx import load_onnx, save_onnx
    from ..io.safetensors_io import load_safetensors, save_safetensors
    from ..nets import count_parameters, named_layers

    src, dst = Path(args.input), Path(args.output)
    # a compressed input (.onnx.gz / .nnet.gz) is read by its inner suffix; outputs are written uncompressed
    src_suffix = Path(src.stem).suffix.lower() if src.suffix.lower() == ".gz" else src.suffix.lower()
    for path, role, suffix in ((src, "input", src_suffix), (dst, "output", dst.suffix.lower())):
        if suffix not in FORMATS or (role == "input" and src.suffix.lower() == ".gz" and suffix not in (".onnx", ".nnet")):
            raise NnmendError(f"{path}: unknown {role} format {path.suffix or '(no suffix)'!r}; "
                              f"use one of {', '.join(FORMATS)}" + (" (or .onnx.gz / .nnet.gz to read)"
                                                                    if role == "input" else ""))
    check_outputs({"INPUT": src}, {dst: "OUTPUT"}, args.force)

    kind = src_suffix
    with reading(src, ModelError):
        if kind == ".onnx":
            model = load_onnx(src, input_shape=args.input_shape)
        elif kind == ".nnet":
            model = load_nnet(src)
        elif kind == ".safetensors":
            model = load_safetensors(src, arch=args.arch).model
        else:
            model = load_checkpoint(src, arch=args.arch).model
    shape = args.input_shape or getattr(model, "nnmend_input_shape", None) or \
        (getattr(model, "nnmend_meta", None) or {}).get("input_shape")

    out_kind = dst.suffix.lower()
    if out_kind == ".onnx":
        if shape is None:
            raise ModelError(f"{src}: the network does not record its input shape; pass --input-shape (e.g. 1,28,28)")
        save_onnx(model, dst, input_shape=shape, check=not args.no_check)
    elif out_kind == ".nnet":
        save_nnet(model, dst)
    else:
        if shape is not None:
            model.nnmend_meta = {**(getattr(model, "nnmend_meta", None) or {}), "input_shape": list(shape)}
        (save_safetensors if out_kind == ".safetensors" else save_checkpoint)(model, dst)
    layers = named_layers(model)
    print(f"wrote {dst} ({FORMATS[out_kind]}): {len(layers)} weight layers, {count_parameters(model):,} parameters"
          + (f", input shape {tuple(shape)}" if shape else ""))
    return 0
