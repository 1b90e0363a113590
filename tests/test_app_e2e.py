"""End to end in a real browser: ``nnmend app`` on 127.0.0.1, driven by Playwright through Debian's
chromium: model → damage → diagnose → heal, with the numbers shown checked against the API.

Screenshots and the server log go to ``tests/artifacts/app_e2e/`` (ignored by git). The test skips
only when ``/usr/bin/chromium`` is absent (``.ci/run`` installs it); it never downloads a browser.

Every wait is on an event (the server's health answer, an element, a result text), never a sleep; the
limits (``PATIENCE_MS``) are generous so that only a hang fails, not a loaded machine.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts" / "app_e2e"
PATIENCE_MS = 900_000   # the longest any one wait may take: a hang, not a slow machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium "
                       "(apt-get install chromium; .ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """``nnmend app`` in its own process group; stopped (SIGTERM, then SIGKILL) whatever happens."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "NNMEND_NO_PROGRESS": "1",
           # one torch thread: on a busy 2-core runner, two spinning threads beside the browser cost ~10x
           "OMP_NUM_THREADS": "1"}
    log = open(ARTIFACTS / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "nnmend", "app", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + PATIENCE_MS / 1000
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"nnmend app did not start (exit {proc.poll()}); see {ARTIFACTS / 'server.log'}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode is not None


def _percent(text: str) -> float:
    return float(re.search(r"(-?\d+\.\d+)%", text).group(1))


def _metric(page, label: str) -> str:
    return page.locator('[data-testid="stMetric"]', has_text=label).first.inner_text()


def test_model_damage_diagnose_heal_in_browser(server):
    from playwright.sync_api import expect, sync_playwright

    from nnmend.diagnose import diagnose
    from nnmend.faults import damage
    from nnmend.data import load_dataset
    from nnmend.nets import pretrained
    from nnmend.train import accuracy

    # what the page must show, computed here with the API
    net, test = pretrained("shnn_mlp_mnist"), load_dataset("mnist", "test")
    damaged, _ = damage(net, "fc2", "zero")
    clean_acc, damaged_acc = 100 * accuracy(net, test), 100 * accuracy(damaged, test)
    diag = diagnose(net, damaged, test.x[:100])

    shots, t0 = [], time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(PATIENCE_MS)

        def shot(name: str) -> None:
            print(f"{name}: {time.time() - t0:.1f} s")
            path = ARTIFACTS / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        def go(title: str) -> None:  # sidebar links keep the session (a URL load would start a new one)
            page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
            page.get_by_role("heading", name=title).first.wait_for()

        try:
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_role("button", name="Load", exact=True).click()
            shown = page.get_by_text("clean accuracy").first
            shown.wait_for()
            assert f"{clean_acc:.2f}%" in shown.inner_text()
            shot("01_model")

            go("Damage")
            page.locator('[data-testid="stSelectbox"]', has_text="layer").first.click()
            page.get_by_role("option", name="fc2", exact=True).click()
            page.get_by_role("button", name="Damage", exact=True).click()
            page.locator('[data-testid="stMetric"]', has_text="damaged accuracy").wait_for()
            assert _percent(_metric(page, "damaged accuracy")) == pytest.approx(damaged_acc, abs=0.005)
            assert "zero damage to fc2" in page.locator("body").inner_text()
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
            shot("02_damage")

            go("Diagnose")
            page.get_by_role("button", name="Diagnose", exact=True).click()
            loc = page.get_by_text("localised layer:").first
            loc.wait_for()
            text = loc.inner_text()
            assert diag.localized == "fc2" and "localised layer: fc2" in text
            assert f"MAD {diag.mad['fc2']:.4f}" in text
            page.locator('[data-testid="stVegaLiteChart"]').nth(2).wait_for()   # two bar charts + heat-maps
            shot("03_diagnose")

            go("SHNN patch")
            for label, value in (("training samples", "2000"), ("epochs", "3")):
                box = page.get_by_label(label, exact=True)
                box.fill(value)
                box.press("Enter")
                expect(box).to_have_value(value, timeout=PATIENCE_MS)
            page.get_by_role("button", name="Heal", exact=True).click()
            page.locator('[data-testid="stProgress"]').first.wait_for()   # the job runs; the page stays live
            shot("04_heal_running")
            page.get_by_text("Result: SHNN patch").wait_for()
            healed = _percent(_metric(page, "accuracy after"))
            assert healed > damaged_acc + 50 and healed > clean_acc - 2.0
            assert "certificate: none" in page.locator("body").inner_text()
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
            shot("05_healed")
        finally:
            shot("99_last")
            browser.close()
    print(f"\nscreenshots: {', '.join(str(s) for s in shots)}")
