"""Quick runs of the CIFAR-10 / Sign-MNIST benchmarks (issue 21): each writes its results and tables."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign_mnist"
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def _run(script: str, out: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(not SIGN.is_dir(), reason=f"{SIGN} missing (Sign-MNIST)")
def test_shnn_sign_mnist_quick(tmp_path):
    _run("shnn_sign_mnist.py", tmp_path)
    res = json.loads((tmp_path / "shnn_sign_mnist_quick.json").read_text())
    recs = res["records"]
    assert res["datasets"] == ["sign-mnist"] and res["seconds"] > 0
    structural = [r for r in recs if r["kind"] in ("zero", "gaussian")]
    assert len(structural) == 2 and all(r["dataset"] == "sign-mnist" for r in recs)
    assert all(r["localized_layer"] == r["layer"] for r in structural)
    assert all(r["healed_accuracy"] > r["damaged_accuracy"] for r in structural)
    adv = [r for r in recs if r["kind"] == "FGSM"]
    assert len(adv) == 1 and 0 <= adv[0]["replay_accuracy_100"] <= 1
    md = (tmp_path / "shnn_sign_mnist_quick.md").read_text()
    assert "784-256-128-64-25" in md and "| sign-mnist | zero | 94.3 | 4.2 | 86.9 |" in md
    assert "Table XII (MNIST)" not in md


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"{CIFAR} missing (CIFAR-10)")
def test_nnrepair_cifar_quick(tmp_path):
    _run("nnrepair_cifar.py", tmp_path)
    res = json.loads((tmp_path / "nnrepair_cifar_quick.json").read_text())
    recs = res["records"]
    assert [(r["scenario"], r["layer"]) for r in recs] == [("poisoned", "last"), ("accuracy", "intermediate")]
    for r in recs:
        assert r["experts_built"] >= 1 and len(r["solver_seconds_per_expert"]) == r["experts_built"]
        assert set(r["scores"]["original"]) >= {"test"} and r["attack_n"] == 50
    assert "p_test" in recs[0]["scores"]["original"]
    # the committed models: the paper's CNN trained on all 20,000 shipped images with crop + flip (not a stand-in)
    clean = res["meta"]["models"]["clean"]
    assert clean["recipe"]["train_images"] == 20_000 and clean["recipe"]["augment"] == "crop2+flip"
    assert clean["test_accuracy"] >= 0.65 and recs[1]["scores"]["original"]["test"] > 55
    md = (tmp_path / "nnrepair_cifar_quick.md").read_text()
    assert "CIFAR-10 rows" in md and "+3.77" in md and "Solve time per expert" in md
    assert "random 2-pixel crop + horizontal flip" in md and "on 20000 images" in md


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"{CIFAR} missing (CIFAR-10 and the VNN-COMP CIFAR ResNets)")
def test_patchpro_cifar_quick(tmp_path):
    _run("patchpro_cifar.py", tmp_path)
    res = json.loads((tmp_path / "patchpro_cifar_quick.json").read_text())
    recs = res["records"]
    assert [r.get("error") for r in recs] == [None, None]
    assert [r["feature_box"] for r in recs] == ["sound CROWN bounds", "empirical (not a proof)"]
    for r in recs:
        assert r["n"] == 5 and all(0 <= r[k] <= 100 for k in ("RSR", "RGR", "DSR", "DGSR_paper", "DGSR_deployable"))
    md = (tmp_path / "patchpro_cifar_quick.md").read_text()
    assert "NOT a proof" in md and "ResNet18" in md and "| 4/255 | 5 | sound CROWN bounds | yes (sound bounds) |" in md


def test_cifar_recipe_records_the_crop_size_and_names_it():
    """The cached recipe says which crop trained the CNN (a 2-pixel crop never reuses a 4-pixel checkpoint)
    and the table says it in words."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _cifar
    import nnrepair_cifar
    from nnmend.data import Dataset

    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.rand(16, 3, 32, 32, generator=g), torch.arange(16) % 10, "cifar10", "train", _cifar.CLASSES)
    bases = [_cifar.trained_cnn("clean", data, data, epochs=1, cache=False, augment=True, crop_pad=p) for p in (2, 4)]
    metas = [m for _, m in bases]
    assert [m["recipe"]["augment"] for m in metas] == ["crop2+flip", "crop4+flip"]
    assert metas[0]["recipe"] != metas[1]["recipe"]
    # a fine-tune's recipe names its base's: a retrained clean model never reuses a stale BadNets checkpoint
    tuned = [_cifar.trained_cnn("poisoned", data, data, epochs=0, cache=False, base=n)[1]["recipe"] for n, _ in bases]
    assert [t["base"] for t in tuned] == [m["recipe"] for m in metas] and tuned[0] != tuned[1]
    assert "random 2-pixel crop + horizontal flip" in nnrepair_cifar._recipe_text(metas[0])
    plain = _cifar.trained_cnn("clean", data, data, epochs=1, cache=False)[1]
    assert "augment" not in plain["recipe"] and "no augmentation" in nnrepair_cifar._recipe_text(plain)
