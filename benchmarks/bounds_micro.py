"""Bounds micro-benchmark: IBP, CROWN and alpha-CROWN on the SHNN MNIST MLP (784-256-128-64-10, the
bundled trained checkpoint) and on ACAS Xu N1,1, beside auto_LiRPA 0.3 on the same boxes where it loads.

Cases: L∞ balls of eps = 0.01 and 0.05 around MNIST test images (clipped to [0, 1]); for ACAS Xu,
boxes of half-width 0.01 and 0.05 around uniform points of the normalised input domain. Reported: time
per box (batch of boxes / batch size, median of repeats) and the mean width of the output bounds.

    python benchmarks/bounds_micro.py            # 64 MNIST images, 64 ACAS Xu boxes, 3 repeats
    python benchmarks/bounds_micro.py --quick    # 8 and 8, 1 repeat (the tests run this)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from _lirpa import load_auto_lirpa  # noqa: E402
from nnmend.acasxu import acasxu  # noqa: E402
from nnmend.benchmarking import run_jobs, write_results  # noqa: E402
from nnmend.bounds import bound  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.nets import pretrained  # noqa: E402

ALPHA_ITERS = 20
OURS = {"IBP": ("ibp", {}), "CROWN": ("crown", {}), "alpha-CROWN": ("alpha-crown", {"iters": ALPHA_ITERS})}
LIRPA = {"IBP": ("IBP", {}), "CROWN": ("backward", {}), "alpha-CROWN": ("CROWN-optimized", {})}


def _auto_lirpa():
    """auto_LiRPA 0.3 with the shim, or None (the benchmark then reports ours only)."""
    try:
        return load_auto_lirpa()
    except ImportError:
        return None


def _case(model: str, eps: float, n: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if model == "shnn_mlp":
        net = pretrained("shnn_mlp_mnist").eval()
        x = load_dataset("mnist", "test", limit=n).x
        return net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    net = acasxu(1, 1).eval()
    x = torch.rand((n, 5), generator=g) - 0.5
    return net, x - eps, x + eps


def _timed(fn, repeats: int) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def one_case(model: str, eps: float, method: str, n: int, repeats: int, threads: int = 2, lirpa_alpha: bool = True) -> dict:
    torch.set_num_threads(threads)
    net, lo, hi = _case(model, eps, n)
    name, opts = OURS[method]
    sec, (lb, ub) = _timed(lambda: bound(net, lo, hi, method=name, **opts), repeats)
    rec = {"ms_per_box": 1000 * sec / n, "mean_width": float((ub - lb).detach().mean()), "boxes": n}
    lirpa = _auto_lirpa()
    if lirpa is not None and (lirpa_alpha or method != "alpha-CROWN"):
        lname, lopts = LIRPA[method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bm = lirpa.BoundedModule(net, torch.zeros(1, *lo.shape[1:]), device="cpu",
                                     bound_opts={"sparse_features_alpha": False, "optimize_bound_args": {"iteration": ALPHA_ITERS}})
            bx = lirpa.BoundedTensor((lo + hi) / 2, lirpa.PerturbationLpNorm(x_L=lo, x_U=hi))
            lsec, (llb, lub) = _timed(lambda: bm.compute_bounds(x=(bx,), method=lname), repeats)
        rec.update({"lirpa_ms_per_box": 1000 * lsec / n, "lirpa_mean_width": float((lub - llb).mean())})
    return rec


def markdown(records: list[dict], lirpa_ok: bool) -> str:
    lines = ["# Bounds micro-benchmark", "",
             f"Time per box = wall time of one batched call / number of boxes (median of repeats, {torch.get_num_threads()} torch thread(s), "
             f"shared 2-core CPU). Width = mean of ub - lb over boxes and outputs. alpha-CROWN: {ALPHA_ITERS} Adam steps. "
             + ("auto_LiRPA 0.3 (with the test shim) on the same boxes beside ours." if lirpa_ok else "auto_LiRPA not importable: ours only."),
             "", "| network | eps | method | ours ms/box | ours width | auto_LiRPA ms/box | auto_LiRPA width |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in records:
        la = f"{r['lirpa_ms_per_box']:.3f} | {r['lirpa_mean_width']:.4g}" if "lirpa_ms_per_box" in r else "– | –"
        lines.append(f"| {r['model']} | {r['eps']} | {r['method']} | {r['ms_per_box']:.3f} | {r['mean_width']:.4g} | {la} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--results-dir", default=str(ROOT / "results"))
    args = ap.parse_args()
    n, repeats = (4, 1) if args.quick else (32, 3)
    # quick (the test suite): one thread, and no auto_LiRPA alpha-CROWN, whose optimisation loop can take
    # minutes on a loaded 2-core machine
    jobs = [{"model": m, "eps": e, "method": k, "n": n, "repeats": repeats, "threads": 1 if args.quick else 2,
             "lirpa_alpha": not args.quick}
            for m in ("shnn_mlp", "acasxu_1_1") for e in (0.01, 0.05) for k in OURS]
    started = time.perf_counter()
    records = run_jobs(one_case, jobs, desc="bounds")
    name = "bounds_micro_quick" if args.quick else "bounds_micro"
    write_results(name, records, markdown(records, _auto_lirpa() is not None), args.results_dir,
                  extra={"quick": args.quick, "seed": 0}, started=started)
    print(markdown(records, _auto_lirpa() is not None))


if __name__ == "__main__":
    main()
