"""The Streamlit workbench, page by page, through ``streamlit.testing.v1.AppTest`` (no browser).

Each test sets widgets, clicks buttons and reads what the page shows, and checks the figures against
the API called directly. Long calls run as background jobs; :func:`wait_for` waits for the session's
jobs to finish and reruns the page until the result is shown, as the browser's polling would.

No wait here is measured by the clock, so a loaded machine makes the tests slower, not red:
:func:`wait_for` blocks on job completion, and a script run may take up to ``RUN_TIMEOUT`` (AppTest needs
a number; it only ends a run that hangs).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit", reason="the workbench needs streamlit (requirements.txt)")
from streamlit.testing.v1 import AppTest  # noqa: E402

from _app_wait import RUN_TIMEOUT, running_jobs, texts, wait_for  # noqa: E402
from nnmend.app import SCRIPT, jobs, registry  # noqa: E402
from nnmend.data import load_dataset  # noqa: E402
from nnmend.nets import pretrained  # noqa: E402
from nnmend.train import accuracy  # noqa: E402

N_EVAL = 1000
WB = "nnmend_workbench"


@pytest.fixture(autouse=True, scope="module")
def _no_magic():
    """As ``nnmend app`` runs it (see nnmend.cli.app.command)."""
    from streamlit import config

    old = config.get_option("runner.magicEnabled")
    config.set_option("runner.magicEnabled", False)
    yield
    config.set_option("runner.magicEnabled", old)


@pytest.fixture(scope="module")
def net():
    return pretrained("shnn_mlp_mnist")


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("mnist", "test", limit=N_EVAL)


def captions(at: AppTest) -> list[str]:
    """Captions of the images shown, in order."""
    return [c for el in at.get("image") for c in el.captions]


def start(n_eval: int = N_EVAL, load: bool = True) -> AppTest:
    at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
    assert not at.exception, at.exception
    at.number_input(key="model_n_eval").set_value(n_eval).run()
    if load:
        at.button(key="model_load").click().run()
        assert not at.error, texts(at.error)
    return at


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def damage_fc2(at: AppTest) -> AppTest:
    page(at, "damage")
    at.selectbox(key="damage_layer").set_value("fc2")
    return at.button(key="damage_run").click().run()


# -- registry and navigation ---------------------------------------------------------------------
def test_every_page_renders_without_a_network():
    entries = registry.discover()
    names = {e.name for e in entries}
    assert {"model", "damage", "diagnose", "repair", "repair_shnn", "repair_nca", "repair_guard", "attack", "verify",
            "report"} <= names
    # one generic page: the method pages it covers are gone (kept: SHNN weights, NCA rule training, guard)
    assert not names & {"repair_nnrepair", "repair_prorepair", "repair_patchpro", "repair_shnn_adversarial"}
    at = start(load=False)
    assert at.title[0].value == "Model"
    for e in registry.available():
        page(at, e.name)
        assert at.title[0].value.startswith(e.spec.title.split(" ")[0]) or e.spec.title in at.title[0].value
        if e.name not in ("model", "verify", "repair_guard"):     # these bring their own (ACAS Xu) networks
            assert "No network loaded" in texts(at.info)


def test_method_page_appears_only_when_its_module_imports(monkeypatch):
    import nnmend.app.pages.attack as attack_page

    monkeypatch.setattr(attack_page, "PAGE", registry.PageSpec("Attack", section="Evaluate", requires=("nnmend.not_landed_yet",)))
    entry = next(e for e in registry.discover() if e.name == "attack")
    assert not entry.available and entry.missing == ("nnmend.not_landed_yet",)
    at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
    assert "needs `nnmend.not_landed_yet`" in texts(at.sidebar.caption)
    with pytest.raises(ValueError):
        at.switch_page("pages/attack.py")


# -- model ---------------------------------------------------------------------------------------
def test_model_page_loads_bundled_network(net, test_set):
    at = start()
    shown = texts(at.success)
    assert "shnn_mlp_mnist" in shown and f"{100 * accuracy(net, test_set):.2f}%" in shown
    assert list(at.dataframe[0].value["layer"]) == ["fc1", "fc2", "fc3", "fc4"]
    assert at.session_state[WB].clean_accuracy == accuracy(net, test_set)


def test_model_page_trains_in_the_background():
    at = start(load=False)
    at.radio(key="model_source").set_value("train").run()
    at.selectbox(key="train_arch").set_value("small_mlp")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_n").set_value(1000)
    at.button(key="train_run").click().run()
    wait_for(at, lambda a: "trained here" in texts(a.success))
    wb = at.session_state[WB]
    assert wb.model is not None and wb.clean_accuracy == accuracy(wb.model, load_dataset("mnist", "test", limit=N_EVAL))
    assert wb.clean_accuracy > 0.5   # one epoch on 1,000 images is well above chance (0.1)


def test_model_page_bad_uploads_show_an_error_and_the_app_keeps_running(tmp_path, net):
    from nnmend.acasxu import acasxu_path
    from nnmend.io import save_network

    at = start(load=False)
    at.radio(key="model_source").set_value("upload").run()

    def upload(name: str, data: bytes) -> str:
        at.file_uploader(key="model_upload").set_value((name, data, "application/octet-stream")).run()
        at.button(key="model_load_upload").click().run()
        assert not at.exception
        return texts(at.error)

    err = upload("junk.pt", b"this is not a network")
    assert err.startswith("Loading junk.pt: junk.pt: ") and ("not a readable" in err or "refused to load" in err)
    err = upload("acas.onnx", acasxu_path(1, 1).read_bytes())   # 5 inputs, not 28x28 images
    assert "acas.onnx" in err and "cannot take inputs of shape (1, 28, 28)" in err
    assert at.session_state[WB].model is None
    save_network(net, tmp_path / "good.pt")
    assert upload("good.pt", (tmp_path / "good.pt").read_bytes()) == ""
    assert "good.pt" in texts(at.success)


def test_model_page_wrong_input_size_for_the_data_set():
    at = start(load=False)
    at.selectbox(key="model_dataset").set_value("digits").run()
    at.button(key="model_load").click().run()
    err = texts(at.error)
    assert "shnn_mlp_mnist" in err and "cannot take inputs of shape (1, 8, 8)" in err
    assert at.session_state[WB].model is None and not at.exception


# -- damage and diagnose --------------------------------------------------------------------------
def test_damage_page_matches_the_api(net, test_set):
    from nnmend.faults import damage

    at = start()
    page(at, "damage")
    at.selectbox(key="damage_layer").set_value("fc1")
    at.selectbox(key="damage_kind").set_value("gaussian")
    at.slider(key="damage_fraction").set_value(0.5)
    at.number_input(key="damage_seed").set_value(3)
    at.button(key="damage_run").click().run()
    ref, fault = damage(net, "fc1", "gaussian", fraction=0.5, seed=3)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["values changed"] == f"{fault.n_changed} / {fault.n_total}"
    assert metrics["damaged accuracy"] == f"{100 * accuracy(ref, test_set):.2f}%"
    assert len(at.get("vega_lite_chart")) == 1   # the weight histograms


def test_diagnose_page_structural_and_adversarial(net):
    from nnmend.attacks import SHNN_FGSM
    from nnmend.diagnose import diagnose
    from nnmend.faults import damage

    x, y = load_dataset("mnist", "test", limit=100).x, load_dataset("mnist", "test", limit=100).y
    at = damage_fc2(start())
    page(at, "diagnose")
    at.button(key="diag_run").click().run()
    d = diagnose(net, damage(net, "fc2", "zero")[0], x)
    shown = texts(at.success)
    assert d.localized == "fc2" and "localised layer: **fc2**" in shown and f"MAD {d.mad['fc2']:.4f}" in shown
    assert len(at.get("vega_lite_chart")) == 3   # MAD bars, MSE bars, activation heat-maps
    at.number_input(key="diag_input").set_value(5).run()
    assert captions(at)[0] == f"input #5 (label {int(y[5])})"

    at.radio(key="diag_mode").set_value("adversarial: clean vs attacked inputs").run()
    at.button(key="diag_run").click().run()
    d = diagnose(net, net, x, x_other=SHNN_FGSM.run(net, x, y), metric="mse", rule="peak")
    assert f"localised layer: **{d.localized}** (MSE {d.mse[d.localized]:.4f}" in texts(at.success)


# -- repairs -------------------------------------------------------------------------------------
def test_shnn_patch_page_heals_the_localised_layer(test_set):
    at = damage_fc2(start())
    page(at, "diagnose")
    at.button(key="diag_run").click().run()
    page(at, "repair_shnn")
    assert at.selectbox(key="shnn_layer").value == "fc2"   # taken from the diagnosis
    at.number_input(key="shnn_n").set_value(2000)
    at.number_input(key="shnn_epochs").set_value(2)
    at.button(key="shnn_run").click().run()
    wait_for(at, lambda a: "Result: SHNN patch" in texts(a.subheader))
    rec = at.session_state[WB].repairs["SHNN patch"]
    healed = accuracy(rec.result.network, test_set)
    assert {m.label: m.value for m in at.metric}["accuracy after"] == f"{100 * healed:.2f}%"
    assert healed > at.session_state[WB].damaged_accuracy + 0.5
    assert "certificate: none" in texts(at.info)
    assert len(at.get("vega_lite_chart")) == 1   # healthy / damaged / healed weights


def test_nca_page_trains_a_rule_then_repairs(test_set):
    """The output layer fc2 (10 x 100): the rule's calibration at the end of training runs 14 full repairs of
    the layer whatever the iterations, minutes on fc1's 78,400 cells and seconds on fc2's 1,000."""
    pytest.importorskip("nnmend.repair.nca", reason="nnmend.repair.nca (NCA) has not landed on this branch")
    at = start(load=False)
    at.selectbox(key="model_bundled").set_value("small_mlp_mnist")
    at.button(key="model_load").click().run()
    page(at, "damage")
    at.selectbox(key="damage_layer").set_value("fc2")
    at.slider(key="damage_fraction").set_value(0.2)
    at.button(key="damage_run").click().run()
    page(at, "repair_nca")
    assert at.selectbox(key="nca_layer").value == "fc2"                  # the damaged layer is preselected
    assert "No rule for fc2 yet" in texts(at.info)
    at.number_input(key="nca_train_iterations").set_value(10)
    at.button(key="nca_train_run").click().run()
    wait_for(at, lambda a: "trained rules: **fc2**" in texts(a.caption) or bool(a.error))
    at.radio(key="nca_mode").set_value("informed (oracle mask from the recorded fault)")
    at.button(key="nca_run").click().run()
    wait_for(at, lambda a: "Result: NCA" in texts(a.subheader) or bool(a.error))
    assert not at.error, texts(at.error)
    rec = at.session_state[WB].repairs["NCA"]
    assert {m.label: m.value for m in at.metric}["accuracy after"] == f"{100 * accuracy(rec.result.network, test_set):.2f}%"


CONFIG_SCRIPT = """
from dataclasses import dataclass
import streamlit as st
from nnmend.app.widgets import config_form

@dataclass(frozen=True)
class Config:
    mode: str = "hard"
    steps: int = 10
    lr: float = 0.01
    residual: bool = True
    limit: int | None = None

st.session_state["cfg"] = config_form(Config, "t", ("mode", "steps", "lr", "residual", "limit"),
                                      choices={"mode": ("hard", "soft")})
"""


def test_config_form_builds_the_method_config():
    at = AppTest.from_string(CONFIG_SCRIPT, default_timeout=RUN_TIMEOUT).run()
    cfg = at.session_state["cfg"]
    assert (cfg.mode, cfg.steps, cfg.lr, cfg.residual, cfg.limit) == ("hard", 10, 0.01, True, None)   # the defaults
    at.selectbox(key="t_mode").set_value("soft")
    at.number_input(key="t_steps").set_value(3)
    at.checkbox(key="t_residual").set_value(False)
    at.text_input(key="t_limit").set_value("500").run()
    cfg = at.session_state["cfg"]
    assert (cfg.mode, cfg.steps, cfg.lr, cfg.residual, cfg.limit) == ("soft", 3, 0.01, False, 500)
    at.text_input(key="t_limit").set_value("many").run()
    assert at.session_state["cfg"].limit is None and "not a number" in texts(at.error)


# -- attack, verify, report ----------------------------------------------------------------------
def test_attack_page_matches_the_api(net):
    from nnmend.attacks import fgsm

    at = start()
    page(at, "attack")
    at.number_input(key="attack_eps_fgsm").set_value(0.1)
    at.number_input(key="attack_n").set_value(200)
    at.button(key="attack_run").click().run()
    wait_for(at, lambda a: any(m.label == "adversarial accuracy" for m in a.metric))
    sub = load_dataset("mnist", "test", limit=200)
    adv = fgsm(net, sub.x, sub.y, 0.1)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["clean accuracy"] == f"{100 * accuracy(net, sub):.2f}%"
    assert metrics["adversarial accuracy"] == f"{100 * accuracy(net, (adv, sub.y)):.2f}%"
    assert float(metrics["largest perturbation (L∞)"]) == pytest.approx(0.1, abs=1e-3)
    preds = net(adv[:8]).argmax(1).tolist()
    assert captions(at)[1::2] == [f"adv {int(t)}→{p}" for t, p in zip(sub.y[:8], preds)]   # 8 clean + 8 adversarial


def test_verify_page_reads_properties_and_rejects_bad_files():
    from nnmend.acasxu import acasxu_property_path
    from nnmend.io.vnnlib import read_vnnlib

    at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
    page(at, "verify")
    at.selectbox(key="verify_i").set_value(2)
    at.selectbox(key="verify_prop").set_value("prop_2").run()
    spec = read_vnnlib(acasxu_property_path(2), n_inputs=5, n_outputs=5)
    box = at.dataframe[0].value
    assert list(box["lower"]) == pytest.approx(spec.regions[0].lo.tolist())
    assert list(box["upper"]) == pytest.approx(spec.regions[0].hi.tolist())
    at.selectbox(key="verify_prop").set_value("upload").run()
    at.file_uploader(key="verify_upload").set_value(("broken.vnnlib", b"(declare-const X_0 Real)\n(assert (<= X_0", "text/plain")).run()
    err = texts(at.error)
    assert "broken.vnnlib" in err and not at.exception


def test_verify_page_checks_a_property():
    pytest.importorskip("nnmend.properties", reason="nnmend.properties (bounds) has not landed on this branch")
    at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
    page(at, "verify")
    at.selectbox(key="verify_i").set_value(2)
    at.selectbox(key="verify_prop").set_value("prop_2").run()
    at.button(key="verify_run").click().run()
    wait_for(at, lambda a: "verdict" in texts(a.warning) + texts(a.success) + texts(a.info))
    assert "falsified" in texts(at.warning)   # VNN-COMP: ACAS Xu 2_1 violates property 2


def test_guard_page_guards_and_proves_acasxu_phi8():
    at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
    page(at, "repair_guard")
    assert at.selectbox(key="guard_i").value == 2 and at.selectbox(key="guard_j").value == 9
    at.button(key="guard_run").click().run()
    wait_for(at, lambda a: "certificate" in texts(a.success) + texts(a.warning))
    assert "certificate: verified" in texts(at.success)
    values = {m.label: m.value for m in at.metric}
    assert values["bit-identical outside the box"] == "100.00%"


def test_report_page_downloads_round_trip(tmp_path, net, test_set):
    from nnmend.io import load_network

    at = damage_fc2(start())
    page(at, "report")
    assert at.selectbox(key="report_network").value == "original"       # what a user means, not the damaged one
    at.selectbox(key="report_network").set_value("damaged (zero fc2)").run()
    at.button(key="report_prepare").click().run()
    assert not at.error, texts(at.error)
    files = at.session_state["nnmend_downloads"]
    assert set(files) == {"damaged.pt", "damaged.onnx", "report.json", "report.md"}
    damaged = at.session_state[WB].damaged
    x = test_set.x[:64]
    for name in ("damaged.pt", "damaged.onnx"):
        (tmp_path / name).write_bytes(files[name])
        back = load_network(tmp_path / name)
        assert torch.allclose(back(x), damaged(x), atol=1e-5), name
    report = json.loads(files["report.json"])
    rows = {r["network"]: r for r in report["scenarios"]}
    assert rows["original"]["accuracy"] == accuracy(net, test_set)
    assert rows["damaged"]["accuracy"] == accuracy(damaged, test_set) and rows["damaged"]["fault"]["layer"] == "fc2"
    assert "| damaged | damage |" in files["report.md"].decode()
    assert {b.label for b in at.get("download_button")} == set(files)


# -- background jobs and errors ------------------------------------------------------------------
def test_failing_job_shows_an_error_box(monkeypatch):
    import nnmend.nets
    from nnmend.errors import ModelError

    def broken(name):
        raise ModelError(f"architecture {name!r} is broken on purpose")

    monkeypatch.setattr(nnmend.nets, "build", broken)
    at = start(load=False)
    at.radio(key="model_source").set_value("train").run()
    at.button(key="train_run").click().run()
    wait_for(at, lambda a: bool(a.error))
    assert "is broken on purpose" in texts(at.error) and at.session_state[WB].model is None


def test_progress_listener_reports_every_epoch_in_its_own_thread_only():
    import threading

    from nnmend import _progress
    from nnmend.nets import mlp
    from nnmend.train import fit

    seen, other = [], []
    data = (torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)))
    t = threading.Thread(target=lambda: other.append(isinstance(_progress.progress(range(3), desc="x"), _progress._Reporting)))
    with _progress.listen(lambda desc, done, total: seen.append((desc, done, total))):
        t.start()
        t.join()
        fit(mlp([16, 8, 3]), data, epochs=3, batch_size=32, desc="fit")
    assert seen == [("fit", i, 3) for i in range(4)]
    assert other == [False]   # another thread is not affected by this listener
    job = jobs.wait(jobs.submit("fit", fit, mlp([16, 8, 3]), data, epochs=2, batch_size=32, desc="fit"), timeout=math.inf)
    assert job.done and job.error is None and job.fraction == 1.0 and job.step == "done" and job.reports == 3


def test_cli_app_command(capsys):
    from nnmend.cli import build_parser, main
    from nnmend.cli.app import command

    args = build_parser().parse_args(["app", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    cmd = command("127.0.0.1", 8502)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == SCRIPT
    for flag, value in (("--server.address", "127.0.0.1"), ("--server.port", "8502"), ("--server.headless", "true"),
                        ("--browser.gatherUsageStats", "false")):
        assert cmd[cmd.index(flag) + 1] == value
    assert main(["app", "--port", "70000"]) == 2
    assert "not a TCP port" in capsys.readouterr().err
