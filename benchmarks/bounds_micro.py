"""Bounds micro-benchmark (issue 24): IBP, CROWN and alpha-CROWN (presets fast and tight) beside auto_LiRPA 0.3.

Cases (the issue's four plus a CIFAR ResNet): PatchPro's MNIST CNN_small (100 boxes, L∞ eps 0.05 around test
images), ACAS Xu N1,1 (100 boxes of half-width 0.05 around uniform points of the normalised domain), SHNN's MNIST
MLP (10 boxes, eps 0.05), a 784-256x4-10 MLP (random weights, seed 0; 1,000 boxes, eps 0.01), and VNN-COMP 2021's
cifar10_resnet_2021 resnet_2b (its four property boxes, read from the shared VNN-LIB files). Each (case, method)
runs ours and auto_LiRPA alternately in the same process (one torch thread each): time per call (median of up to
5 calls, fewer when a call is slow, the count recorded), mean width of the output bounds, peak resident memory
above the process's level before the call. Then the growth exponent of CROWN's time with depth, width and the
number of boxes (log-log slope over random MLPs).

    python benchmarks/bounds_micro.py              # the full run (tens of minutes on a shared 2-core CPU)
    python benchmarks/bounds_micro.py --quick      # small cases, one call each (the tests run this)
    python benchmarks/bounds_micro.py --device cuda   # the same on a GPU (untested: no GPU was available)
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from _lirpa import load_auto_lirpa  # noqa: E402
from nnmend.acasxu import acasxu  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.bounds import bound  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.nets import mlp, pretrained  # noqa: E402

VNNCOMP = ROOT.parent.parent / "shared" / "data" / "vnncomp" / "cifar10_resnet_2021"
OURS = {"IBP": ("ibp", {}), "CROWN": ("crown", {}), "alpha-CROWN fast": ("alpha-crown", {"preset": "fast"}),
        "alpha-CROWN tight": ("alpha-crown", {"preset": "tight"})}
# auto_LiRPA's CROWN-optimized (its defaults: 20 steps of 0.5, decay 0.98) stands beside both presets
LIRPA = {"IBP": "IBP", "CROWN": "backward", "alpha-CROWN fast": "CROWN-optimized", "alpha-CROWN tight": "CROWN-optimized"}
# (case, boxes, eps, methods); auto_LiRPA's alpha-CROWN is run where the issue compares it (minutes per call elsewhere)
FULL = [("acasxu_1_1", 100, 0.05, list(OURS)),
        ("shnn_mlp", 10, 0.05, list(OURS)),
        ("mnist_cnn_small", 100, 0.05, ["IBP", "CROWN", "alpha-CROWN fast"]),
        ("mlp_784_256x4", 1000, 0.01, ["IBP", "CROWN"]),
        ("cifar_resnet_2b", 4, None, ["IBP", "CROWN", "alpha-CROWN fast"])]
QUICK = [("mnist_cnn_small", 4, 0.05, ["IBP", "CROWN", "alpha-CROWN fast"]),
         ("acasxu_1_1", 4, 0.05, list(OURS)),
         ("shnn_mlp", 2, 0.05, ["IBP", "CROWN", "alpha-CROWN fast"])]
LIRPA_ALPHA = {"acasxu_1_1", "shnn_mlp"}     # auto_LiRPA's CROWN-optimized: measured once, on the tight row


def _auto_lirpa():
    """auto_LiRPA 0.3 with the shim, or None (the benchmark then reports ours only)."""
    try:
        return load_auto_lirpa()
    except ImportError:
        return None


def _case(name: str, n: int, eps: float | None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if name in ("mnist_cnn_small", "shnn_mlp"):
        net = pretrained("cnn_small" if name == "mnist_cnn_small" else "shnn_mlp_mnist").eval()
        x = load_dataset("mnist", "test", limit=n).x
        x = x.reshape(n, 1, 28, 28) if name == "mnist_cnn_small" else x.reshape(n, -1)
        return net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    if name == "acasxu_1_1":
        x = torch.rand((n, 5), generator=g) - 0.5
        return acasxu(1, 1).eval(), x - eps, x + eps
    if name.startswith("mlp_"):
        depth, width = _mlp_shape(name)
        torch.manual_seed(0)
        net = mlp([784] + [width] * depth + [10]).eval()
        x = torch.rand((n, 784), generator=g)
        return net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    if name == "cifar_resnet_2b":
        from nnmend.io import load_network
        from nnmend.io.vnnlib import read_vnnlib
        net = load_network(VNNCOMP / "onnx" / "resnet_2b.onnx").eval()
        boxes = [read_vnnlib(p).boxes() for p in sorted((VNNCOMP / "vnnlib").glob("*.vnnlib"))[:n]]
        lo = torch.cat([b[0] for b in boxes]).float().reshape(-1, 3, 32, 32)
        hi = torch.cat([b[1] for b in boxes]).float().reshape(-1, 3, 32, 32)
        return net, lo, hi
    raise ValueError(name)


def _mlp_shape(name: str) -> tuple[int, int]:
    """``mlp_784_{width}x{depth}`` -> (depth, width)."""
    w, d = name.split("_")[2].split("x")
    return int(d), int(w)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class _Peak:
    """Peak resident memory above the level at entry, sampled every 5 ms (torch's CPU allocations are not
    seen by tracemalloc); on CUDA the allocator's own peak."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        self.base = _rss()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss() - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._t.join()
            self.peak = max(self.peak, _rss() - self.base)


def _call(fn, device: str) -> tuple[float, int, tuple[torch.Tensor, torch.Tensor]]:
    with _Peak(device) as pk:
        t = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        sec = time.perf_counter() - t
    return sec, pk.peak, out


def one_case(case: str, n: int, eps: float | None, method: str, repeats: int, budget_s: float,
             device: str = "cpu", lirpa_alpha: bool = True) -> dict:
    """Ours and auto_LiRPA alternately on one case: up to ``repeats`` calls each, stopping once ``budget_s``
    seconds have gone to one tool's calls (at least one call each)."""
    torch.set_num_threads(1)
    net, lo, hi = _case(case, n, eps)
    net, lo, hi = net.to(device), lo.to(device), hi.to(device)
    name, opts = OURS[method]
    lirpa = _auto_lirpa() if (lirpa_alpha or not method.startswith("alpha")) else None
    bm = bx = None
    if lirpa is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bm = lirpa.BoundedModule(net, torch.zeros(1, *lo.shape[1:], device=device), device=device,
                                     bound_opts={"sparse_features_alpha": False})
            bx = lirpa.BoundedTensor((lo + hi) / 2, lirpa.PerturbationLpNorm(x_L=lo, x_U=hi))
    ours, theirs = [], []
    # IBP and CROWN rows: both tools under torch.no_grad() (bounds only, no autograd graph kept); alpha-CROWN
    # needs gradients for its slopes
    grad = torch.enable_grad() if method.startswith("alpha") else torch.no_grad()
    for _ in range(repeats):
        if not ours or sum(r[0] for r in ours) < budget_s:
            with grad:
                ours.append(_call(lambda: bound(net, lo, hi, method=name, **opts), device))
        if bm is not None and (not theirs or sum(r[0] for r in theirs) < budget_s):
            with warnings.catch_warnings(), grad:
                warnings.simplefilter("ignore")
                theirs.append(_call(lambda: bm.compute_bounds(x=(bx,), method=LIRPA[method]), device))
    rec = _summary(ours, "")
    if theirs:
        rec.update(_summary(theirs, "lirpa_"))
    return rec


def _summary(calls: list, prefix: str) -> dict:
    lb, ub = calls[-1][2]
    return {f"{prefix}seconds": statistics.median(c[0] for c in calls), f"{prefix}calls": len(calls),
            f"{prefix}mean_width": float((ub - lb).detach().mean()), f"{prefix}peak_mb": max(c[1] for c in calls) / 2 ** 20}


def growth(axis: str, values: list[int], repeats: int) -> dict:
    """CROWN's time on random 784-input MLPs as one of depth / width / boxes grows; ours and auto_LiRPA's."""
    lirpa = _auto_lirpa()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"ours": [], "lirpa": []}
    for v in values:
        depth, width, n = {"depth": (v, 128, 32), "width": (4, v, 32), "boxes": (4, 128, v)}[axis]
        net, lo, hi = _case(f"mlp_784_{width}x{depth}", n, 0.01)
        t = [_call(lambda: bound(net, lo, hi, method="crown"), "cpu")[0] for _ in range(repeats)]
        times["ours"].append(statistics.median(t))
        if lirpa is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bm = lirpa.BoundedModule(net, torch.zeros(1, 784), device="cpu")
                bx = lirpa.BoundedTensor((lo + hi) / 2, lirpa.PerturbationLpNorm(x_L=lo, x_U=hi))
                t = [_call(lambda: bm.compute_bounds(x=(bx,), method="backward"), "cpu")[0] for _ in range(repeats)]
            times["lirpa"].append(statistics.median(t))
    rec = {"values": values, "ours_seconds": times["ours"], "ours_exponent": _slope(values, times["ours"])}
    if times["lirpa"]:
        rec.update({"lirpa_seconds": times["lirpa"], "lirpa_exponent": _slope(values, times["lirpa"])})
    return rec


def _slope(x: list[int], y: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(v) for v in x], [math.log(max(v, 1e-9)) for v in y]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def markdown(records: list[dict], growths: list[dict], lirpa_ok: bool, device: str) -> str:
    lines = ["# Bounds micro-benchmark (issue 24)", "",
             f"Device: {device}. One torch thread; ours and auto_LiRPA 0.3 called alternately in the same process on the "
             "same boxes. **The 2-core machine was shared with other engineers' jobs (load 5-15) during the run: "
             "absolute times are inflated and noisy; compare the two tools within a row.** Time = median of the "
             "calls (count in brackets; up to 5, fewer once 20 s had gone to one tool's calls on the row). Width = mean of ub - lb over boxes and "
             "outputs. Peak = resident memory above the level before the call (MB). IBP and CROWN rows: both tools "
             "called under torch.no_grad() (bounds only). alpha-CROWN fast: output "
             "slopes, 20 steps; tight: also the intermediate bounds' slopes, up to 100 steps with early stop. "
             "auto_LiRPA's CROWN-optimized (its defaults: 20 steps) is measured once per case, on the tight row."
             + ("" if lirpa_ok else " auto_LiRPA not importable: ours only."),
             "", "| case | boxes | method | ours s | ours width | ours peak MB | auto_LiRPA s | auto_LiRPA width | "
             "auto_LiRPA peak MB | time ratio (ours/theirs) |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['n']} | {r['method']} | error: {r['error'][:80]} | | | | | | |")
            continue
        ours = f"{r['seconds']:.3f} ({r['calls']}) | {r['mean_width']:.4g} | {r['peak_mb']:.0f}"
        if "lirpa_seconds" in r:
            la = (f"{r['lirpa_seconds']:.3f} ({r['lirpa_calls']}) | {r['lirpa_mean_width']:.4g} | {r['lirpa_peak_mb']:.0f} | "
                  f"{r['seconds'] / r['lirpa_seconds']:.2f}")
        else:
            la = "– | – | – | –"
        lines.append(f"| {r['case']} | {r['n']} | {r['method']} | {ours} | {la} |")
    if growths:
        lines += ["", "Growth of CROWN's time (random 784-input MLPs; base: depth 4, width 128, 32 boxes): exponent "
                  "b of time ∝ size^b, least squares on log-log.", "",
                  "| axis | values | ours s | ours b | auto_LiRPA s | auto_LiRPA b |", "|---|---|---|---:|---|---:|"]
        for g in growths:
            fmt = (lambda v: ", ".join(f"{t:.3f}" for t in v))
            la = f"{fmt(g['lirpa_seconds'])} | {g['lirpa_exponent']:.2f}" if "lirpa_seconds" in g else "– | –"
            lines.append(f"| {g['axis']} | {g['values']} | {fmt(g['ours_seconds'])} | {g['ours_exponent']:.2f} | {la} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda (untested here: no GPU)")
    add_out_arg(ap, ROOT / "results", "--results-dir")
    ap.add_argument("--cases", nargs="*", help="only these cases (default all)")
    ap.add_argument("--no-growth", action="store_true", help="skip the growth-exponent runs")
    args = ap.parse_args()
    cases = QUICK if args.quick else [c for c in FULL if c[0] != "cifar_resnet_2b" or VNNCOMP.exists()]
    cases = [c for c in cases if not args.cases or c[0] in args.cases]
    # up to 5 calls, fewer once 20 s went to one tool's calls on that row (the shared machine ran 10-20 jobs)
    repeats, budget = (1, 0.0) if args.quick else (5, 20.0)
    # quick (the test suite): no auto_LiRPA alpha-CROWN, whose loop can take minutes on a loaded machine
    jobs = [{"case": c, "n": n, "eps": e, "method": m, "repeats": repeats, "budget_s": budget, "device": args.device,
             "lirpa_alpha": not args.quick and c in LIRPA_ALPHA and m == "alpha-CROWN tight"}
            for c, n, e, ms in cases for m in ms]
    gjobs = [] if args.quick or args.no_growth or args.device != "cpu" else [
        {"axis": "depth", "values": [2, 4, 8], "repeats": 3}, {"axis": "width", "values": [64, 128, 256], "repeats": 3},
        {"axis": "boxes", "values": [16, 64, 256], "repeats": 3}]
    name = "bounds_micro_quick" if args.quick else ("bounds_micro" if args.device == "cpu" else f"bounds_micro_{args.device}")
    started = time.perf_counter()
    records: list[dict] = []
    growths: list[dict] = []
    # one job at a time, the results rewritten after each (a run cut short still leaves what it measured)
    for i, job in enumerate(jobs + gjobs):
        if i < len(jobs):
            records += run_jobs(one_case, [job], desc=f"{job['case']} {job['method']}", keep_going=not args.quick)
        else:
            growths += run_jobs(growth, [job], desc=f"growth {job['axis']}")
        md = markdown(records, growths, _auto_lirpa() is not None, args.device)
        write_results(name, records, md, args.out, started=started,
                      extra={"quick": args.quick, "seed": 0, "device": args.device, "growth": growths,
                             "complete": i == len(jobs) + len(gjobs) - 1})
    print(md)


if __name__ == "__main__":
    main()
