"""SHNN (paper 000) Table XIII, Sign-MNIST rows: structural and adversarial self-healing, 3 seeds.

The same grid, protocols and code as ``benchmarks/shnn.py`` (imported, not copied) on the paper's third
data set: Sign Language MNIST (27,455 train / 7,172 test greyscale 28×28 hands, 24 letters; labels 0–24
with 9 = J absent, so the MLP has 25 outputs, one never trained on). SHNN MLP 784-256-128-64-25, Adam,
10 epochs, batch 128; every layer × {zero, gaussian} structural damage, and {FGSM, PGD} × {original,
current} adversarial healing.

    python benchmarks/shnn_sign_mnist.py            # full grid -> benchmarks/results/shnn_sign_mnist.{json,md}
    python benchmarks/shnn_sign_mnist.py --quick    # one seed, a few cells (the test suite runs this)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent / "src"))

import shnn  # noqa: E402  (benchmarks/shnn.py: the grid, jobs and tables)
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.errors import DataError  # noqa: E402

DATASET = "sign-mnist"
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign_mnist"


def _load(name, split="train", **kw):
    """``load_dataset``, with Sign-MNIST read from the shared data root (or its ``.npz`` files by path)."""
    if name != DATASET:
        return load_dataset(name, split, **kw)
    try:
        return load_dataset(name, split, root=DATA_DIR.parent, **kw)
    except (DataError, TypeError):   # a library without the name (or without root=): read the files by path
        return load_dataset(DATA_DIR / f"sign_mnist_{split}.npz", split, **kw)


shnn.load_dataset = _load  # shnn.data() loads through this name


def markdown(recs_s: list[dict], recs_a: list[dict], seeds: list[int], quick: bool) -> str:
    n_train, n_test = (len(d) for d in shnn.data(DATASET, quick))
    md = shnn.markdown(recs_s, recs_a, [DATASET], seeds, quick, n_test)
    return md + (
        "\n## Deviations from the paper\n\n"
        f"- Data: Kaggle Sign Language MNIST, the official split ({n_train} train / {n_test} test images); the "
        "paper does not state its split (SHNN's code splits its `.mat` 80/20). 24 letters, labels 0–24 with J (9) "
        "absent, so the output layer has 25 units.\n"
        "- Same network, training and attack settings as the MNIST / Fashion-MNIST rows (`benchmarks/shnn.py`): "
        "FGSM ε = 0.15, PGD ε = 0.2, α = 0.01, 30 steps; CPU (2 shared cores).\n"
        "- The paper's *pre-damage* column differs per row (separately trained models); ours is the same "
        "trained model per seed for every row.\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    add_out_arg(ap, ROOT / "results")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--skip-adversarial", action="store_true", help="structural rows only")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    seeds = [0] if a.quick else list(range(a.seeds))
    jobs_s, jobs_a = shnn.grid([DATASET], seeds, a.quick)
    recs_s = run_jobs(shnn.structural_job, jobs_s, desc="structural")
    recs_a = [] if a.skip_adversarial else run_jobs(shnn.adversarial_job, jobs_a, desc="adversarial")
    md = markdown(recs_s, recs_a, seeds, a.quick)
    if a.skip_adversarial:
        md += "- Adversarial rows (FGSM, PGD) not run in this file (`--skip-adversarial`).\n"
    name = "shnn_sign_mnist_quick" if a.quick else "shnn_sign_mnist"
    paper = {f"{k[0]}/{k[1]}": list(v) for k, v in shnn.PAPER_XIII.items() if k[0] == DATASET}
    jp, mp = write_results(name, recs_s + recs_a, md, a.out, started=t0,
                           extra={"quick": a.quick, "seeds": seeds, "datasets": [DATASET], "paper_table_xiii": paper,
                                  "skip_adversarial": a.skip_adversarial})
    print(md)
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
