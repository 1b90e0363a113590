"""The workbench's PatchPro page repairs the session's network and shows the certificate."""
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
        at.switch_page("pages/repair_patchpro.py").run()
        assert not at.exception, at.exception
        at.number_input(key="patchpro_n").set_value(3)
        at.button(key="patchpro_run").click().run()
        wait_for(at, lambda a: "Result: PatchPro" in texts(a.subheader) or bool(a.error))
        assert not at.error, texts(at.error)
        rec = at.session_state["nnmend_workbench"].repairs["PatchPro"]
        assert rec.result.verified is True and rec.result.metrics["rsr"] == 100.0
        assert "certificate: verified" in texts(at.success)
    finally:
        config.set_option("runner.magicEnabled", old)
