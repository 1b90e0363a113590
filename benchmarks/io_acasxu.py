"""Fidelity and speed of nnmend's readers on ACAS Xu: ONNX vs onnxruntime, .nnet vs ONNX, VNN-LIB parsing.

For each of the 45 networks: the time to load the ONNX file and the .nnet file, the largest
|torch - onnxruntime| and |nnet - onnx| output difference on inputs drawn uniformly from the normalised
input domain [-0.5, 0.5]^5, and the largest weight difference between the two files. For each of the
10 properties: parse time, regions and unsafe cases. Writes benchmarks/results/io_acasxu.{json,md}.

    python benchmarks/io_acasxu.py            # all 45 networks, 1000 inputs each
    python benchmarks/io_acasxu.py --quick    # 5 networks, 50 inputs (the test suite runs this)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.acasxu import acasxu_path, acasxu_properties  # noqa: E402
from nnmend.io.nnet import load_nnet  # noqa: E402
from nnmend.io.onnx import load_onnx, onnx_max_abs_diff  # noqa: E402
from nnmend.io.vnnlib import read_vnnlib  # noqa: E402
from nnmend.report import environment  # noqa: E402

SHARED_NNET = Path(__file__).resolve().parents[2] / "shared" / "data" / "acasxu" / "nnet"
# From the project's data notes: ONNX vs a numpy forward pass of the .nnet weights, 20 inputs per network.
REFERENCE_NNET_VS_ONNX = 1.0e-6


def nnet_path(i: int, j: int) -> Path | None:
    name = f"ACASXU_run2a_{i}_{j}_batch_2000.nnet"
    for folder in (SHARED_NNET, acasxu_path(1, 1).parent.parent / "nnet"):
        if (folder / name).exists():
            return folder / name
    return None


def network_job(i: int, j: int, n: int, seed: int) -> dict:
    """One network: load times and the largest differences (plain arguments in, a plain record out)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 1, 5, generator=gen) - 0.5
    t = time.perf_counter()
    net = load_onnx(acasxu_path(i, j))
    rec = {"network": f"{i}_{j}", "onnx_load_ms": 1e3 * (time.perf_counter() - t)}
    rec["max_abs_diff_vs_onnxruntime"], rec["max_abs_output"] = onnx_max_abs_diff(net, acasxu_path(i, j), (1, 1, 5), x=x)
    path = nnet_path(i, j)
    if path is not None:
        t = time.perf_counter()
        nnet = load_nnet(path)
        rec["nnet_load_ms"] = 1e3 * (time.perf_counter() - t)
        with torch.no_grad():
            rec["max_abs_diff_nnet_vs_onnx"] = float((nnet(x.view(n, 5)) - net(x)).abs().max())
        rec["max_weight_diff_nnet_vs_onnx"] = max(float((p - q).abs().max()) for p, q in zip(nnet.state_dict().values(), net.state_dict().values()))
    return rec


def property_job(k: int, path: Path) -> dict:
    t = time.perf_counter()
    spec = read_vnnlib(path, 5, 5)
    return {"property": k, "parse_ms": 1e3 * (time.perf_counter() - t), "regions": len(spec.regions),
            "unsafe_cases": [len(r.unsafe) for r in spec.regions],
            "rows_per_case": [int(A.shape[0]) for A, _ in spec.regions[0].unsafe]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 networks, 50 inputs each")
    ap.add_argument("--seed", type=int, default=0)
    add_out_arg(ap, ROOT / "results")
    args = ap.parse_args(argv)
    n = 50 if args.quick else 1000
    grid = [(i, j) for i in range(1, 6) for j in range(1, 10)]
    if args.quick:
        grid = grid[::11]
    start = time.perf_counter()
    nets = run_jobs(network_job, [dict(i=i, j=j, n=n, seed=args.seed + 100 * i + j) for i, j in grid],
                    desc="ACAS Xu networks")
    props = [property_job(k, p) for k, p in acasxu_properties().items()]
    with_nnet = [r for r in nets if "max_abs_diff_nnet_vs_onnx" in r]
    summary = {
        "networks": len(nets), "inputs_per_network": n,
        "max_abs_diff_vs_onnxruntime": max(r["max_abs_diff_vs_onnxruntime"] for r in nets),
        "networks_with_nnet": len(with_nnet),
        "max_abs_diff_nnet_vs_onnx": max((r["max_abs_diff_nnet_vs_onnx"] for r in with_nnet), default=None),
        "max_weight_diff_nnet_vs_onnx": max((r["max_weight_diff_nnet_vs_onnx"] for r in with_nnet), default=None),
        "median_onnx_load_ms": float(np.median([r["onnx_load_ms"] for r in nets])),
        "median_nnet_load_ms": float(np.median([r["nnet_load_ms"] for r in with_nnet])) if with_nnet else None,
        "max_property_parse_ms": max(p["parse_ms"] for p in props),
    }
    import onnx
    import onnxruntime

    result = {"quick": args.quick, "seed": args.seed, "summary": summary, "properties": props,
              "seconds": time.perf_counter() - start, "environment": environment(),
              "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}}
    write_results("io_acasxu", nets, markdown(result), args.out,
                  extra={k: v for k, v in result.items() if k != "environment"}, started=start)
    print(markdown(result))
    return {**result, "records": nets}


def markdown(r: dict) -> str:
    s = r["summary"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2g}"  # noqa: E731
    lines = [
        f"# io_acasxu{' (quick)' if r['quick'] else ''}: reader fidelity on ACAS Xu",
        "",
        f"{s['networks']} networks × {s['inputs_per_network']} inputs uniform in [-0.5, 0.5]^5 (seed {r['seed']}); "
        f"{r['seconds']:.1f} s on {r['environment']['platform']}, torch {r['environment']['torch']}, "
        f"onnxruntime {r['versions']['onnxruntime']}.",
        "",
        "| quantity | ours | reference |",
        "|---|---:|---:|",
        f"| max abs diff, load_onnx vs onnxruntime | {fmt(s['max_abs_diff_vs_onnxruntime'])} | ≤ 1e-5 required |",
        f"| max abs diff, load_nnet vs load_onnx ({s['networks_with_nnet']} networks) | "
        f"{fmt(s['max_abs_diff_nnet_vs_onnx'])} | {REFERENCE_NNET_VS_ONNX:.1g} (data notes, numpy vs onnxruntime) |",
        f"| max weight diff, .nnet vs .onnx | {fmt(s['max_weight_diff_nnet_vs_onnx'])} | |",
        f"| median load time, ONNX / .nnet (ms) | {s['median_onnx_load_ms']:.1f} / "
        f"{fmt(s['median_nnet_load_ms'])} | |",
        f"| slowest property parse (ms) | {s['max_property_parse_ms']:.2f} | |",
        "",
        "| property | regions | unsafe cases per region | rows per case |",
        "|---|---:|---|---|",
    ]
    lines += [f"| prop_{p['property']} | {p['regions']} | {p['unsafe_cases']} | {p['rows_per_case']} |" for p in r["properties"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
