"""Long API calls in the background: the page stays responsive, shows progress, and can cancel them.

A :class:`Job` runs one callable away from the page. Jobs run one at a time, in submission order (the
machine's cores go to torch, not to several trainings at once), on a daemon worker thread: a server that
is asked to stop does not wait for them. :meth:`Job.cancel` stops a queued job before it starts and a
running one at its next progress step (an exception raised in the job's own thread; code that reports
no progress runs to its next step first). ``submit(..., process=True)`` runs the call in a forked child
process instead, which a cancel terminates at once; the workbench does not use it: forked from the
Streamlit server (its event loop and worker threads), the server's own script threads stalled.

Progress comes from every :func:`nnmend._progress.progress` loop inside the call (epochs, rule
iterations, ...) and from :func:`stage` calls made by the page's own pipeline (build the problem,
repair, measure). Nested loops combine into one fraction that moves: the outer loop's steps, refined by
the inner loop's; a finished loop leaves the display, so the bar never sits full while work goes on.

Example::

    job = submit("heal", heal_structural, damaged, "fc2", train, reference=net)
    job.done, job.fraction, job.text, job.value, job.error
    job.cancel()
"""
from __future__ import annotations

import math
import multiprocessing
import pickle
import queue
import threading
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable

from .._progress import listen
from ..errors import NnmendError

STAGE = "\x00stage:"         # key prefix of :func:`stage` reports (shown by their text, not their key)
_FORK = "fork" in multiprocessing.get_all_start_methods()
_reporter: ContextVar[Callable[..., None] | None] = ContextVar("nnmend_app_job_reporter", default=None)


class JobCancelled(NnmendError):
    """The job was cancelled from the page before it finished."""


class _Stop(BaseException):
    """Raised inside a thread job at its next progress step after a cancel (not an ``Exception``: a method's
    own ``except Exception`` must not swallow it)."""


@dataclass
class Job:
    """One background call: its label, progress, and outcome (``value``, ``error``, or ``cancelled``)."""

    label: str
    started: float = field(default_factory=time.time)
    running_since: float | None = None
    finished: float | None = None
    step: str = "queued"
    fraction: float | None = None
    value: Any = None
    error: BaseException | None = None
    trace: str = ""
    collected: bool = False
    cancelled: bool = False
    reports: int = 0                                  # progress reports received (a moving display)
    _loops: list = field(default_factory=list, repr=False)   # open progress loops, outermost first
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - (self.running_since or self.started)

    @property
    def text(self) -> str:
        return f"{self.label}: {self.step} ({self.seconds:.0f} s)"

    def cancel(self) -> None:
        """Stop the job: a queued one never starts; a running one is terminated (thread jobs: at their next step)."""
        self._cancel.set()

    def report(self, key: str, done: int, total: int | None, text: str | None = None) -> None:
        """One progress report from loop ``key`` (``done`` of ``total`` steps); updates ``step`` and ``fraction``."""
        self.reports += 1
        for i, loop in enumerate(self._loops):
            if loop[0] == key:
                del self._loops[i:]          # the loops inside it ended (or were left early)
                break
        if not (total and done >= total):
            self._loops.append((key, done, total, text or key))
        self.fraction = _combined(self._loops)
        shown = [(f"{t} ({d + 1}/{n})" if k.startswith(STAGE) else f"{t} {d}/{n}" if n else f"{t} {d}")
                 for k, d, n, t in self._loops]
        self.step = " › ".join(shown) or "running"

    def _finish(self, *, value: Any = None, error: BaseException | None = None, trace: str = "") -> None:
        self.value, self.error, self.trace = value, error, trace
        if error is None and not self.cancelled:
            self.fraction, self.step = 1.0, "done"
        self._loops.clear()
        self.finished = time.time()


def _combined(loops: list) -> float | None:
    """The outer loop's fraction, refined by each inner loop's (None when the outer loop has no total)."""
    fraction, scale = 0.0, 1.0
    for _, done, total, _ in loops:
        if not total:
            break
        fraction += scale * min(done, total) / total
        scale /= total
    return fraction if loops and loops[0][2] else None


def stage(text: str, index: int, total: int, level: str = "main") -> None:
    """Report that the running job's own pipeline is at step ``index`` (from 0) of ``total``; ``text`` names
    the step; pipelines nested in one another use different ``level`` names.

    A no-op outside a job, so the same function runs in scripts and tests."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(STAGE + level, index, total, text)


# -- running ------------------------------------------------------------------------------------
def _thread_run(job: Job, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    def on_progress(key: str, done: int, total: int | None, text: str | None = None) -> None:
        if job._cancel.is_set():
            raise _Stop
        job.report(key, done, total, text)

    token = _reporter.set(on_progress)
    try:
        with listen(on_progress):
            value = fn(*args, **kwargs)
    except _Stop:
        job.cancelled = True
        job._finish(error=JobCancelled(f"{job.label}: cancelled after {job.seconds:.0f} s"))
    except BaseException as exc:  # shown in the page; the app keeps running
        job._finish(error=exc, trace=traceback.format_exc())
    else:
        job._finish(value=value)
    finally:
        _reporter.reset(token)


def _send(conn, message: tuple) -> None:
    """Plain pickle, tensors by value (the connection's own pickler would pass them through shared memory,
    which is gone once the child has exited)."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """The job's process: run ``fn`` and send progress, then the value or the error, to the parent."""
    import torch

    torch.set_num_threads(1)      # forked from a threaded parent: the intra-op pool is not fork-safe

    def send(key: str, done: int, total: int | None, text: str | None = None) -> None:
        _send(conn, ("progress", (key, done, total, text)))

    _reporter.set(send)
    try:
        with listen(send):
            value = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the page
        trace = traceback.format_exc()
        try:
            _send(conn, ("error", (exc, trace)))
        except Exception:  # an exception that does not pickle: its type and message do
            _send(conn, ("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), trace)))
    else:
        try:
            _send(conn, ("value", value))
        except Exception as exc:  # noqa: BLE001
            _send(conn, ("error", (RuntimeError(f"the job's result could not be passed back to the page: {exc}"),
                                   traceback.format_exc())))
    finally:
        conn.close()


def _process_run(job: Job, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs), daemon=True, name=f"nnmend-job {job.label}")
    proc.start()
    child.close()
    outcome: tuple | None = None
    try:
        while outcome is None:
            if job._cancel.is_set():
                job.cancelled = True
                job._finish(error=JobCancelled(f"{job.label}: cancelled after {job.seconds:.0f} s"))
                return
            if parent.poll(0.1):
                try:
                    kind, payload = pickle.loads(parent.recv_bytes())
                except EOFError:
                    break
                except Exception as exc:  # noqa: BLE001 - e.g. an exception type that does not unpickle
                    outcome = ("error", (RuntimeError(f"the job's answer could not be read: {exc}"), ""))
                    break
                if kind == "progress":
                    job.report(*payload)
                else:
                    outcome = (kind, payload)
            elif not proc.is_alive() and not parent.poll():
                break
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        proc.join()
        parent.close()
    if outcome is None:
        job._finish(error=RuntimeError(f"the job's process ended without an answer (exit code {proc.exitcode})"))
    elif outcome[0] == "value":
        job._finish(value=outcome[1])
    else:
        job._finish(error=outcome[1][0], trace=outcome[1][1])


_QUEUE: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
_WORKER: threading.Thread | None = None
_LOCK = threading.Lock()


def _serve() -> None:
    while True:
        job, fn, args, kwargs, in_process = _QUEUE.get()
        if job._cancel.is_set():
            job.cancelled = True
            job._finish(error=JobCancelled(f"{job.label}: cancelled before it started"))
            continue
        job.running_since, job.step = time.time(), "running"
        try:
            (_process_run if in_process else _thread_run)(job, fn, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - the worker must survive any job
            if not job.done:
                job._finish(error=exc, trace=traceback.format_exc())


def submit(label: str, fn: Callable[..., Any], *args: Any, process: bool = False, **kwargs: Any) -> Job:
    """Queue ``fn(*args, **kwargs)`` and return its :class:`Job`; ``process=True``: in a forked child process
    (where the platform forks), which a cancel terminates at once."""
    global _WORKER
    job = Job(label)
    in_process = process and _FORK
    with _LOCK:
        if _WORKER is None or not _WORKER.is_alive():
            # a daemon thread: a server that is asked to stop does not wait for a running job
            _WORKER = threading.Thread(target=_serve, name="nnmend-app-jobs", daemon=True)
            _WORKER.start()
    _QUEUE.put((job, fn, args, kwargs, in_process))
    return job


def wait(job: Job, timeout: float = math.inf, poll: float = 0.05) -> Job:
    """Block until ``job`` is done or ``timeout`` seconds have passed (for scripts and tests; pages poll instead)."""
    end = time.time() + timeout
    while not job.done and time.time() < end:
        time.sleep(poll)
    return job
