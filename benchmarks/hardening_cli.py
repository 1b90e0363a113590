"""The command line against a hostile user: crafted bad files through every command, outputs aimed at
inputs, and ``kill -9`` during writes. Each command runs as its own process (``python -m nnmend``), so
what a user would see is what is counted.

Outcome classes per run: ``clean`` (exit 2, exactly one line on stderr), ``internal`` (another non-zero
exit with one line: an unexpected error, hidden behind ``--debug``), ``traceback``, ``hang`` (past the
per-run limit), ``accepted`` (exit 0 on a bad input), ``other`` (several lines without a traceback, or a
signal). Every run also checks that no input changed and nothing was written at the output path.

Kill trials: a child process writes a checkpoint (single) or a repair-like set (network, report,
certificate; staged) in a loop with a generation stamp; it is killed with SIGKILL at a random moment.
Afterwards the destination must be a whole, loadable previous set (one generation), and the next write
into the folder must leave no temporary file behind.

    python benchmarks/hardening_cli.py            # every command x every crafted file, 60 kill trials
    python benchmarks/hardening_cli.py --quick    # a few runs and kills (the tests run this)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))

from nnmend.acasxu import acasxu_path, acasxu_property_path  # noqa: E402
from nnmend.benchmarking import add_out_arg, run_jobs, write_results  # noqa: E402
from nnmend.io import save_checkpoint, save_network  # noqa: E402
from nnmend.io.atomic import STAGE_PREFIX, TMP_PREFIX  # noqa: E402
from nnmend.nets import shnn_mlp  # noqa: E402
from nnmend.repair.nca.rule import NCARule  # noqa: E402

SEED = 0
PROP = acasxu_property_path(2)
GARBAGE = b"\x00\xff\x13PK\x03\x04" + bytes(range(256)) * 4
KINDS = ("missing", "empty", "garbage", "folder", "truncated")
CLASSES = ("clean", "internal", "traceback", "hang", "accepted", "other")

# crafted files by the slot they are fed to
BAD_MODELS = [f"{k}{s}" for s in (".pt", ".onnx", ".nnet") for k in KINDS] + ["text.xyz"]
BAD_DATA = [f"{k}{s}" for s in (".npz", ".csv", ".mat") for k in KINDS if k != "truncated" or s == ".npz"] + ["text.xyz"]
BAD_PROPS = [f"{k}.vnnlib" for k in KINDS]

# (case name, argv); {bad} is the crafted file, {good} a good SHNN MLP, {onnx} an ACAS Xu ONNX file, {rule} an
# NCA rule, {out} the output path stem
_G = "{good}"
MODEL_CASES = [
    ("damage", ["damage", "{bad}", "--layer", "fc1", "--out", "{out}.pt"]),
    ("diagnose", ["diagnose", "{bad}", "--reference", _G, "--n", "4", "--out", "{out}.json"]),
    ("diagnose-ref", ["diagnose", _G, "--reference", "{bad}", "--n", "4", "--out", "{out}.json"]),
    ("heal", ["heal", "{bad}", "--reference", _G, "--epochs", "1", "--out", "{out}.pt"]),
    ("heal-ref", ["heal", _G, "--reference", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
    ("attack", ["attack", "{bad}", "--n", "4", "--save", "{out}.npz"]),
    ("convert", ["convert", "{bad}", "{out}.pt"]),
    ("verify", ["verify", "{bad}", str(PROP), "--timeout", "5"]),
    ("nca-train", ["nca", "train", "{bad}", "--layer", "fc1", "--iterations", "1", "--out", "{out}.pt"]),
    ("repair-guard", ["repair", "{bad}", "--method", "guard", "--property", str(PROP), "--out", "{out}.pt"]),
    ("repair-nca", ["repair", "{bad}", "--method", "nca", "--rule", "{rule}", "--out", "{out}.pt"]),
    ("repair-nca-rule", ["repair", _G, "--method", "nca", "--rule", "{bad}", "--out", "{out}.pt"]),
    ("repair-nnrepair", ["repair", "{bad}", "--method", "nnrepair", "--limit", "20", "--out", "{out}.pt"]),
    ("repair-patchpro", ["repair", "{bad}", "--method", "patchpro", "--property", str(PROP), "--out", "{out}.pt"]),
    ("repair-prorepair", ["repair", "{bad}", "--method", "prorepair", "--property", str(PROP), "--out", "{out}.pt"]),
]
DATA_CASES = [
    ("train", ["train", "--data", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
    ("diagnose-data", ["diagnose", _G, "--reference", _G, "--data", "{bad}", "--out", "{out}.json"]),
    ("heal-data", ["heal", _G, "--reference", _G, "--data", "{bad}", "--epochs", "1", "--out", "{out}.pt"]),
    ("attack-data", ["attack", _G, "--data", "{bad}", "--save", "{out}.npz"]),
    ("nca-train-data", ["nca", "train", _G, "--layer", "fc1", "--data", "{bad}", "--iterations", "1", "--out", "{out}.pt"]),
    ("repair-prorepair-points", ["repair", _G, "--method", "prorepair", "--points", "{bad}", "--out", "{out}.pt"]),
    ("repair-patchpro-robustness", ["repair", _G, "--method", "patchpro", "--robustness", "{bad}", "--eps", "0.1",
                                    "--out", "{out}.pt"]),
    ("repair-nca-mask", ["repair", _G, "--method", "nca", "--rule", "{rule}", "--mask", "{bad}", "--out", "{out}.pt"]),
]
PROPERTY_CASES = [
    ("verify-property", ["verify", "{onnx}", "{bad}", "--timeout", "5"]),
    ("repair-guard-property", ["repair", "{onnx}", "--method", "guard", "--property", "{bad}", "--out", "{out}.pt"]),
    ("repair-prorepair-property", ["repair", "{onnx}", "--method", "prorepair", "--property", "{bad}", "--out", "{out}.pt"]),
    ("repair-patchpro-property", ["repair", "{onnx}", "--method", "patchpro", "--property", "{bad}", "--out", "{out}.pt"]),
]


QUICK = {("damage", "empty.pt"), ("train", "garbage.npz"), ("verify-property", "truncated.vnnlib"),
         ("repair-nca-rule", "folder.pt")}


def bad_input_cases() -> list[tuple[str, list[str], str]]:
    """Every (case, argv template, crafted file name) of the grid."""
    return ([(n, a, b) for n, a in MODEL_CASES for b in BAD_MODELS] + [(n, a, b) for n, a in DATA_CASES for b in BAD_DATA]
            + [(n, a, b) for n, a in PROPERTY_CASES for b in BAD_PROPS])


def craft(folder: Path) -> Path:
    """Write the good files and every crafted bad file into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    save_network(shnn_mlp(), folder / "good.pt")
    shutil.copy(acasxu_path(2, 1), folder / "good.onnx")
    np.savez(folder / "good.npz", x=np.zeros((4, 784), np.float32), y=np.zeros(4, np.int64))
    save_checkpoint(NCARule(hidden_channels=3, width=8, meta={"layer": "fc1"}), folder / "rule.pt")
    for suffix in (".pt", ".onnx", ".nnet", ".npz", ".vnnlib", ".csv", ".mat"):
        (folder / f"empty{suffix}").write_bytes(b"")
        (folder / f"garbage{suffix}").write_bytes(GARBAGE)
        (folder / f"folder{suffix}").mkdir(exist_ok=True)
    for name in ("good.pt", "good.onnx", "good.npz"):
        blob = (folder / name).read_bytes()
        (folder / f"truncated{Path(name).suffix}").write_bytes(blob[: len(blob) // 2])
    text = PROP.read_text()
    cut = text.index("(assert", len(text) // 2) + len("(assert (<= X_")      # inside an assertion
    (folder / "truncated.vnnlib").write_text(text[:cut])
    (folder / "truncated.nnet").write_text("// header\n3,5,5,50,\n5,50,50,50\n")
    (folder / "text.xyz").write_text("not a network\n")
    return folder


def fill(argv: Iterable[str], folder: Path, bad: str, out_stem: Path) -> list[str]:
    """The argv of a case with its placeholders replaced."""
    subst = {"{bad}": str(folder / bad), "{good}": str(folder / "good.pt"), "{onnx}": str(folder / "good.onnx"),
             "{rule}": str(folder / "rule.pt")}
    return [subst.get(a, a).replace("{out}", str(out_stem)) for a in argv]


def same_path_cases(d: Path) -> list[tuple[str, list[str], Path]]:
    """(case, argv, the input it would destroy) for outputs aimed at inputs; needs :func:`prepare_same_path`."""
    m, data, onnx = d / "m.pt", d / "d.npz", d / "x.onnx"
    return [
        ("damage M --out M", ["damage", str(m), "--layer", "fc1", "--out", str(m)], m),
        ("attack M --save M", ["attack", str(m), "--n", "4", "--save", str(m)], m),
        ("diagnose M --out M", ["diagnose", str(m), "--reference", str(m), "--n", "4", "--out", str(m)], m),
        ("heal M --out M", ["heal", str(m), "--reference", str(m), "--out", str(m)], m),
        ("convert M M", ["convert", str(m), str(m)], m),
        ("nca train M --out M", ["nca", "train", str(m), "--layer", "fc1", "--out", str(m)], m),
        ("train --data D --out D", ["train", "--data", str(data), "--out", str(data)], data),
        ("attack --data D --save D", ["attack", str(m), "--data", str(data), "--save", str(data)], data),
        ("repair X.onnx --out X.pt (ONNX sibling)",
         ["repair", str(onnx), "--method", "patchpro", "--property", str(PROP), "--out", str(d / "x.pt")], onnx),
        ("repair --rule M --out M", ["repair", str(m), "--method", "nca", "--rule", str(m), "--out", str(m)], m),
        ("repair --property X.json --out X.pt (report sibling)",
         ["repair", str(onnx), "--method", "guard", "--property", str(d / "x.json"), "--out", str(d / "x.pt")],
         d / "x.json"),
        ("diagnose --out D.json --data D.png (chart sibling)",
         ["diagnose", str(m), "--reference", str(m), "--n", "4", "--out", str(d / "d.json"), "--data", str(d / "d.png")],
         d / "d.png"),
        ("damage --out LINK-to-M --force", ["damage", str(m), "--layer", "fc1", "--out", str(d / "link.pt"), "--force"], m),
        ("verify --instances I --output I", ["verify", "--instances", str(d / "i.csv"), "--output", str(d / "i.csv")],
         d / "i.csv"),
    ]


def prepare_same_path(d: Path, crafted: Path) -> None:
    """The inputs :func:`same_path_cases` aims at."""
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(crafted / "good.pt", d / "m.pt")
    shutil.copy(crafted / "good.npz", d / "d.npz")
    shutil.copy(crafted / "good.onnx", d / "x.onnx")
    shutil.copy(PROP, d / "x.json")                      # an input that carries the report's name
    (d / "d.png").write_bytes(b"\x89PNG not really")
    (d / "i.csv").write_text(f"x.onnx,{PROP},5\n")
    if not (d / "link.pt").exists():
        os.symlink(d / "m.pt", d / "link.pt")


def classify(code: int | None, err: str) -> str:
    """The outcome class of one run (``code`` None: it hung)."""
    lines = err.strip().splitlines()
    if code is None:
        return "hang"
    if "Traceback" in err:
        return "traceback"
    if code == 0:
        return "accepted"
    if len(lines) == 1:
        return "clean" if code == 2 else ("internal" if code > 0 else "other")
    return "other"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _nnmend(argv: list[str], limit: float) -> tuple[int | None, str, float]:
    """Run ``python -m nnmend ARGV``; (exit code or None if it hung, stderr, seconds)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent / "src"), os.environ.get("PYTHONPATH", "")]),
           "NNMEND_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "nnmend", *argv], capture_output=True, text=True, timeout=limit, env=env)
        return r.returncode, r.stderr, time.perf_counter() - t0
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, err, time.perf_counter() - t0


def run_case(case: str, argv: list[str], bad: str, folder: str, limit: float) -> dict:
    """One crafted file through one command: its class, whether it wrote anything or changed an input."""
    crafted = Path(folder)
    before = _digests(crafted)
    with tempfile.TemporaryDirectory(prefix="hardening-out-") as out_dir:
        code, err, seconds = _nnmend(fill(argv, crafted, bad, Path(out_dir) / "result"), limit)
        wrote = sorted(os.listdir(out_dir))
    return {"case": case, "file": bad, "kind": bad.split(".")[0] if "." in bad else bad, "code": code,
            "class": classify(code, err), "line": err.strip().splitlines()[-1][:300] if err.strip() else "",
            "wrote": wrote, "inputs_changed": sorted(k for k, v in _digests(crafted).items() if before.get(k) != v),
            "seconds": round(seconds, 2)}


def run_same_path(case: str, argv: list[str], victim: str, folder: str, limit: float) -> dict:
    """An output aimed at an input: refused in one line, the input unchanged."""
    d = Path(folder)
    before = _digests(d)
    code, err, seconds = _nnmend(argv, limit)
    changed = sorted(k for k, v in _digests(d).items() if before.get(k) != v)
    line = err.strip().splitlines()[-1][:300] if err.strip() else ""
    return {"case": case, "victim": Path(victim).name, "code": code, "class": classify(code, err),
            "refused": code == 2 and "refusing to overwrite the input" in line, "line": line,
            "input_lost": Path(victim).name in changed or not Path(victim).exists(), "changed": changed,
            "seconds": round(seconds, 2)}


# --- kill -9 during writes ------------------------------------------------------------------------------------
KILL_CHILD = r"""
import json, sys
import torch
from nnmend.io import save_checkpoint
from nnmend.io.atomic import atomic_write, staged_outputs
folder, mode = sys.argv[1], sys.argv[2]
net = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512))
gen = 0
while True:
    gen += 1
    if mode == "single":
        save_checkpoint(net, f"{folder}/net.pt", {"generation": gen})
    else:
        with staged_outputs(folder) as stage:
            save_checkpoint(net, stage / "net.pt", {"generation": gen})
            for name in ("net.json", "net.certificate.json"):
                with atomic_write(stage / name, "w") as fh:
                    json.dump({"generation": gen, "pad": "x" * 200000}, fh)
    if gen == 1:
        print("ready", flush=True)
"""
KILL_SETS = {"single": ["net.pt"], "set": ["net.certificate.json", "net.json", "net.pt"]}


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((TMP_PREFIX, STAGE_PREFIX)))


def _generation(path: Path) -> int:
    """The generation stamped in a complete file; raises on a torn file."""
    from nnmend.io import load_checkpoint

    if path.suffix == ".pt":
        return int(load_checkpoint(path).meta["generation"])
    return int(json.loads(path.read_text())["generation"])


def kill_trial(mode: str, trial: int, seed: int) -> dict:
    """Start a writer, kill -9 it at a random moment, inspect what it left."""
    from nnmend.io.atomic import clean_stale

    rng = random.Random(seed * 1000 + trial)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="hardening-kill-") as tmp:
        folder = Path(tmp)
        child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(folder), mode], stdout=subprocess.PIPE,
                                 text=True, env=env)
        ready = child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        litter = _litter(folder)
        clean_stale(folder)                                 # what the next write into the folder does first
        left = _litter(folder)
        names = sorted(p.name for p in folder.iterdir())
        try:
            gens = sorted({_generation(folder / n) for n in KILL_SETS[mode]})
            torn = False
        except Exception:                                   # noqa: BLE001 - a torn file is the failure we count
            gens, torn = [], True
    return {"mode": mode, "trial": trial, "ready": ready, "mid_write": bool(litter), "litter_at_kill": len(litter),
            "litter_after_next_write": len(left), "set_complete": names == KILL_SETS[mode], "torn": torn,
            "generations": gens, "mixed": len(gens) > 1}


def markdown(records: list[dict], same: list[dict], kills: list[dict], quick: bool) -> str:
    by_case: dict[str, dict[str, int]] = {}
    for r in records:
        by_case.setdefault(r["case"], {c: 0 for c in CLASSES})[r["class"]] += 1
    total = {c: sum(v[c] for v in by_case.values()) for c in CLASSES}
    lines = [f"# Hardening the command line{' (quick)' if quick else ''}", "",
             f"{len(records)} runs of crafted bad files ({len({r['file'] for r in records})} files: missing, empty, "
             "garbage, folder, truncated, wrong suffix) through every command, each as its own process.", "",
             "| case | runs | " + " | ".join(CLASSES) + " |", "|---|---|" + "---|" * len(CLASSES)]
    for case, counts in by_case.items():
        lines.append(f"| {case} | {sum(counts.values())} | " + " | ".join(str(counts[c]) for c in CLASSES) + " |")
    lines.append(f"| **all** | {len(records)} | " + " | ".join(f"**{total[c]}**" for c in CLASSES) + " |")
    wrote = [r for r in records if r["wrote"]]
    changed = [r for r in records if r["inputs_changed"]]
    lines += ["", f"Runs that wrote at the output path: {len(wrote)}; runs that changed an input: {len(changed)}.", ""]
    odd = [r for r in records if r["class"] != "clean"]
    if odd:
        lines += ["Runs that were not a clean one-line error:", ""]
        lines += [f"- `{r['case']}` on `{r['file']}`: {r['class']} (exit {r['code']}): {r['line']}" for r in odd]
        lines.append("")
    lines += ["## Outputs aimed at inputs", "", "| case | exit | refused | input lost | line |", "|---|---|---|---|---|"]
    for r in same:
        lines.append(f"| {r['case']} | {r['code']} | {'yes' if r['refused'] else 'no'} | "
                     f"{'**yes**' if r['input_lost'] else 'no'} | {r['line'].replace('|', '/')[:160]} |")
    lines += ["", "## kill -9 during writes", "",
              "| writer | trials | landed mid-write | litter after the next write | torn files | mixed sets | "
              "previous set lost |", "|---|---|---|---|---|---|---|"]
    for mode in KILL_SETS:
        ks = [k for k in kills if k["mode"] == mode]
        if ks:
            lines.append(f"| {mode} | {len(ks)} | {sum(k['mid_write'] for k in ks)} | "
                         f"{sum(k['litter_after_next_write'] for k in ks)} | {sum(k['torn'] for k in ks)} | "
                         f"{sum(k['mixed'] for k in ks)} | {sum(not k['set_complete'] for k in ks)} |")
    lines += ["", "Classes: clean = exit 2 and one line; internal = another non-zero exit and one line (an unexpected "
              "error; `--debug` shows its traceback); hang = past the per-run limit; accepted = exit 0 on a bad input.",
              "single = one checkpoint by `atomic_write`; set = network + report + certificate staged and moved "
              "together (`staged_outputs`), as `nnmend repair` writes them. A kill \"landed mid-write\" when it left "
              "a temporary file or stage behind."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one case per command slot, 2 kill trials per writer")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds before a run counts as a hang (default 300)")
    ap.add_argument("--kills", type=int, default=30, help="kill trials per writer (default 30)")
    ap.add_argument("--filter", default=None, metavar="REGEX", help="only the cases whose name matches (e.g. '^verify')")
    ap.add_argument("--merge", action="store_true", help="keep the earlier results' cases this run does not redo "
                    "(e.g. with --filter: a rerun of some cases replaces just those rows)")
    add_out_arg(ap, ROOT / "results", "--results-dir")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    cases = bad_input_cases()
    kills = 2 if args.quick else args.kills
    if args.quick:
        cases = [c for c in cases if (c[0], c[2]) in QUICK]
    if args.filter:
        cases = [c for c in cases if re.search(args.filter, c[0])]
    with tempfile.TemporaryDirectory(prefix="hardening-") as tmp:
        crafted = craft(Path(tmp) / "crafted")
        records = run_jobs(run_case, [{"case": c, "argv": a, "bad": b, "folder": str(crafted), "limit": args.limit}
                                      for c, a, b in cases], desc="bad inputs")
        same_dir = Path(tmp) / "same"
        prepare_same_path(same_dir, crafted)
        same_cases = same_path_cases(same_dir)
        if args.quick:
            same_cases = same_cases[:1] + same_cases[8:9]
        if args.filter:
            same_cases = [c for c in same_cases if re.search(args.filter, c[0])]
        same = run_jobs(run_same_path, [{"case": c, "argv": a, "victim": str(v), "folder": str(same_dir),
                                         "limit": args.limit} for c, a, v in same_cases], desc="same path")
    trials = run_jobs(kill_trial, [{"mode": m, "trial": t, "seed": SEED} for m in KILL_SETS for t in range(kills)],
                      desc="kill -9")
    name = "hardening_cli_quick" if args.quick else "hardening_cli"
    earlier = Path(args.out) / f"{name}.json"
    if args.merge and earlier.exists():
        old = json.loads(earlier.read_text())
        redo = {(r["case"], r.get("bad")) for r in records}
        records = [r for r in old["records"] if (r["case"], r.get("bad")) not in redo] + records
        redo = {(r["case"], r.get("victim")) for r in same}
        same = [r for r in old.get("same_path", []) if (r["case"], r.get("victim")) not in redo] + same
        trials = trials or old.get("kill_trials", [])
    summary = {"runs": len(records), "classes": {c: sum(r["class"] == c for r in records) for c in CLASSES},
               "wrote_output": sum(bool(r["wrote"]) for r in records),
               "inputs_changed": sum(bool(r["inputs_changed"]) for r in records),
               "same_path": {"cases": len(same), "refused": sum(r["refused"] for r in same),
                             "inputs_lost": sum(r["input_lost"] for r in same)},
               "kills": {m: {"trials": sum(k["mode"] == m for k in trials),
                             "mid_write": sum(k["mid_write"] for k in trials if k["mode"] == m),
                             "litter_after_next_write": sum(k["litter_after_next_write"] for k in trials if k["mode"] == m),
                             "torn": sum(k["torn"] for k in trials if k["mode"] == m),
                             "mixed": sum(k["mixed"] for k in trials if k["mode"] == m),
                             "set_lost": sum(not k["set_complete"] for k in trials if k["mode"] == m)}
                         for m in KILL_SETS}}
    md = markdown(records, same, trials, args.quick)
    write_results(name, records, md, args.out, started=started,
                  extra={"quick": args.quick, "filter": args.filter, "seed": SEED, "limit_seconds": args.limit, "summary": summary,
                         "same_path": same, "kill_trials": trials})
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
