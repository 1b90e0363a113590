"""Long API calls in the background, so the page stays responsive and survives reruns.

A :class:`Job` runs one callable on a worker thread (one worker per process: the machine's cores go
to torch, not to several trainings at once) and follows its progress through
:func:`nnmend._progress.listen`. The job lives in the session state under a key; the page shows its
progress while it runs and collects its value once, when it is done.

Example::

    job = submit("heal", heal_structural, damaged, "fc2", train, reference=net)
    job.done, job.fraction, job.text, job.value, job.error
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .._progress import listen

_EXECUTOR: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnmend-app-job")
        return _EXECUTOR


@dataclass
class Job:
    """One background call: its label, progress, and outcome (``value`` or ``error``)."""

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

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - (self.running_since or self.started)

    @property
    def text(self) -> str:
        return f"{self.label}: {self.step} ({self.seconds:.0f} s)"

    def _progress(self, desc: str, done: int, total: int | None) -> None:
        self.step = f"{desc} {done}/{total}" if total else f"{desc} {done}"
        self.fraction = done / total if total else None

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.running_since, self.step = time.time(), "running"
        try:
            with listen(self._progress):
                self.value = fn(*args, **kwargs)
        except BaseException as exc:  # shown in the page; the app keeps running
            self.error, self.trace = exc, traceback.format_exc()
        finally:
            self.finished = time.time()


def submit(label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Start ``fn(*args, **kwargs)`` on the worker thread and return its :class:`Job`."""
    job = Job(label)
    _executor().submit(job._run, fn, args, kwargs)
    return job


def wait(job: Job, timeout: float = math.inf, poll: float = 0.05) -> Job:
    """Block until ``job`` is done or ``timeout`` seconds have passed (for scripts and tests; pages poll instead)."""
    end = time.time() + timeout
    while not job.done and time.time() < end:
        time.sleep(poll)
    return job
