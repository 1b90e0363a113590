"""The package as users get it: metadata, and a wheel installed into a fresh venv, run from outside the tree.

The fresh venv sees the project venv's packages through a ``.pth`` file (a folder of links to every
installed distribution except nnmend itself), so nothing is downloaded; ``pip install --no-index`` then
fails if the wheel declares a dependency that is not installed, and the wheel's own ``nnmend`` is the only
one on the path.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml with tomllib")

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ("acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/vnnlib/prop_1.vnnlib")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_metadata_declares_what_nnmend_imports():
    project = _pyproject()["project"]
    deps = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in project["dependencies"]}
    assert {"torch", "numpy", "scipy", "onnx", "onnxruntime", "highspy", "matplotlib", "tqdm", "safetensors"} <= deps
    extras = project["optional-dependencies"]
    assert {"app", "verify", "campaign", "dev"} <= set(extras)
    declared = " ".join(project["dependencies"] + sum(extras.values(), [])).lower()
    for left_out in ("torchvision", "torchattacks", "auto-lirpa", "auto_lirpa"):
        assert left_out not in declared, left_out            # their metadata pulls torchvision
    assert project["dynamic"] == ["version"] and "version" not in project


def test_every_optional_module_maps_to_a_declared_extra():
    from nnmend._extras import EXTRAS

    extras = _pyproject()["project"]["optional-dependencies"]
    module_to_dist = {"yaml": "pyyaml", "altair": "streamlit"}        # altair comes with streamlit
    for module, extra in EXTRAS.items():
        dist = module_to_dist.get(module, module)
        assert any(req.lower().startswith(dist) for req in extras[extra]), (module, extra)


def test_missing_extra_is_one_line_in_the_api_and_the_cli(monkeypatch, capsys):
    from nnmend._extras import MissingExtra, require
    from nnmend.cli import failure, main

    monkeypatch.setitem(sys.modules, "ray", None)             # as if ray were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'nnmend\[campaign\]'"):
        require("ray", "the Ray executor")
    with pytest.raises(ImportError):                          # still an ImportError for code that expects one
        require("ray", "the Ray executor")
    monkeypatch.setitem(sys.modules, "streamlit", None)
    assert main(["app"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nnmend[app]" in err
    code, line = failure(ModuleNotFoundError("No module named 'yaml'", name="yaml"))
    assert code == 2 and "nnmend[campaign]" in line
    code, line = failure(ModuleNotFoundError("No module named 'torchattacks'", name="torchattacks"))
    assert code == 2 and "--no-deps torchattacks" in line


def _site_overlay(folder: Path) -> Path:
    """Links to every installed distribution of this interpreter except nnmend (and its editable hook)."""
    folder.mkdir()
    dirs = [Path(p) for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]]
    for d in dict.fromkeys(p.resolve() for p in dirs if p.is_dir()):
        for entry in d.iterdir():
            name = entry.name.lower()
            if name.startswith(("nnmend", "__editable__", "_nnmend")) or name.endswith(".pth") or \
                    (folder / entry.name).exists():
                continue
            (folder / entry.name).symlink_to(entry)
    return folder


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_from_outside_the_tree(tmp_path):
    """About 60-90 s: builds the wheel, installs it without an index, runs the CLI and the API."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # build from a copy, so the shared tree gets no build/ or egg-info litter
    src = tmp_path / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", tmp_path / "dist", src], tmp_path, env)
    wheel, = (tmp_path / "dist").glob("nnmend-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip())
    (purelib / "project-venv.pth").write_text(f"{_site_overlay(tmp_path / 'overlay')}\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-index", wheel], tmp_path, env)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    from nnmend._version import __version__

    assert _run([venv / "bin" / "nnmend", "--version"], outside, env).strip() == f"nnmend {__version__}"
    pkg = Path(_run([py, "-c", "import nnmend, pathlib; print(pathlib.Path(nnmend.__file__).parent)"], outside,
                    env).strip())
    assert pkg.is_relative_to(venv) and not pkg.is_relative_to(ROOT), pkg
    net, prop = (pkg / "_assets" / p for p in INSTANCE)
    assert _run([venv / "bin" / "nnmend", "verify", net, prop, "--timeout", "300"], outside, env).split()[0] == "unsat"
    api = ("import sys, torch, nnmend\n"
           "net = nnmend.load_network(sys.argv[1])\n"
           "nnmend.save_network(net, 'n.safetensors')\n"
           "back = nnmend.load_network('n.safetensors')\n"
           "x = torch.rand(3, 1, 1, 5)\n"
           "lb, ub = nnmend.BoundedNetwork(back, (1, 1, 5)).compute_bounds(x=x, eps=0.01, method='crown')\n"
           "y = back(x).flatten(1)\n"
           "print(bool(torch.equal(back(x), net(x)) and (lb <= y).all() and (y <= ub).all()))\n")
    assert _run([py, "-c", api, net], outside, env).strip() == "True"
