"""Marabou (exact, SMT-based, independent of nnmend's bounds) on one network and one VNN-LIB property.

The one place nnmend, its tests and its benchmarks hand files to Marabou. :func:`solve` stages a
*copy* of the network (an ``nn.Module`` is exported to ONNX) and of the property in a fresh temporary
folder, runs Marabou there with a time budget and deletes the folder with whatever Marabou wrote beside
its inputs, so the caller's files (the package's bundled ACAS Xu assets included) are never touched.

By default Marabou runs in a child process: a crash inside its C++ core, or a run that ignores its own
timeout, costs one ``unknown`` instead of the caller's process. ``isolate=False`` runs it in this
process (no start-up cost; for small networks in tests).

Statuses: ``"sat"`` (the property is violated; ``counterexample`` holds Marabou's input values, flat),
``"unsat"`` (it holds), ``"unknown"`` (timeout, error or unsupported network; ``detail`` says which).

Budgets: ``clock="wall"`` is Marabou's own timer; ``clock="cpu"`` caps the child's processor seconds
instead (``RLIMIT_CPU``), so a budget means the same search on an idle machine and on a loaded one.

Example::

    from nnmend.marabou import solve
    r = solve(guarded_network, acasxu_property_path(2), timeout=60)
    r.status, r.seconds          # ("unsat", 0.4)
"""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

STATUSES = ("sat", "unsat", "unknown")
NETWORK_SUFFIXES = (".onnx", ".nnet")
# seconds a child may run beyond Marabou's own timeout (its start-up: importing maraboupy and onnx, parsing)
GRACE_SECONDS = 60.0
_WORKER_RUN_NAME = "__nnmend_marabou_worker__"


@dataclass(frozen=True)
class MarabouResult:
    """Marabou's answer: ``status`` in :data:`STATUSES`, wall ``seconds`` (start-up included when isolated),
    ``detail`` (Marabou's own exit code, or why it gave none) and the flat input ``counterexample`` when sat."""

    status: str
    seconds: float
    detail: str = ""
    counterexample: tuple[float, ...] | None = None
    cpu_seconds: float | None = None

    def as_dict(self) -> dict:
        """A JSON-ready record (benchmarks store it as is)."""
        out: dict[str, Any] = {"result": self.status, "seconds": round(self.seconds, 3), "detail": self.detail}
        if self.cpu_seconds is not None:
            out["cpu_seconds"] = round(self.cpu_seconds, 3)
        if self.counterexample is not None:
            out["counterexample"] = list(self.counterexample)
        return out


def available() -> bool:
    """Whether maraboupy is installed (``requirements.txt`` installs it)."""
    return importlib.util.find_spec("maraboupy") is not None


def _stage_network(network: Any, folder: Path, input_shape: Sequence[int] | None = None) -> Path:
    """Copy (file) or export (``nn.Module``, to ONNX with ``input_shape`` per sample when it records none)
    the network into ``folder``."""
    if isinstance(network, (str, Path)):
        src = Path(network)
        if src.suffix.lower() not in NETWORK_SUFFIXES:
            from .errors import ModelError

            raise ModelError(f"{src}: Marabou reads {' or '.join(NETWORK_SUFFIXES)} networks, not {src.suffix or 'no suffix'!r}")
        dst = folder / f"network{src.suffix.lower()}"
        shutil.copyfile(src, dst)
        return dst
    from .io import save_network

    shape = {} if input_shape is None or hasattr(network, "nnmend_input_shape") else {"input_shape": tuple(input_shape)}
    return save_network(network, folder / "network.onnx", **shape)


def _stage_property(prop: Any, folder: Path) -> Path:
    """Copy a ``.vnnlib`` (or ``.vnnlib.gz``, decompressed) file, or write a :class:`VnnlibSpec`, into ``folder``.

    A spec of one region is written as ``property.json`` (box and rows) and handed to Marabou as bounds and
    (in)equations: Marabou 2.0's VNN-LIB reader refuses terms such as ``(* -1.0 Y_1)`` ("Caught an unknown
    exception"), so a general output row ``A y <= b`` cannot go through a file."""
    if not isinstance(prop, (str, Path)) and len(prop.regions) == 1 and prop.query is None:
        r = prop.regions[0]
        dst = folder / "property.json"
        dst.write_text(json.dumps({"lo": r.lo.double().flatten().tolist(), "hi": r.hi.double().flatten().tolist(),
                                   "unsafe": [[A.double().tolist(), b.double().reshape(-1).tolist()] for A, b in r.unsafe]}))
        return dst
    dst = folder / "property.vnnlib"
    if isinstance(prop, (str, Path)):
        src = Path(prop)
        if src.suffix.lower() == ".gz":
            with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            shutil.copyfile(src, dst)
        return dst
    from .io.vnnlib import write_vnnlib

    return write_vnnlib(prop, dst)


@contextlib.contextmanager
def staged(network: Any, prop: Any, input_shape: Sequence[int] | None = None) -> Iterator[tuple[Path, Path]]:
    """Yield ``(network_path, property_path)``: copies in a fresh temporary folder, removed (with anything
    written into it, such as ``property.vnnlib.compiled``) when the block ends. A module that records no
    input shape is exported with ``input_shape``, by default the property's ``(n_inputs,)``."""
    if input_shape is None and not isinstance(network, (str, Path)) and not hasattr(network, "nnmend_input_shape"):
        from .io.vnnlib import read_vnnlib

        # only the size is read here: the file itself is still handed over as a byte-for-byte copy
        input_shape = (prop.n_inputs if hasattr(prop, "n_inputs") else read_vnnlib(prop).n_inputs,)
    with tempfile.TemporaryDirectory(prefix="nnmend-marabou-") as tmp:
        folder = Path(tmp)
        yield _stage_network(network, folder, input_shape), _stage_property(prop, folder)


def _marabou_timeout(timeout: float | None) -> int:
    """Marabou takes whole seconds, 0 meaning none."""
    return 0 if timeout is None else max(1, math.ceil(timeout))


def _constrain(net: Any, spec: dict) -> None:
    """Input box as bounds; the unsafe set (rows ``A y <= b``, a disjunction of conjunctions) as inequalities,
    or one disjunction constraint when it has several disjuncts (strict rows are taken as non-strict: a larger
    unsafe set, so ``unsat`` still proves the property)."""
    from maraboupy import MarabouCore, MarabouUtils

    xs, ys = net.inputVars[0].flatten(), net.outputVars[0].flatten()
    for v, lo, hi in zip(xs, spec["lo"], spec["hi"]):
        net.setLowerBound(int(v), lo)
        net.setUpperBound(int(v), hi)
    disjuncts = []
    for A, b in spec["unsafe"]:
        rows = []
        for a, bi in zip(A, b) if A else [([0.0] * len(ys), 0.0)]:      # no row: every point is unsafe
            eq = MarabouUtils.Equation(MarabouCore.Equation.LE)
            for j, c in enumerate(a):
                if c or j == 0:
                    eq.addAddend(float(c), int(ys[j]))
            eq.setScalar(float(bi))
            rows.append(eq)
        disjuncts.append(rows)
    if len(disjuncts) == 1:
        for eq in disjuncts[0]:
            net.addEquation(eq, isProperty=True)
    else:
        net.addDisjunctionConstraint(disjuncts)


def _misread(net: Any, probe: Sequence, folder: Path) -> str:
    """Why Marabou's reading of the network differs from ``probe`` (``[(x, y), ...]`` flat lists: the network's
    outputs by another engine), or "" when it agrees at every point (|diff| <= 1e-4 · max(1, |y|))."""
    import numpy as np

    for x, y in probe:
        got = net.evaluateWithMarabou([np.asarray(x, dtype=np.float64)], filename=str(folder / "probe.log"))
        want = np.asarray(y, dtype=np.float64)
        out = None if got is None else np.asarray(got[0], dtype=np.float64).reshape(-1)
        if out is None or out.shape != want.shape or not np.abs(out - want).max() <= 1e-4 * max(1.0, np.abs(want).max()):
            diff = "no solution" if out is None or out.shape != want.shape else f"|diff| {np.abs(out - want).max():.3g}"
            return f"Marabou reads the network differently from the probe outputs ({diff} at one probe input)"
    return ""


def solve_staged(network_path: str | Path, property_path: str | Path, timeout: float | None,
                 probe: Sequence | None = None) -> dict:
    """Run Marabou in this process on files that are already private copies; a :meth:`MarabouResult.as_dict`.
    ``probe``: ``[(x, y)]`` the network's outputs at some inputs; Marabou must read the same network first.

    Callers use :func:`solve`; this is the part a child process runs."""
    import warnings

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # "Tensorflow parser is unavailable" on import
            from maraboupy import Marabou
        path = Path(network_path)
        net = Marabou.read_nnet(str(path), normalize=False) if path.suffix == ".nnet" else Marabou.read_onnx(str(path))
        why = _misread(net, probe, path.parent) if probe else ""
        if why:
            return MarabouResult("unknown", time.perf_counter() - t0, why).as_dict()
        options = Marabou.createOptions(timeoutInSeconds=_marabou_timeout(timeout), verbosity=0)
        if Path(property_path).suffix == ".json":
            _constrain(net, json.loads(Path(property_path).read_text()))
            code, values, _ = net.solve(options=options, verbose=False)
        else:
            code, values, _ = net.solve(propertyFilename=str(property_path), options=options, verbose=False)
    except Exception as exc:  # an operator Marabou cannot parse, a property it rejects: undecided, not a crash
        return MarabouResult("unknown", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:300]).as_dict()
    seconds = time.perf_counter() - t0
    if code == "sat":
        x = tuple(float(values[int(v)]) for v in net.inputVars[0].flatten())
        return MarabouResult("sat", seconds, code, x).as_dict()
    return MarabouResult(code if code == "unsat" else "unknown", seconds, code).as_dict()


def _cpu_seconds() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _solve_in_child(network_path: Path, property_path: Path, timeout: float | None, clock: str,
                    wall_limit: float | None, probe: Sequence | None = None) -> dict:
    """:func:`solve_staged` in a fresh interpreter that loads only this file and maraboupy (not torch)."""
    out = network_path.parent / "result.json"
    probe_file = network_path.parent / "probe.json"
    probe_file.write_text(json.dumps([[list(map(float, x)), list(map(float, y))] for x, y in probe or ()]))
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name=%r)" % _WORKER_RUN_NAME
    cmd = [sys.executable, "-c", code, __file__, str(network_path), str(property_path), str(timeout), clock, str(out),
           str(probe_file)]
    if wall_limit is None and clock == "wall" and timeout is not None:
        wall_limit = timeout + GRACE_SECONDS
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=wall_limit, text=True,
                              cwd=network_path.parent)
    except subprocess.TimeoutExpired:
        return MarabouResult("unknown", time.perf_counter() - t0, f"killed after {wall_limit:.0f} s wall").as_dict()
    if not out.exists():
        if proc.returncode == -signal.SIGXCPU:
            why = f"CPU budget of {timeout:g} s spent"
        else:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            why = f"Marabou exited {proc.returncode}: {tail[0]}"
        return MarabouResult("unknown", time.perf_counter() - t0, why[:300]).as_dict()
    rec = json.loads(out.read_text())
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def solve(network: Any, prop: Any, timeout: float | None = 60.0, *, clock: str = "wall", isolate: bool = True,
          wall_limit: float | None = None, input_shape: Sequence[int] | None = None,
          probe: Sequence | None = None) -> MarabouResult:
    """Decide ``prop`` on ``network`` with Marabou, on private copies of both (see the module docstring).

    Args:
        network: an ``nn.Module`` of layers nnmend exports to ONNX, or a ``.onnx`` / ``.nnet`` path (a
            ``.nnet`` is read in its normalised space, as VNN-LIB properties and nnmend's loader use it).
        prop: a ``.vnnlib`` (or ``.vnnlib.gz``) path or a :class:`nnmend.io.vnnlib.VnnlibSpec` (one region: handed
            over as bounds and inequations, see :func:`_stage_property`).
        timeout: the budget in seconds (``None``: no limit); whole seconds of Marabou's timer, or of CPU.
        clock: ``"wall"`` (Marabou's timer) or ``"cpu"`` (the child's processor time; needs ``isolate``).
        isolate: run Marabou in a child process (default) or in this one.
        wall_limit: kill the child after this many wall seconds (default: ``timeout`` + ``GRACE_SECONDS``
            with the wall clock, none with the CPU clock).
        input_shape: per-sample input shape for exporting a module that records none (see :func:`staged`).
        probe: ``[(x, y), ...]`` flat inputs and the network's outputs there (e.g. from onnxruntime): Marabou's
            reading of the network must give the same outputs before it searches, else the answer is
            ``unknown`` with a ``detail`` saying so (its ONNX parser has misread valid graphs).
    Returns:
        :class:`MarabouResult`; ``unknown`` with a ``detail`` when maraboupy is missing.
    """
    if clock not in ("wall", "cpu") or (clock == "cpu" and not isolate):
        raise ValueError(f"clock={clock!r}: use 'wall', or 'cpu' with isolate=True")
    if not available():
        return MarabouResult("unknown", 0.0, "maraboupy is not installed: pip install 'nnmend[verify]'")
    with staged(network, prop, input_shape) as (net_path, prop_path):
        if isolate:
            rec = _solve_in_child(net_path, prop_path, timeout, clock, wall_limit, probe)
        else:
            rec = solve_staged(net_path, prop_path, timeout, probe)
    cex = rec.get("counterexample")
    return MarabouResult(rec["result"], rec["seconds"], rec.get("detail", ""), tuple(cex) if cex is not None else None,
                         rec.get("cpu_seconds"))


def _worker_main(argv: list[str]) -> None:
    """Child entry: ``NETWORK PROPERTY TIMEOUT CLOCK OUT_JSON PROBE_JSON``; writes the record to ``OUT_JSON``.

    With the CPU clock, the process may use ``TIMEOUT`` more processor seconds once maraboupy is imported;
    the kernel stops it (SIGXCPU) beyond that and Marabou's own timer is off."""
    import resource
    import warnings

    net_path, prop_path, timeout, clock, out, probe_path = argv
    budget = None if timeout == "None" else float(timeout)
    if clock == "cpu" and budget is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import maraboupy.Marabou  # noqa: F401  (its import is not part of the budget)
        soft = math.ceil(_cpu_seconds() + budget)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
        budget = None
    rec = solve_staged(net_path, prop_path, budget, json.loads(Path(probe_path).read_text()))
    rec["cpu_seconds"] = round(_cpu_seconds(), 3)
    Path(out).write_text(json.dumps(rec))


__all__ = ["MarabouResult", "STATUSES", "available", "solve", "staged", "solve_staged"]

if __name__ == _WORKER_RUN_NAME:
    _worker_main(sys.argv[2:])      # argv: -c, this file, then the six arguments
