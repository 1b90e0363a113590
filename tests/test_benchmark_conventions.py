"""Every benchmark script (``benchmarks/*.py`` not starting with ``_``) takes ``--quick`` and the shared results
folder flag ``--out`` (:func:`nnmend.benchmarking.add_out_arg`), read from its ``--help``."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
# scripts not yet converted to --out (empty: every script conforms)
PENDING: set[str] = set()

# one interpreter for all: each script's main() under runpy with --help, its help text captured
_DRIVER = """
import contextlib, io, json, os, runpy, sys
out = {}
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as `python benchmarks/X.py` does: its siblings importable
for path in sys.argv[1:]:
    buf = io.StringIO()
    sys.argv = [path, "--help"]
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
        out[path] = "no --help: the script ran without exiting"
    except SystemExit as exc:
        out[path] = buf.getvalue() if exc.code in (0, None) else f"exit {exc.code}: " + buf.getvalue()
    except Exception as exc:
        out[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    paths = [str(ROOT / "benchmarks" / s) for s in SCRIPTS]
    r = subprocess.run([sys.executable, "-c", _DRIVER, *paths], capture_output=True, text=True, timeout=900,
                       cwd=ROOT, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert r.returncode == 0, r.stderr[-2000:]
    return {Path(k).name: v for k, v in json.loads(r.stdout.splitlines()[-1]).items()}


def test_there_are_benchmarks_to_check():
    assert len(SCRIPTS) >= 20 and "shnn.py" in SCRIPTS and "_cifar.py" not in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_takes_quick_and_the_shared_out_flag(helps, script):
    text = helps[script]
    ok = "usage:" in text and "--quick" in text and re.search(r"--out(?![\w-])", text) is not None
    if script in PENDING and not ok:
        pytest.xfail(f"{script}: not yet converted to --out (another session's file)")
    assert ok, f"{script}: --help does not list --quick and --out:\n{text[:600]}"
