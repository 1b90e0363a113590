"""The README runs as written: its command block (after ``nnmend examples --out .``) and its Python snippets."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nnmend.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# commands the block shows but this test does not run, each covered elsewhere
NOT_RUN = {"demo": "the main job, ~140 CPU s: tests/test_demo.py runs it",
           "app": "a server that runs until stopped: tests/test_app.py and the Playwright test drive it",
           # minutes of CPU at settings whose result passes the harness's fidelity check (with a 60 s budget or
           # 1000 boxes the property is proved but FDD exceeds max_drawdown: exit 1); run by their own tests and
           # benchmarks (tests/test_patchpro_cli.py, tests/test_prorepair_cli.py, benchmarks/*_acasxu.py)
           "patchpro": "PatchPro on ACAS Xu N2,1: minutes; tests/test_patchpro_cli.py",
           "prorepair": "ProRepair on ACAS Xu N2,1: minutes; tests/test_prorepair_cli.py"}


def not_run(argv: list[str]) -> str | None:
    """Why this README line is not run here (None: it is run)."""
    method = argv[argv.index("--method") + 1] if "--method" in argv else None
    return NOT_RUN.get(argv[1]) or NOT_RUN.get(method or "")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def command_lines() -> list[list[str]]:
    """The command-line section's first ``bash`` block, one argv per line (comments dropped)."""
    block = re.search(r"^```bash\n(.*?)^```", _section("Command line"), re.S | re.M).group(1)
    return [argv for argv in (shlex.split(line, comments=True) for line in block.splitlines()) if argv]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)


def table_snippets() -> list[str]:
    """The nnmend column of the comparison table: each cell's lines, in order."""
    lines = []
    for row in re.findall(r"^\| (attack|bound|verify) \|(.*)$", _section("If you know torchattacks, auto_LiRPA or Marabou"),
                          re.M):
        cell = row[1].rstrip(" |").split(" | ")[-1]
        lines += [part.strip().strip("`") for part in cell.split("<br>")]
    return lines


def test_readme_opens_with_make_demo_and_make_test():
    first = re.search(r"^```bash\n(.*?)^```", README, re.S | re.M).group(1).splitlines()
    assert first[0].startswith("make demo") and first[1].startswith("make test")


def test_every_command_line_parses_and_starts_with_examples():
    lines = command_lines()
    assert lines[0][:3] == ["nnmend", "examples", "--out"]
    parser = build_parser()
    for argv in lines:
        assert argv[0] == "nnmend", argv
        if argv[1:] == ["--help"]:
            continue
        parser.parse_args(argv[1:])        # argparse exits (SystemExit 2) on a line that does not parse


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in command_lines():
        if not_run(argv):
            continue
        if argv[1:] == ["--help"]:
            with pytest.raises(SystemExit) as stop:
                main(argv[1:])
            assert stop.value.code == 0
            continue
        code = main(argv[1:])
        out = capsys.readouterr()
        assert code == 0, f"{shlex.join(argv)} exited {code}: {out.err[-2000:]}"
        ran.append(argv)
    outputs = [a[a.index("--out") + 1] for a in ran if "--out" in a and a[1] != "examples"]
    outputs += [a[3] for a in ran if a[1] == "convert"]
    missing = [o for o in outputs if not (tmp_path / o).is_file()]
    assert not missing, missing
    assert len(ran) >= 14


def test_readme_python_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["examples", "--out", ".", "acasxu_1_1.onnx", "prop_1.vnnlib"]) == 0
    ns: dict = {"__name__": "readme"}
    blocks = python_blocks()
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), ns)     # noqa: S102 - our own README
    assert (tmp_path / "resmlp.pt").is_file() and (tmp_path / "resmlp.onnx").is_file()
    snippets = table_snippets()
    assert len(snippets) == 6 and any("nnmend.attacks.PGD" in s for s in snippets)
    exec(compile("\n".join(snippets), "README.md comparison table", "exec"), ns)   # noqa: S102
    x, eps = ns["x"], ns["eps"]
    assert ns["x_adv"].shape == x.shape and float((ns["x_adv"] - x).abs().max()) <= 8 / 255 + 1e-6
    out = ns["model"](x).detach()
    assert (ns["lb"] <= out + 1e-5).all() and (out <= ns["ub"] + 1e-5).all()
    assert ns["result"].status == "verified"


def test_examples_lists_and_copies_the_bundled_files(tmp_path, capsys):
    assert main(["examples", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    for name in ("acasxu_2_1.onnx", "acasxu_2_1.nnet", "prop_2.vnnlib", "mnist_poisoned.pt", "acasxu_instances.csv"):
        assert name in listed, name
    assert len([n for n in listed if n.endswith(".onnx")]) == 45
    assert main(["examples", "--out", str(tmp_path), "acasxu_1_*", "prop_1.vnnlib", "acasxu_instances.csv"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["acasxu_1_1.nnet", *(f"acasxu_1_{j}.onnx" for j in range(1, 10)), "prop_1.vnnlib",
                            "acasxu_instances.csv"])
    rows = (tmp_path / "acasxu_instances.csv").read_text().splitlines()
    assert len(rows) == 186 and rows[0] == "acasxu_1_1.onnx,prop_1.vnnlib,116"
    capsys.readouterr()
    assert main(["examples", "--out", str(tmp_path), "prop_1.vnnlib"]) == 2          # never replaced silently
    assert main(["examples", "--out", str(tmp_path), "nothing_like_this"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "already exists" in err[0] and "nothing_like_this" in err[1]
    assert main(["examples", "--out", str(tmp_path), "--force", "prop_1.vnnlib"]) == 0
