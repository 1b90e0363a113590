"""The documentation site builds with no warning, and its pages' code runs as written."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnmend.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:                  # a parent package is missing
        return False


HAS_MKDOCS = all(_installed(m) for m in ("mkdocs", "mkdocstrings_handlers.python", "material"))
METHOD_PAGES = sorted((DOCS / "methods").glob("*.md"))


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


def run_page(page: Path, folder: Path, monkeypatch) -> dict:
    """Execute every Python block of ``page`` in order, in one namespace, inside ``folder``."""
    monkeypatch.chdir(folder)
    ns: dict = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        exec(compile(block, f"{page.name} block {i + 1}", "exec"), ns)      # noqa: S102 - our own docs
    return ns


@pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs, mkdocs-material or mkdocstrings[python] not installed "
                                          "(pip install -r requirements.txt)")
def test_site_builds_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    site = tmp_path / "site"
    guard = (site / "methods" / "guard" / "index.html").read_text()
    assert "GuardConfig" in guard and "certify_timeout" in guard          # options from the config dataclass
    assert (site / "api" / "bounds" / "index.html").read_text().count("BoundedNetwork") > 1


def test_every_method_page_has_paper_guarantee_options_example_and_table():
    names = {p.stem for p in METHOD_PAGES}
    assert names == {"shnn", "nnrepair", "nca", "patchpro", "prorepair", "guard"}
    for page in METHOD_PAGES:
        text = page.read_text()
        assert "**What it guarantees.**" in text, page.name
        assert re.search(r"^::: nnmend\.repair\.\S+Config$", text, re.M), page.name
        assert re.search(r'^--8<-- "benchmarks/results/\w+\.md"$', text, re.M), page.name
        for ref in re.findall(r'^--8<-- "(.+?)"$', text, re.M):
            assert (ROOT / ref).is_file(), ref
        assert python_blocks(page) and "```bash\nnnmend " in text, page.name


@pytest.mark.parametrize("page", METHOD_PAGES, ids=lambda p: p.stem)
def test_method_examples_import_what_they_use(page):
    """Every name a method page's example imports exists, and the example parses (running the repairs
    themselves takes minutes: their commands run in tests/test_readme.py and the benchmarks)."""
    for block in python_blocks(page):
        tree = ast.parse(block)
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        ns: dict = {}
        exec(compile(ast.Module(body=imports, type_ignores=[]), page.name, "exec"), ns)   # noqa: S102
        assert imports, page.name


def test_tutorial_runs(tmp_path, monkeypatch):
    ns = run_page(DOCS / "tutorial.md", tmp_path, monkeypatch)
    assert ns["d"].localized == "fc2"
    assert ns["healed_acc"] > ns["clean_acc"] - 0.05
    assert (tmp_path / "healed.pt").is_file() and (tmp_path / "healed.onnx").is_file()


def test_verify_onnx_page_runs(tmp_path, monkeypatch, capsys):
    assert main(["examples", "--out", str(tmp_path), "acasxu_1_1.onnx", "prop_1.vnnlib"]) == 0
    ns = run_page(DOCS / "verify-onnx.md", tmp_path, monkeypatch)
    assert ns["result"].status == "verified"
