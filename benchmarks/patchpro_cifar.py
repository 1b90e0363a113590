"""PatchPro (paper 002) Table IV stand-in: feature-space patches on a pre-trained CIFAR-10 ResNet.

Network: ``resnet_2b`` of VNN-COMP 2021's ``cifar10_resnet_2021`` (conv stem, two residual blocks,
Dense(100), Dense(10); adversarially trained by its authors, not by this project) with the CIFAR-10
normalisation put in front as a graph node, so that it takes pixels in [0, 1] and r is in pixel units.
It stands in for the paper's ResNet18 (a residual CIFAR network we did not train, small enough for CROWN
on a CPU); the paper's VGG19 has no stand-in (no pre-trained VGG here, and the CNN trained in
``nnrepair_cifar.py`` is too weak to mean anything).

Per cell (r, n, feature box): the PGD repair set (``nnmend.repair.repair_sets``) on CIFAR-10 training
images, PatchPro in feature space (cut before ``fc2``: patches read the 100 features after Dense(100)+ReLU;
linear patches, the MNIST artifact's training setting), with the feature boxes either **bounded soundly**
through the extractor (CROWN ∩ IBP: a proof) or the paper's **sampled min/max** (not a proof); then RSR,
RGR, DD on the test set, DSR and DGSR (paper protocol and deployable, shared code of
``patchpro_mnist.py``) under PGD, and time beside the paper's.

    python benchmarks/patchpro_cifar.py            # full run -> benchmarks/results/patchpro_cifar.{json,md}
    python benchmarks/patchpro_cifar.py --quick    # n = 5, small test set (the test suite runs this)
    python benchmarks/patchpro_cifar.py --radii 8 --out DIR              # some cells into DIR
    python benchmarks/patchpro_cifar.py --merge results/patchpro_cifar.json DIR/patchpro_cifar.json
                                                   # join runs (a later file's cell replaces an earlier one's)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import _cifar  # noqa: E402
from patchpro_mnist import _f, _pgd, adaptive, dgsr_paper_protocol  # noqa: E402  (shared DGSR protocols, cells)
from nnmend.benchmarking import run_jobs, write_results  # noqa: E402
from nnmend.data import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402
from nnmend.graph import GraphNetwork  # noqa: E402
from nnmend.io import load_network  # noqa: E402
from nnmend.layers import normalization  # noqa: E402
from nnmend.metrics import decisions, defense_generalization_rate, defense_success_rate, drawdown  # noqa: E402
from nnmend.metrics import repair_generalization_rate, repair_success_rate  # noqa: E402
from nnmend.repair.patchpro import PatchProConfig, repair  # noqa: E402
from nnmend.repair.repair_sets import build_repair_set  # noqa: E402

NET_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp" / "cifar10_resnet_2021" / "onnx" / "resnet_2b.onnx"
FEATURE_LAYER = "fc2"
# Paper 002, Table IV (CIFAR-10, PatchPro): RSR = RGR = DSR = 100, DD = 0 in every cell; DGSR and time (GPU).
PAPER = {"ResNet18": {"DGSR": 88.3, "time_s": (230, 5442)}, "VGG19": {"DGSR": 93.4, "time_s": (230, 5442)}}


@lru_cache(maxsize=1)
def network() -> GraphNetwork:
    """resnet_2b taking pixels in [0, 1]: a normalisation node feeds the ONNX graph's input."""
    net = load_network(NET_PATH).prepend("normalize", normalization(CIFAR10_MEAN, CIFAR10_STD)).eval()
    net.nnmend_input_shape = (3, 32, 32)
    return net


@lru_cache(maxsize=2)
def data(quick: bool, test_n: int | None = None):
    return _cifar.cifar10("train", 2000 if quick else None), _cifar.cifar10("test", 500 if quick else test_n)


@lru_cache(maxsize=4)
def repair_set(radius: float, n: int, steps: int, seed: int, quick: bool):
    """The cell's PGD repair set (seeded: every benchmark that calls this gets the same items)."""
    train, _ = data(quick)
    return build_repair_set(network(), train, n=n, radius=radius, start=0, steps=steps, seed=seed, chunk=64)


def fingerprint(x: torch.Tensor) -> str:
    """A short hash of a tensor's bytes: records of two runs name the same repair items when these agree."""
    return hashlib.sha1(x.detach().contiguous().float().numpy().tobytes()).hexdigest()[:12]


def one_cell(r255: int, n: int, box: str, steps: int, dsr_n: int, dgsr_n: int, seed: int, quick: bool,
             test_n: int | None = None) -> dict:
    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    radius = r255 / 255
    original = network()
    _, test = data(quick, test_n)
    rs = repair_set(radius, n, steps, seed, quick)
    cfg = PatchProConfig.mnist(feature_layer=FEATURE_LAYER, feature_box=box, bound_chunk=8, seed=seed,
                               max_epochs=5 if quick else 25)
    t0 = time.perf_counter()
    res = repair(original, rs, cfg)
    seconds = time.perf_counter() - t0
    rn = res.network
    rec = {"r": radius, "r255": r255, "n": n, "feature_box": res.details.get("feature_box"),
           "proved_by_method": res.details.get("proved_by_method"), "verified": res.verified,
           "recheck": res.details.get("recheck"), "seconds": round(seconds, 1), "epochs": res.details.get("epochs"),
           "repair_set_seconds": rs.stats["seconds"], "candidates_attacked": rs.stats["candidates_attacked"],
           "repair_set_sha1": fingerprint(rs.repair_x),
           "RSR": repair_success_rate(rn, rs.repair_x, rs.labels),
           "RGR": repair_generalization_rate(rn, rs.test_x, rs.test_y),
           "DD": drawdown(original, rn, test.x, test.y), "test_n": len(test),
           "original_test_accuracy": 100.0 * float((decisions(original, test.x) == test.y).float().mean())}
    t1 = time.perf_counter()
    m = min(n, dsr_n)
    rec["DSR"] = defense_success_rate(rn, rs.origins[:m], rs.labels[:m], radius, attack=_pgd)
    xt, yt = test.x[:dgsr_n], test.y[:dgsr_n]
    rec["DGSR_paper"] = dgsr_paper_protocol(rn, original, xt, yt, radius, attack=_pgd)
    rec["DGSR_deployable"] = defense_generalization_rate(rn, original, xt, yt, radius, attack=adaptive(_pgd, original))
    rec["DGSR_original"] = defense_generalization_rate(original, original, xt, yt, radius, attack=_pgd)
    rec.update(dsr_n=m, dgsr_n=dgsr_n, attack_seconds=round(time.perf_counter() - t1, 1),
               host_load_1min=[round(load0, 2), round(os.getloadavg()[0], 2)])
    return rec


def markdown(records: list[dict], quick: bool, total: float) -> str:
    """The table; the run's settings (steps, DSR/DGSR sizes, grid) are read from the records, so that a merged
    table states each one that occurs."""
    ok = [r for r in records if "error" not in r]
    each = lambda key: ", ".join(str(v) for v in sorted({r[key] for r in ok}))  # noqa: E731
    loads = [v for r in ok for v in r.get("host_load_1min", [])]
    out = [f"# PatchPro on CIFAR-10 — Table IV stand-in{' (QUICK smoke run)' if quick else ''}", "",
           f"{len(records)} cells, {total:.0f} s in all on a shared 2-core CPU (often heavily loaded by other sessions), 1 torch thread (paper: "
           "RTX 3090). Paper (Table IV, VGG19 and ResNet18, r = 4/255 and 8/255, n = 50 … 1000): RSR = RGR = DSR = 100, "
           f"DD = 0, DGSR {PAPER['VGG19']['DGSR']} (VGG19) / {PAPER['ResNet18']['DGSR']} (ResNet18), 230–5442 s.", "",
           "**Network.** `resnet_2b` (VNN-COMP 2021 `cifar10_resnet_2021`: conv stem, 2 residual blocks, Dense 100, "
           "Dense 10; adversarially trained by its authors) with CIFAR-10 normalisation as its first node, so inputs "
           "and r are in pixels. It stands in for **ResNet18**: a residual CIFAR-10 network that nobody on this project "
           "trained, small enough for CROWN on a CPU. **VGG19 has no stand-in**: no pre-trained VGG is at hand, and the "
           "CNN trained in `nnrepair_cifar.py` (67.6 % test accuracy on the 20,000 shipped images) is too weak to stand for one.", "",
           f"**Feature space.** Cut before `{FEATURE_LAYER}`: the patches (linear, one per property, MNIST artifact "
           "training: Adam lr 10, ≤ 25 epochs) read the 100 features after Dense(100)+ReLU. Feature boxes: "
           "**sound** = CROWN ∩ IBP bounds of the extractor over each input box — a proof for the whole network; "
           "**empirical** = the paper's min/max of sampled features — **NOT a proof** (the box may miss features the "
           "region reaches).", "",
           "**Which numbers a deployed model gets:** RSR, RGR, DD, DSR and *DGSR deployable*. *DGSR paper protocol* "
           "fixes each test input's patches from its clean input while attacking, which no deployment can do.", "",
           "| r | n | feature box | proof? | proved by method | RSR % | RGR % | DD pp | time s | DSR % | "
           "DGSR paper prot. % | DGSR deployable % | DGSR original % |",
           "|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "error" in r:
            out.append(f"| {r.get('r255')}/255 | {r.get('n')} | {r.get('box')} | error: {r['error'][:80]} |" + " |" * 9)
            continue
        proof = "no (empirical)" if "empirical" in str(r["feature_box"]) else "yes (sound bounds)"
        out.append(f"| {r['r255']}/255 | {r['n']} | {r['feature_box']} | {proof} | {r['proved_by_method']} | "
                   f"{_f(r['RSR'])} | {_f(r['RGR'])} | {_f(r['DD'], 2)} | {r['seconds']:.1f} | {_f(r['DSR'])} | "
                   f"{_f(r['DGSR_paper'])} | {_f(r['DGSR_deployable'])} | {_f(r['DGSR_original'])} |")
    if ok:
        r0 = ok[0]
        out += ["", "## Deviations", "",
                f"- DD on the first {r0['test_n']} CIFAR-10 test images (original accuracy there "
                f"{r0['original_test_accuracy']:.2f} %).",
                f"- Repair sets: PGD ({each('steps')} steps, α = 2/255; paper ≥ 200) from the 20,000 shipped training "
                "images, 10 held-out adversarial samples per origin (RGR).",
                f"- DSR on up to {each('dsr_n')} origins and DGSR on the first {each('dgsr_n')} test images (those the original "
                "gets right count), both under PGD-20 with a random start (AutoAttack, the paper's, was out of the CPU "
                "budget).",
                f"- Only n = {each('n')} and r = {', '.join(f'{x}/255' for x in sorted({r['r255'] for r in ok}))} of "
                "the paper's grid (n = 50 … 1000, r = 4/255, 8/255), for the CPU budget.",
                *([f"- Host: 1-minute load {min(loads):.1f}–{max(loads):.1f} at the cells' starts and ends (recorded "
                   "for the cells that have it)."] if loads else []), ""]
    return "\n".join(out)


def merge(paths: list[Path], out: Path) -> tuple[Path, Path]:
    """One table from several runs: cells keyed by (r, n, box), later files win; rows sorted by r, n, box."""
    parts = [json.loads(p.read_text()) for p in paths]
    cells: dict[tuple, dict] = {}
    for part in parts:
        for r in part["records"]:
            cells[(r.get("r255"), r.get("n"), r.get("box"))] = {**r, "run_date": part["environment"]["date"]}
    boxes = ["bounds", "empirical"]
    records = [cells[k] for k in sorted(cells, key=lambda k: (k[0], k[1], boxes.index(k[2]) if k[2] in boxes else 9))]
    total = sum(r.get("job_seconds", 0.0) for r in records)
    md = markdown(records, False, total).replace(" cells,", f" cells (joined from {len(parts)} runs),", 1)
    extra = {k: v for k, v in parts[0].items() if k not in ("benchmark", "environment", "records", "seconds")}
    return write_results("patchpro_cifar", records, md, out,
                         extra={**extra, "planned": len(records), "merged_from": [str(p) for p in paths],
                                "seconds": round(total, 1)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--radii", nargs="+", type=int, default=[4], help="r in units of 1/255")
    ap.add_argument("--ns", nargs="+", type=int, default=[50])
    ap.add_argument("--boxes", nargs="+", default=["bounds", "empirical"])
    ap.add_argument("--steps", type=int, default=50, help="PGD steps of the repair set")
    ap.add_argument("--dsr-n", type=int, default=50)
    ap.add_argument("--dgsr-n", type=int, default=100)
    ap.add_argument("--test-n", type=int, default=None, help="first N test images for DD (default: all 10,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                    help="join these results files into OUT/patchpro_cifar.{json,md} (nothing is run); a cell "
                         "(r, n, box) of a later file replaces an earlier one's")
    args = ap.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(1)
    if args.quick:
        args.radii, args.ns, args.steps, args.dsr_n, args.dgsr_n = [4], [5], 30, 5, 20
    t0 = time.perf_counter()
    jobs = [dict(r255=r, n=n, box=b, steps=args.steps, dsr_n=args.dsr_n, dgsr_n=args.dgsr_n, seed=args.seed,
                 quick=args.quick, test_n=args.test_n) for r in args.radii for n in args.ns for b in args.boxes]
    name = "patchpro_cifar_quick" if args.quick else "patchpro_cifar"
    records: list[dict] = []
    for job in jobs:   # results rewritten after every cell: an interrupted run leaves a labelled partial table
        records += run_jobs(one_cell, [job], desc=f"patchpro cifar {job['box']}", keep_going=True)
        md = markdown(records, args.quick, time.perf_counter() - t0)
        if len(records) < len(jobs):
            md = md.replace(" cells,", f" of {len(jobs)} planned cells (run interrupted or in progress),", 1)
        jp, mp = write_results(name, records, md, args.out, started=t0,
                               extra={"quick": args.quick, "seed": args.seed, "network": str(NET_PATH),
                                      "feature_layer": FEATURE_LAYER, "paper": PAPER, "planned": len(jobs)})
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
