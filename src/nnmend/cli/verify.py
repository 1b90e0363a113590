"""``nnmend verify``: decide a VNN-LIB property on a network, or run a VNN-COMP instance list.

    nnmend verify MODEL.onnx PROP.vnnlib [--timeout 116]      # prints unsat / sat + counterexample / timeout / unknown
    nnmend verify --instances instances.csv [--output results.csv] [--resume] [--timeout T]

With a timeout the answer comes within ``T + 2`` seconds of the command's start, whatever the network
(the start-up of Python and torch counts too: on a busy machine it alone can take longer): the files are
read (bad input: one line, exit 2), then the search runs in a forked worker process that stops itself at
the deadline and is killed shortly after it if it has not (a torch operation cannot be interrupted from
inside). An instance list runs every row, files included, in its own worker, so one that fails, hangs or crashes becomes one ``error`` or ``timeout`` row and the
others still run; rows are appended (and flushed) as they finish, ``--resume`` skips the rows already in
the output, and the exit status is 1 when any row is an error.
"""
from __future__ import annotations

import argparse
import csv
import io as _io
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import errors
from ..errors import DataError, NnmendError

if TYPE_CHECKING:
    from ..bounds.bab import BabConfig

RESULT_WORDS = {"verified": "unsat", "falsified": "sat", "timeout": "timeout", "unknown": "unknown"}
GRACE_S = 0.5            # a worker still busy this long after its deadline is killed
FIELDS = ["onnx", "vnnlib", "timeout", "result", "seconds", "message"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="verify a VNN-LIB property on a network (VNN-COMP result line)",
                       description="Decide a VNN-LIB property with sound bounds (CROWN / alpha-CROWN) and input "
                                   "branch and bound; prints unsat, sat with a confirmed counterexample, timeout or unknown.")
    p.add_argument("model", nargs="?", help="network file (.onnx, .nnet, .pt)")
    p.add_argument("property", nargs="?", help="property file (.vnnlib, .vnnlib.gz; VNN-LIB 1.0 or 2.0)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds; the answer comes within T + 2 s (default: none; an instance list gives its own)")
    p.add_argument("--instances", metavar="CSV",
                   help="VNN-COMP instance list: onnx,vnnlib,timeout per row, paths relative to the CSV's folder")
    p.add_argument("--output", metavar="CSV", default="verify_results.csv",
                   help="results CSV for --instances, one row per instance as it finishes "
                        "(onnx,vnnlib,timeout,result,seconds,message); default verify_results.csv")
    p.add_argument("--resume", action="store_true", help="keep the rows already in --output and run only the others")
    p.add_argument("--force", action="store_true", help="replace an existing --output instead of refusing")
    p.add_argument("--memory-gb", type=float, default=None, metavar="GB",
                   help="memory for one batch of bounds (default: a quarter of the machine's memory, at most 8 GB)")
    p.set_defaults(func=run)


def counterexample_text(x: torch.Tensor, y: torch.Tensor) -> str:
    """VNN-COMP's witness: ``((X_0 v)\\n (X_1 v) ... (Y_0 v) ...)`` with float64 values."""
    items = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x.reshape(-1))]
    items += [f"(Y_{i} {float(v)!r})" for i, v in enumerate(y.reshape(-1))]
    return "(" + "\n ".join(items) + ")"


# ------------------------------------------------------------------------------------ one instance


def load_instance(model_path: str | Path, property_path: str | Path):
    """``(network, SafetyProperty)`` of one instance; bad files raise one-line :class:`~nnmend.errors.NnmendError`.
    A VNN-LIB 2.0 query over hidden nodes, several networks or non-box inputs gets the augmented network
    its variables are over (:func:`nnmend.io.query.augment`)."""
    from ..errors import ModelError, PropertyError, reading
    from ..io import load_network
    from ..io.query import augment
    from ..io.vnnlib import read_vnnlib
    from ..properties import SafetyProperty

    with reading(model_path, ModelError):
        net = load_network(model_path)
    shape = getattr(net, "nnmend_input_shape", None)
    with reading(property_path, PropertyError):     # the network's input size caps the declarations
        spec = read_vnnlib(property_path, n_inputs=math.prod(shape) if shape else None)
    prop = SafetyProperty(list(spec.regions), str(property_path))
    from ..repair.export_pwl import for_verifier     # a repaired network with a box indicator: its exact PWL form

    net = for_verifier(net, [(r.lo, r.hi) for r in spec.regions], str(model_path))
    q = spec.query
    if q is None:
        return net, prop
    copies = None
    if any(q.hidden):
        if not str(model_path).endswith((".onnx", ".onnx.gz")):
            raise PropertyError(f"{property_path}: hidden-node variables name ONNX tensors; {model_path} is not an "
                                "ONNX file")
        from ..io.onnx import load_onnx

        with reading(model_path, ModelError):
            copies = [load_onnx(model_path, extra_outputs=tuple(name for name, _ in h)) if h else net
                      for h in q.hidden]
        for module, h in zip(copies, q.hidden):
            with torch.no_grad():
                got = module(torch.zeros(1, *tuple(shape or (q.n_in,)))).numel()
            if got != q.n_out + sum(n for _, n in h):
                raise PropertyError(f"{property_path}: the hidden tensors {[n for n, _ in h]} hold "
                                    f"{got - q.n_out} values, not the {sum(n for _, n in h)} declared")
    return augment(net, q, copies), prop


def decide(net, prop, timeout: float | None, started: float, config: BabConfig | None = None) -> tuple[str, str, float]:
    """``(result word, text to print, seconds)``: :func:`nnmend.properties.check` with what is left of
    ``timeout`` (counted from ``started``, a ``time.monotonic()`` value)."""
    from ..bounds.bab import BabConfig
    from ..properties import check

    left = None if timeout is None else max(0.0, started + timeout - time.monotonic())
    res = check(net, prop, left, config=config or BabConfig())
    word = RESULT_WORDS[res.status]
    text = word if res.counterexample is None else f"{word}\n{counterexample_text(*res.counterexample)}"
    return word, text, time.monotonic() - started


def verify_one(model_path: str | Path, property_path: str | Path, timeout: float | None,
               started: float | None = None, config: BabConfig | None = None) -> tuple[str, str, float]:
    """``(result word, text to print, seconds)`` for one instance, in this process.

    ``timeout`` counts from ``started`` (a ``time.monotonic()`` value; default now), so loading the network
    and reading the property spend the same budget as the search."""
    started = time.monotonic() if started is None else started
    return decide(*load_instance(model_path, property_path), timeout, started, config)


def _worker(conn, job) -> None:
    """Child process: run ``job()`` (a verify call) and send ``("ok", word, text)`` or ``("error", class, message)``."""
    torch.set_num_threads(1)     # never use a thread pool inherited across fork
    try:
        word, text, _ = job()
        conn.send(("ok", word, text))
    except NnmendError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
    except MemoryError:
        conn.send(("error", "NnmendError", "out of memory while verifying (try a smaller --memory-gb)"))
    except Exception as exc:  # noqa: BLE001  (reported as one line; the parent decides what to do)
        conn.send(("crash", type(exc).__name__, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        conn.close()


def _can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def run_isolated(model: str | Path, prop: str | Path, timeout: float | None,
                 started: float | None = None, *, load_first: bool = False, config: BabConfig | None = None
                 ) -> tuple[str, str, float]:
    """:func:`verify_one` in a forked worker, answered by ``started + timeout + GRACE_S`` at the latest.

    Returns ``(word, text, seconds)``; ``word`` is ``timeout`` when the worker had to be killed. Raises the
    worker's :class:`~nnmend.errors.NnmendError` (same class) for bad input, and ``RuntimeError`` (one line)
    when it crashed or died. ``load_first``: read the files in this process (bad input is then refused
    whatever the time) and fork only the search. Without ``fork`` (or without a timeout) it runs in this
    process."""
    started = time.monotonic() if started is None else started
    if timeout is None or not _can_fork():
        return verify_one(model, prop, timeout, started, config)
    if load_first:
        net, spec = load_instance(model, prop)
        job = lambda: decide(net, spec, timeout, started, config)  # noqa: E731
    else:
        job = lambda: verify_one(model, prop, timeout, started, config)  # noqa: E731
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, job), daemon=True)
    proc.start()
    send.close()
    msg = None
    try:
        ready = recv.poll(max(0.0, started + timeout + GRACE_S - time.monotonic()))
        msg = recv.recv() if ready else None
    except (EOFError, OSError):
        ready = True                 # the worker closed the pipe without answering: it died
    finally:
        recv.close()
    if not ready:
        _kill(proc)                  # past its deadline
        return "timeout", "timeout", time.monotonic() - started
    seconds = time.monotonic() - started
    proc.join(0.2 if msg is not None else 1.0)   # an answered worker is only exiting; a dead one gives its status
    if proc.is_alive():
        _kill(proc)
    if msg is None:
        raise RuntimeError(f"{prop}: the verifier process died ({_exit_text(proc.exitcode)})")
    if msg[0] == "ok":
        return msg[1], msg[2], seconds
    if msg[0] == "error":
        cls = getattr(errors, msg[1], NnmendError)
        raise (cls if isinstance(cls, type) and issubclass(cls, NnmendError) else NnmendError)(msg[2])
    raise RuntimeError(msg[2])


def _kill(proc) -> None:
    """Kill a worker and reap it in the background (a process with gigabytes to free can take a second to
    die; the answer does not wait for that)."""
    proc.kill()
    threading.Thread(target=proc.join, daemon=True).start()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def command_started() -> float:
    """``time.monotonic()`` at this command's start: the process's start when it is ``nnmend verify`` itself
    (interpreter start-up and imports count against the timeout), else now (called through ``main`` in-process)."""
    now = time.monotonic()
    return now - _process_age() if sys.argv[1:2] == ["verify"] else now


def _process_age() -> float:
    """Seconds since this process started; 0 where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# ------------------------------------------------------------------------------------ instance lists


@dataclass(frozen=True)
class Instance:
    """One row of an instance list: the paths as written, where they resolve, its timeout, or the problem."""

    line: int
    onnx: str
    vnnlib: str
    timeout: float | None
    model_path: Path | None = None
    property_path: Path | None = None
    problem: str = ""


def resolve(folder: Path, name: str, subfolder: str) -> Path | None:
    """Where a path of an instance list points: relative to the CSV's folder, as written, with or without
    ``.gz``, or under ``onnx/`` / ``vnnlib/`` (the competition's layout) when the list gives bare names."""
    base = Path(name)
    roots = [base if base.is_absolute() else folder / base]
    if not base.is_absolute() and len(base.parts) == 1:
        roots.append(folder / subfolder / base)
    for root in roots:
        alt = root.with_name(root.name[:-3]) if root.name.endswith(".gz") else root.with_name(root.name + ".gz")
        for cand in (root, alt):
            if cand.is_file():
                return cand
    return None


def _is_header(row: list[str]) -> bool:
    return row[0].strip().lower() == "onnx" and row[1].strip().lower() == "vnnlib"


def read_instances(path: Path) -> list[Instance]:
    """The rows of a VNN-COMP ``instances.csv`` (``onnx,vnnlib,timeout``; extra columns and a header allowed).

    A row that cannot run (missing file, bad timeout, too few fields) is kept with its ``problem``, so the list
    runs on past it. Raises :class:`DataError` when the file itself cannot be read as CSV text."""
    from ..io.vnnlib import read_text

    try:
        text = read_text(path, 64 << 20)
        rows = list(csv.reader(_io.StringIO(text)))
    except (NnmendError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the instance list ({str(exc).removeprefix(str(path) + ': ')})") from None
    folder = path.parent
    out = []
    for line, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and len(row) >= 2 and _is_header(row):
            continue
        onnx, vnnlib = (row + ["", ""])[:2]
        onnx, vnnlib = onnx.strip(), vnnlib.strip()
        if len(row) < 3:
            out.append(Instance(line, onnx, vnnlib, None, problem=f"{path}:{line}: expected 'onnx,vnnlib,timeout', "
                                                                  f"got {len(row)} field(s)"))
            continue
        try:
            timeout = float(row[2])
            if not (math.isfinite(timeout) and timeout > 0):
                raise ValueError
        except ValueError:
            out.append(Instance(line, onnx, vnnlib, None, problem=f"{path}:{line}: timeout {row[2]!r} is not a "
                                                                  "positive number"))
            continue
        model, prop = resolve(folder, onnx, "onnx"), resolve(folder, vnnlib, "vnnlib")
        missing = [f"{name} (looked in {folder.resolve()})" for name, p in ((onnx, model), (vnnlib, prop)) if p is None]
        problem = f"{path}:{line}: file not found: {', '.join(missing)}" if missing else ""
        out.append(Instance(line, onnx, vnnlib, timeout, model, prop, problem))
    return out


def _check_output(output: Path, csv_path: Path, instances: list[Instance], resume: bool, force: bool) -> None:
    """Refuse an output that is an input (the list, a network, a property), a folder, or that exists without
    ``--resume`` / ``--force`` (the CLI's shared output check)."""
    from ._common import check_outputs

    inputs: dict[str, object] = {"--instances": csv_path}
    for inst in instances:
        inputs[f"row {inst.line} onnx"], inputs[f"row {inst.line} vnnlib"] = inst.model_path, inst.property_path
    check_outputs(inputs, {output: "--output"}, force or resume)


def _done_rows(output: Path) -> list[dict]:
    """Complete rows of an earlier run's output (a row cut by a kill is dropped)."""
    if not output.exists():
        return []
    try:
        text = output.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{output}: cannot read to resume ({exc})") from None
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(_io.StringIO(text)))
    if rows and set(FIELDS) - set(rows[0]):
        raise DataError(f"{output}: not a results file of nnmend verify (columns {', '.join(rows[0])})")
    return [r for r in rows if r.get("result")]


def _start_output(output: Path, kept: list[dict]) -> None:
    """Write the header and the rows kept from an earlier run, atomically."""
    from ..io import atomic_write

    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(kept)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output, "w") as fh:
        fh.write(buf.getvalue())


def _append(output: Path, record: dict) -> None:
    buf = _io.StringIO()
    csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore").writerow(record)
    with output.open("a", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def preload() -> None:
    """Import, once in the parent, what every worker needs (the readers, the bounds, and ``torch._dynamo``, which
    ``torch.optim`` imports on first use, 3-15 s on a busy 2-core machine): forked workers inherit it instead
    of paying it inside each instance's timeout."""
    import importlib

    for name in ("nnmend.io", "nnmend.properties", "nnmend.bounds.bab", "onnx", "torch._dynamo"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def run_one_row(inst: Instance, timeout: float | None, config: BabConfig | None = None) -> dict:
    """The output row of one instance: never raises for a problem of the instance itself."""
    t = timeout if timeout is not None else inst.timeout
    record = {"onnx": inst.onnx, "vnnlib": inst.vnnlib, "timeout": "" if t is None else f"{t:g}",
              "result": "error", "seconds": 0.0, "message": inst.problem}
    if inst.problem:
        return record
    started = time.monotonic()
    try:
        word, _, _ = run_isolated(inst.model_path, inst.property_path, t, started, config=config)
        record.update(result=word, message="")
    except (NnmendError, RuntimeError) as exc:
        record["message"] = " ".join(str(exc).split())
    record["seconds"] = round(time.monotonic() - started, 3)
    return record


def run_instances(csv_path: Path, output: Path, timeout: float | None = None, *, resume: bool = False,
                  force: bool = False, config: BabConfig | None = None) -> list[dict]:
    """Run every instance of a VNN-COMP list, appending each row to ``output`` as it finishes.

    Returns the rows of this list in order (those kept by ``resume`` included)."""
    from .._progress import progress

    instances = read_instances(csv_path)
    _check_output(output, csv_path, instances, resume, force)
    kept = _done_rows(output) if resume else []
    if _can_fork():
        preload()
    done = {(r["onnx"], r["vnnlib"]): r for r in kept}
    _start_output(output, kept)
    records = []
    for inst in progress(instances, desc="instances"):
        if (inst.onnx, inst.vnnlib) in done:
            records.append(done[(inst.onnx, inst.vnnlib)])
            continue
        record = run_one_row(inst, timeout, config)
        _append(output, record)
        records.append(record)
    return records


# ------------------------------------------------------------------------------------ command


def run(args: argparse.Namespace) -> int:
    memory = getattr(args, "memory_gb", None)
    if memory is not None and not (0 < memory < 1e6):
        raise NnmendError(f"verify: --memory-gb {memory:g} must be a positive number of gigabytes")
    from ..bounds.bab import BabConfig

    config = BabConfig(memory_gb=memory)
    if args.instances:
        if args.model or args.property:
            raise NnmendError("verify: give either MODEL PROPERTY or --instances CSV, not both")
        records = run_instances(Path(args.instances), Path(args.output), args.timeout, resume=args.resume,
                                force=args.force, config=config)
        counts: dict[str, int] = {}
        for r in records:
            counts[r["result"]] = counts.get(r["result"], 0) + 1
        print(f"{len(records)} instances: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + f"; wrote {args.output}")
        return 1 if counts.get("error") else 0
    if not (args.model and args.property):
        raise NnmendError("verify: MODEL and PROPERTY are required (or --instances CSV)")
    if args.timeout is not None and not args.timeout > 0:
        raise NnmendError(f"verify: --timeout {args.timeout:g} must be positive")
    started = command_started()
    _, text, _ = run_isolated(args.model, args.property, args.timeout, started, load_first=True, config=config)
    print(text)
    return 0
