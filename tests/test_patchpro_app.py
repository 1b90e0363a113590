"""PatchPro on the workbench's generic repair page: the session's network, PGD neighbourhoods, the
harness's certificate (PatchPro has no page of its own: the registry-driven page covers it)."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit", reason="the workbench needs streamlit (requirements.txt)")
from streamlit.testing.v1 import AppTest  # noqa: E402

from _app_wait import RUN_TIMEOUT, texts, wait_for  # noqa: E402
from nnmend.app import SCRIPT  # noqa: E402


def test_patchpro_page_proves_the_repaired_neighbourhoods():
    from streamlit import config

    old = config.get_option("runner.magicEnabled")
    config.set_option("runner.magicEnabled", False)
    try:
        at = AppTest.from_file(str(SCRIPT), default_timeout=RUN_TIMEOUT).run()
        at.number_input(key="model_n_eval").set_value(500).run()
        at.button(key="model_load").click().run()
        at.switch_page("pages/repair.py").run()
        assert not at.exception, at.exception
        at.selectbox(key="repair_method").set_value("patchpro").run()
        assert at.selectbox(key="repair_network_patchpro").value == "original"
        assert at.radio(key="repair_problem_patchpro").value == "adversarial neighbourhoods (local robustness)"
        at.number_input(key="repair_patchpro_problem_n").set_value(3)
        at.checkbox(key="repair_patchpro_harness_attack").set_value(False)     # proofs only: the attacks take minutes
        at.button(key="repair_run").click().run()
        wait_for(at, lambda a: "Result: patchpro" in texts(a.subheader) or bool(a.error))
        assert not at.error, texts(at.error)
        rec = at.session_state["nnmend_workbench"].repairs["patchpro"]
        assert rec.result.verified is True and rec.result.metrics["rsr"] == 100.0
        assert "certificate: verified" in texts(at.success)
    finally:
        config.set_option("runner.magicEnabled", old)
