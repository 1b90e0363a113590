"""SHNN (paper 000) beyond the paper: damage → localise → heal on CIFAR-10 convolutional networks.

The paper localises damage only in MLPs (MNIST, Fashion-MNIST, Sign-MNIST). Here the same flow — the
library's :func:`nnmend.shnn.structural_scenario`, MAD per layer on the first 100 test images, threshold 0.1
— runs on two CIFAR-10 networks nobody tuned for it:

* ``cnn``: NNrepair's CIFAR CNN (4 conv + 2 dense layers) as trained by ``benchmarks/nnrepair_cifar.py``
  (cached in ``benchmarks/results/models/nnrepair_cifar_clean.pt``);
* ``resnet``: VNN-COMP 2022's ``sri_resnet_a`` (10 conv + 2 dense layers, residual blocks with batch norm,
  pre-trained by its authors), read from its ONNX file with CIFAR normalisation prepended so that it takes
  pixels in [0, 1].

Every weight layer × damage kind (zero, Gaussian re-initialisation σ = 0.1, sign flip, shuffle — the whole
layer, as the paper — and 10 % of the weights zeroed, scattered) × seed; the localisation confusion table
(true layer × localised layer) for the paper's rule ``first`` beside ``first_increase`` and ``peak``; and, for
seed 0 with zero / Gaussian damage, the structural patch (activation target) with accuracy before and after.

    python benchmarks/shnn_localisation.py            # full grid -> benchmarks/results/shnn_localisation.{json,md}
    python benchmarks/shnn_localisation.py --quick    # one network, two layers, one seed (the test suite runs this)
    python benchmarks/shnn_localisation.py --nets cnn --merge benchmarks/results/shnn_localisation.json
        # rerun one network's rows; the other network's rows are kept from the earlier results file
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import _cifar  # noqa: E402
from nnmend.benchmarking import run_jobs, write_results  # noqa: E402
from nnmend.data import CIFAR10_MEAN, CIFAR10_STD  # noqa: E402
from nnmend.diagnose import diagnose  # noqa: E402
from nnmend.faults import damage  # noqa: E402
from nnmend.io import load_network  # noqa: E402
from nnmend.layers import normalization  # noqa: E402
from nnmend.nets import named_layers  # noqa: E402
from nnmend.repair.patch_layer import PatchConfig  # noqa: E402
from nnmend.shnn import structural_scenario  # noqa: E402
from nnmend.train import accuracy  # noqa: E402

RESULTS = ROOT / "results"
VNNCOMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp"
RESNET = "sri_resnet_a_2022/onnx/resnet_3b2_bn_mixup_adv_4.0_bs128_lr-1.onnx"
CNN = _cifar.MODELS / "nnrepair_cifar_clean.pt"
# (kind, fraction): the paper's whole-layer faults, and a partial one (10 % of the weights, scattered)
FAULTS = (("zero", 1.0), ("gaussian", 1.0), ("sign", 1.0), ("shuffle", 1.0), ("zero", 0.1))
HEALED = (("zero", 1.0), ("gaussian", 1.0))
RULES = ("first", "first_increase", "peak")
PROBE = 100


def fault_name(kind: str, fraction: float) -> str:
    return kind if fraction >= 1.0 else f"{kind} {fraction:.0%}"


@functools.lru_cache(maxsize=2)
def network(name: str, vnncomp: str = str(VNNCOMP)) -> torch.nn.Module:
    if name == "cnn":
        if not CNN.exists():
            raise SystemExit(f"{CNN}: run benchmarks/nnrepair_cifar.py first (it trains and caches the CNN)")
        return load_network(CNN).eval()
    net = load_network(Path(vnncomp) / RESNET).prepend("normalize", normalization(CIFAR10_MEAN, CIFAR10_STD))
    return net.eval()


@functools.lru_cache(maxsize=2)
def data(quick: bool):
    return _cifar.cifar10("train", 2000 if quick else 10000), _cifar.cifar10("test", 500 if quick else 2000)


def layers(net: torch.nn.Module) -> list[str]:
    return [n for n in named_layers(net) if n != "normalize"]


def job(net_name: str, layer: str, kind: str, fraction: float, seed: int, heal: bool, quick: bool, vnncomp: str) -> dict:
    torch.set_num_threads(1)
    net = network(net_name, vnncomp)
    train, test = data(quick)
    rec: dict = {"fault": fault_name(kind, fraction)}
    if heal:
        cfg = PatchConfig(seed=seed, n_samples=1000 if quick else 5000, epochs=2 if quick else 5)
        row = structural_scenario(net, layer, kind, train, test, probe=PROBE, seed=seed, config=cfg)
        row.pop("healed_network")
        rec.update(clean=row["clean_accuracy"], damaged=row["damaged_accuracy"], healed=row["healed_accuracy"],
                   recovery=row["recovery"], heal_seconds=row["heal_seconds"], localized_first=row["localized_layer"])
    damaged, fault = damage(net, layer, kind, fraction=fraction, seed=seed)
    if not heal:
        rec.update(clean=_clean_accuracy(net_name, quick, vnncomp), damaged=accuracy(damaged, test))
    for rule in RULES:
        d = diagnose(net, damaged, test.x[:PROBE], metric="mad", rule=rule, threshold=0.1)
        rec[f"localized_{rule}"] = d.localized
        if rule == "first":
            rec["mad"] = {k: round(v, 5) for k, v in d.mad.items()}
    rec["n_changed"] = fault.n_changed
    return rec


@functools.lru_cache(maxsize=4)
def _clean_accuracy(net_name: str, quick: bool, vnncomp: str) -> float:
    return accuracy(network(net_name, vnncomp), data(quick)[1])


def grid(nets: list[str], seeds: list[int], quick: bool, vnncomp: str) -> list[dict]:
    jobs = []
    for name in nets:
        names = layers(network(name, vnncomp))
        if quick:
            names = [names[1], names[-2]]
        faults = FAULTS[:2] if quick else FAULTS
        for layer in names:
            for kind, fraction in faults:
                for seed in seeds:
                    heal = seed == seeds[0] and (kind, fraction) in HEALED and (not quick or layer == names[0])
                    jobs.append(dict(net_name=name, layer=layer, kind=kind, fraction=fraction, seed=seed, heal=heal,
                                     quick=quick, vnncomp=vnncomp))
    return jobs


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _share(v: float | None) -> str:
    return "–" if v is None or v != v else f"{v:.1f}"


def markdown(records: list[dict], nets: list[str], seeds: list[int], quick: bool, seconds: float, vnncomp: str,
             kept: str = "") -> str:
    """The tables; ``kept`` names rows carried over from an earlier run (``--merge``)."""
    out = ["# SHNN beyond the paper: damage localisation and healing on CIFAR-10 CNNs and a ResNet", ""]
    train, test = data(quick)
    out += [f"{'Quick run (subsets). ' if quick else ''}MAD per weight layer between the healthy and the damaged "
            f"network on the first {PROBE} test images, threshold 0.1; accuracy on the first {len(test)} CIFAR-10 "
            f"test images; patches trained on {min(len(train), 1000 if quick else 5000)} training images "
            f"(activation target). Seeds {seeds}; {seconds:.0f} s on a 2-core CPU{kept}. The paper (000) tried MLPs "
            "only: there is no paper column.", ""]
    for name in nets:
        recs = [r for r in records if r["net_name"] == name and "error" not in r]
        if not recs:
            continue
        names = layers(network(name, vnncomp))
        what = ("NNrepair's CIFAR CNN trained here" if name == "cnn" else
                "sri_resnet_a (VNN-COMP 2022, pre-trained by its authors; CIFAR normalisation prepended)")
        out += [f"## {name}: {what}", "", f"Clean accuracy {_pct(recs[0]['clean'])} %.", ""]
        out += ["**Localisation accuracy** (share of faults localised at the damaged layer; `none`: no layer above "
                "the threshold)", "", "| fault | " + " | ".join(f"rule {r}" for r in RULES) + " | none (first) |",
                "|---|" + "---|" * (len(RULES) + 1)]
        for fault in dict.fromkeys(r["fault"] for r in recs):
            rs = [r for r in recs if r["fault"] == fault]
            cells = [f"{sum(r[f'localized_{rule}'] == r['layer'] for r in rs)}/{len(rs)}" for rule in RULES]
            out.append(f"| {fault} | " + " | ".join(cells) + f" | {sum(r['localized_first'] is None for r in rs)} |")
        total = [f"{sum(r[f'localized_{rule}'] == r['layer'] for r in recs)}/{len(recs)}" for rule in RULES]
        out += ["| **all** | " + " | ".join(f"**{c}**" for c in total) + f" | {sum(r['localized_first'] is None for r in recs)} |", ""]
        cols = [n for n in names if any(r["localized_first"] == n for r in recs)] + ["none"]
        out += ["**Confusion, rule `first`** (rows: damaged layer; columns: localised layer; counts over faults × "
                "seeds)", "", "| damaged \\ localised | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for layer in names:
            c = Counter(r["localized_first"] or "none" for r in recs if r["layer"] == layer)
            if c:
                out.append(f"| {layer} | " + " | ".join(str(c.get(k, 0)) or "" for k in cols) + " |")
        out += ["", "**Damage and healing** (seed 0; accuracy %, structural patch at the localised layer)", "",
                "| layer | fault | damaged | localised | healed | recovery % | heal s |", "|---|---|---|---|---|---|---|"]
        for r in recs:
            if "healed" in r:
                out.append(f"| {r['layer']} | {r['fault']} | {_pct(r['damaged'])} | {r['localized_first'] or 'none'} | "
                           f"{_pct(r['healed'])} | {_share(r['recovery'])} | "
                           f"{r['heal_seconds']} |")
        out.append("")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one network, two layers, one seed")
    ap.add_argument("--nets", nargs="+", default=None, choices=["cnn", "resnet"])
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--vnncomp", default=str(VNNCOMP), help="the VNN-COMP instances folder (for the ResNet)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--merge", type=Path, default=None,
                    help="an earlier results .json: its rows of the networks not run now are kept")
    args = ap.parse_args(argv)
    nets = args.nets or (["resnet"] if args.quick else ["cnn", "resnet"])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    t0 = time.perf_counter()
    records = run_jobs(job, grid(nets, seeds, args.quick, args.vnncomp), desc="shnn localisation", keep_going=True)
    seconds, kept, extra = time.perf_counter() - t0, "", {"quick": args.quick, "nets": nets, "seeds": seeds}
    if args.merge:
        old = json.loads(args.merge.read_text())
        rows = [r for r in old["records"] if r["net_name"] not in nets]
        others = list(dict.fromkeys(r["net_name"] for r in rows))
        records, nets = records + rows, nets + others
        seconds += sum(r.get("job_seconds", 0.0) for r in rows)
        kept = (f" ({', '.join(others)} rows kept from the run of {old['environment']['date'][:16]}, their job "
                "seconds added)" if others else "")
        extra.update(nets=nets, merged_from=str(args.merge.name))
    extra["seconds"] = round(seconds, 1)
    name = "shnn_localisation" + ("_quick" if args.quick else "")
    md = markdown(records, nets, seeds, args.quick, seconds, args.vnncomp, kept)
    write_results(name, records, md, args.out, extra=extra)
    print(md)
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
