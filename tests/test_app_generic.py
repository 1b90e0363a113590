"""The workbench on any network: the registry-driven repair page, an uploaded ONNX ResNet, network selectors
that default to what a user means, cancellable jobs with progress that moves, and the session archive.

As in ``test_app.py``: AppTest (no browser); every wait is on job completion or on a reported event, never
on the clock.
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile

import pytest
import torch
from torch import nn

pytest.importorskip("streamlit", reason="the workbench needs streamlit (requirements.txt)")

from _app_wait import texts, wait_for  # noqa: E402
from test_app import WB, _no_magic, damage_fc2, page, start  # noqa: E402,F401  (_no_magic: autouse fixture)
from nnmend.app import jobs  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.train import accuracy  # noqa: E402


def _repair(at, method: str, **values):
    """Choose ``method`` on the generic page, set number inputs by field (``name=value``), run, wait."""
    at.selectbox(key="repair_method").set_value(method).run()
    for name, value in values.items():
        at.number_input(key=f"repair_{method}_{name}").set_value(value)
    at.button(key="repair_run").click().run()
    return wait_for(at, lambda a: f"Result: {method}" in texts(a.subheader) or bool(a.error))


def test_generic_page_repairs_with_two_registered_methods():
    from nnmend.app.forms import editable
    from nnmend.repair import get

    at = damage_fc2(start(n_eval=500))
    page(at, "repair")
    assert at.selectbox(key="repair_method").value == "shnn"
    assert at.selectbox(key="repair_network_shnn").value == "damaged (zero fc2)"    # structural damage: the damaged one
    for name in editable(get("shnn").config):                                       # options = the config's fields
        assert any(getattr(el, "key", None) == f"repair_shnn_{name}" for kind in ("number_input", "text_input", "checkbox",
                                                                                  "selectbox") for el in at.get(kind)), name
    _repair(at, "shnn", n_samples=1000, epochs=1)
    assert not at.error, texts(at.error)
    wb = at.session_state[WB]
    rec = wb.repairs["shnn"]
    assert rec.result.config.epochs == 1 and rec.result.config.n_samples == 1000    # the form's values reached the config
    assert rec.result.success is True and texts(at.success).startswith("OK: shnn")    # the harness's verdict, first
    assert {r["metric"] for r in at.dataframe[0].value.to_dict("records")} >= {"accuracy", "drawdown", "recovery"}
    assert any(b.label.startswith("download repaired_shnn.pt") for b in at.get("download_button"))

    at.selectbox(key="repair_method").set_value("prorepair").run()
    assert at.selectbox(key="repair_network_prorepair").value == "original"         # not the damaged network
    assert "misclassified inputs (point-wise)" == at.radio(key="repair_problem_prorepair").value
    _repair(at, "prorepair", problem_pool=500, max_rounds=3)
    assert not at.error, texts(at.error)
    rec = wb.repairs["prorepair"]
    assert rec.result.method == "prorepair" and rec.result.config.max_rounds == 3 and "misclassified" in rec.note
    assert rec.source == "original" and rec.result.verdict in texts(at.success) + texts(at.warning)


def test_generic_page_says_in_one_line_why_a_method_does_not_apply():
    at = start(n_eval=200)
    page(at, "repair")
    at.selectbox(key="repair_method").set_value("guard").run()
    assert "guard does not apply here: needs a region property" in texts(at.info)
    at.selectbox(key="repair_method").set_value("nca").run()
    assert "nca does not apply here: needs a rule trained on the clean layer" in texts(at.info)
    at.selectbox(key="repair_method").set_value("shnn").run()
    assert "shnn does not apply here: structural healing replaces a damaged layer" in texts(at.info)
    assert not at.error and not at.exception


class Residual(nn.Module):
    """A user's own ResNet-style class: conv stem, a residual block, max pooling, a dense head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.conv2(torch.relu(self.conv1(h))))
        return self.fc(nn.functional.max_pool2d(h, 2).flatten(1))


def test_uploaded_onnx_resnet_goes_through_damage_diagnose_verify(tmp_path):
    from nnmend.diagnose import diagnose
    from nnmend.faults import damage
    from nnmend.graph import GraphNetwork
    from nnmend.io import load_network
    from nnmend.io.onnx import save_onnx

    torch.manual_seed(0)
    save_onnx(Residual().eval(), tmp_path / "resnet.onnx", input_shape=(1, 28, 28))
    ref = load_network(tmp_path / "resnet.onnx")
    assert isinstance(ref, GraphNetwork)                         # a residual graph, not a zoo Sequential

    at = start(n_eval=200, load=False)
    at.radio(key="model_source").set_value("upload").run()
    at.file_uploader(key="model_upload").set_value(("resnet.onnx", (tmp_path / "resnet.onnx").read_bytes(),
                                                    "application/octet-stream")).run()
    at.button(key="model_load_upload").click().run()
    assert not at.error, texts(at.error)
    wb = at.session_state[WB]
    test = load_dataset("mnist", "test", limit=200)
    assert "resnet.onnx" in texts(at.success) and wb.clean_accuracy == accuracy(ref, test)

    page(at, "damage")
    assert "damages: **original (resnet.onnx)" in texts(at.caption)
    at.selectbox(key="damage_layer").set_value("conv2")
    at.button(key="damage_run").click().run()
    assert not at.error, texts(at.error)
    hurt, fault = damage(ref, "conv2", "zero")
    assert wb.fault.n_changed == fault.n_changed and wb.damaged_accuracy == accuracy(hurt, test)

    page(at, "diagnose")
    at.button(key="diag_run").click().run()
    d = diagnose(ref, hurt, test.x[:100])
    assert not at.error, texts(at.error)
    assert wb.diagnosis.localized == d.localized and wb.diagnosis.mad == pytest.approx(d.mad)

    page(at, "verify")
    at.radio(key="verify_source").set_value("session network").run()
    assert at.selectbox(key="verify_network").value == "original"             # not the damaged one
    at.number_input(key="verify_eps").set_value(0.001)
    at.button(key="verify_run").click().run()
    wait_for(at, lambda a: "verdict on original" in texts(a.success) + texts(a.warning) + texts(a.info))
    from nnmend.properties import LocalRobustness, check

    want = check(ref, LocalRobustness(test.x[0], 0.001, int(test.y[0])), 30).status       # the API's verdict
    assert f"verdict on original: **{want}**" in texts(at.success) + texts(at.warning) + texts(at.info)
    assert wb.prop["kind"] == "robustness"                                    # the session's property for repairs

    page(at, "repair")                                                        # a method that applies, one that does not
    at.selectbox(key="repair_method").set_value("shnn").run()
    assert at.selectbox(key="repair_network_shnn").value.startswith("damaged")


def _spin(pid_file: str) -> None:
    """Report nested progress for ever (until cancelled); the first thing it does is say which process it is."""
    from nnmend._progress import progress

    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        for _ in progress(range(1000), desc="outer"):
            for _ in progress(range(10), desc="inner"):
                torch.randn(64, 64).sum()


@pytest.mark.parametrize("process", [False, pytest.param(True, marks=pytest.mark.skipif(not jobs._FORK, reason="no fork"))],
                         ids=["thread", "process"])
def test_cancel_stops_a_job_and_progress_moves(tmp_path, process):
    pid_file = str(tmp_path / "pid")
    job = jobs.submit("spin", _spin, pid_file, process=process)

    steps: set[str] = set()

    def after(n: int) -> float:
        """The job's fraction once ``n`` progress reports have arrived (an event, not a time)."""
        while job.reports < n and not job.done:
            jobs.wait(job, timeout=0.01)
            steps.add(job.step)
        return job.fraction

    try:
        first = after(30)
        later = after(job.reports + 100)                          # 100 more reports: several outer steps on
        assert not job.done and 0 < first < later < 1             # the bar moves (outer steps refined by inner ones)
        # the step names the nested loops (read between reports, it may show the outer step alone)
        assert any("outer" in st and "inner" in st for st in steps), sorted(steps)[:5]
    finally:
        job.cancel()                                              # never leave the worker spinning
    jobs.wait(job, timeout=math.inf)
    assert job.cancelled and "cancelled" in str(job.error) and job.value is None
    if process:                                                  # the job's process is gone, not left running
        pid = int(open(pid_file).read())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    nxt = jobs.wait(jobs.submit("next", sum, [1, 2, 3]))           # the queue goes on
    assert nxt.value == 6 and not nxt.cancelled


def test_cancel_button_on_a_page_stops_the_repair():
    at = damage_fc2(start(n_eval=200))
    page(at, "repair")
    at.number_input(key="repair_shnn_n_samples").set_value(5000)
    at.number_input(key="repair_shnn_epochs").set_value(1000)                # far longer than the test
    at.text_input(key="repair_shnn_init").set_value("random")                # straight to the epochs (progress steps)
    at.button(key="repair_run").click().run()
    job = at.session_state["nnmend_jobs"]["repair_shnn"]
    at.button(key="repair_shnn_cancel").click().run()
    jobs.wait(job, timeout=math.inf)
    at.run()
    assert job.cancelled and "cancelled" in texts(at.info)
    assert "shnn" not in at.session_state[WB].repairs


def test_selectors_default_to_what_a_user_means_and_the_archive_holds_the_session(tmp_path):
    from nnmend.io import load_network

    at = damage_fc2(start(n_eval=300))
    page(at, "diagnose")
    at.button(key="diag_run").click().run()
    for name, key in (("attack", "attack_network"), ("report", "report_network")):
        page(at, name)
        assert at.selectbox(key=key).value == "original", name        # damaged exists, but is not what a user means
    page(at, "repair_shnn")
    at.number_input(key="shnn_n").set_value(1000)
    at.number_input(key="shnn_epochs").set_value(1)
    at.button(key="shnn_run").click().run()
    wait_for(at, lambda a: "Result: SHNN patch" in texts(a.subheader) or bool(a.error))
    for name, key in (("attack", "attack_network"), ("report", "report_network")):
        page(at, name)
        assert at.selectbox(key=key).value == "repaired: SHNN patch", name      # the latest repaired network
    at.button(key="report_archive").click().run()
    assert not at.error, texts(at.error)
    data, names = at.session_state["nnmend_archive"]
    z = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(z.namelist()) == sorted(names)
    assert {"report.json", "report.md", "report.html", "MANIFEST.txt", "networks/original.pt", "networks/damaged.pt",
            "networks/repaired_shnn_patch.pt", "figures/accuracy.png", "figures/diagnosis.png",
            "figures/weights_shnn_patch.png"} <= set(names)
    manifest = z.read("MANIFEST.txt").decode()
    assert all(n in manifest for n in names if n != "MANIFEST.txt")
    wb = at.session_state[WB]
    x = load_dataset("mnist", "test", limit=32).x
    for name, net in zip(("original", "damaged", "repaired_shnn_patch"), wb.networks().values()):
        (tmp_path / f"{name}.pt").write_bytes(z.read(f"networks/{name}.pt"))
        assert torch.equal(load_network(tmp_path / f"{name}.pt")(x), net(x)), name
        torch.load(tmp_path / f"{name}.pt", weights_only=True)                              # weights-only checkpoints
    report = json.loads(z.read("report.json"))
    rows = {r["network"]: r for r in report["scenarios"]}
    assert rows["repaired: SHNN patch"]["accuracy"] == wb.repairs["SHNN patch"].after["accuracy"]
    assert set(report["figures"]) == {n for n in names if n.startswith("figures/")}
    html = z.read("report.html").decode()
    assert html.count("data:image/png;base64,") == len(report["figures"])                 # figures embedded
    assert any(b.label.startswith("download session (.zip") for b in at.get("download_button"))


def test_guard_page_takes_an_uploaded_network_and_property():
    """An ONNX upload (no .nnet header: the page asks for the input domain) and an uploaded VNN-LIB file."""
    from nnmend.acasxu import acasxu_path, acasxu_property_path

    at = start(load=False)
    page(at, "repair_guard")
    at.radio(key="guard_source").set_value("upload (.onnx / .nnet)").run()
    at.file_uploader(key="guard_upload").set_value(("acas_2_9.onnx", acasxu_path(2, 9).read_bytes(),
                                                    "application/octet-stream")).run()
    assert "guards: **acas_2_9.onnx**" in texts(at.caption)
    at.radio(key="guard_prop_source").set_value("upload (.vnnlib)").run()
    at.file_uploader(key="guard_prop_upload").set_value(("phi8.vnnlib", acasxu_property_path(8).read_bytes(), "text/plain")).run()
    at.number_input(key="guard_lo").set_value(-0.5)
    at.number_input(key="guard_hi").set_value(0.5).run()
    at.button(key="guard_run").click().run()
    wait_for(at, lambda a: "certificate" in texts(a.success) + texts(a.warning) or bool(a.error))
    assert not at.error, texts(at.error)
    rec = at.session_state["guard_record"]
    assert (rec["network"], rec["property"]) == ("acas_2_9.onnx", "phi8.vnnlib")
    assert "certificate: verified" in texts(at.success) and rec["result"].verified is True
    assert {m.label: m.value for m in at.metric}["bit-identical outside the box"] == "100.00%"
