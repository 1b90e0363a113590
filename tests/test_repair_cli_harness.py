"""``nnmend repair`` through the harness: verdict first, config options from the registry, --keep-failed."""
from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net  # noqa: E402

from nnmend.cli import main as cli_main  # noqa: E402
from nnmend.cli.repair import METHODS, overrides  # noqa: E402
from nnmend.errors import NnmendError  # noqa: E402
from nnmend.io import save_network  # noqa: E402
from nnmend.repair import methods  # noqa: E402

torch.set_num_threads(1)
TINY = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 0.5))
(assert (>= X_1 0.0))
(assert (<= X_1 0.5))
(assert (<= Y_0 Y_1))
"""


def test_every_registered_method_is_a_choice_and_options_come_from_its_config():
    assert set(methods()) <= set(METHODS)
    assert overrides(Namespace(option=["lr=0.01", "edit_layers=fc1,fc2", "fallback=none"]), "prorepair") == \
        {"lr": 0.01, "edit_layers": ("fc1", "fc2"), "fallback": None}
    assert overrides(Namespace(option=["feature_layer=fc7", "patch_hidden=10,10", "refine=yes"]), "patchpro") == \
        {"feature_layer": "fc7", "patch_hidden": (10, 10), "refine": True}
    with pytest.raises(NnmendError, match="prorepair's lr takes float"):
        overrides(Namespace(option=["lr=fast"]), "prorepair")
    with pytest.raises(NnmendError, match="KEY one of margin, band"):
        overrides(Namespace(option=["nope=1"]), "guard")


def test_cli_guard_prints_the_verdict_first_and_applies_options(tmp_path, capsys):
    save_network(tiny_net(), tmp_path / "tiny.pt")
    (tmp_path / "tiny.vnnlib").write_text(TINY)
    out = tmp_path / "g.pt"
    argv = ["repair", str(tmp_path / "tiny.pt"), "--method", "guard", "--external", "none", "--property", str(tmp_path / "tiny.vnnlib"),
            "--domain-lo=0,0", "--domain-hi=1,1", "--option", "margin=0.001", "--option", "check_first=0", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("OK: guard: property falsified → verified on the saved network")
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["config"]["margin"] == 0.001 and report["success"] is True and report["verified"] is True
    assert report["units"]["fdd"] == "%" and report["certificate"]["status"] == "verified"
    assert cli_main(argv[:-2] + ["--option", "margin=-1", "--out", str(tmp_path / "bad.pt")]) == 2
    assert "margin" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()
    assert cli_main(["repair", str(tmp_path / "tiny.pt"), "--method", "shnn", "--out", str(tmp_path / "s.pt")]) == 2
    assert "nnmend heal" in capsys.readouterr().err
