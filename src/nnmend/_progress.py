"""One progress-bar helper (tqdm), silent when not wanted, and an optional listener for front ends.

A front end (the Streamlit workbench) can follow any long API call without the call knowing about it:
``with listen(callback): fit(...)`` makes every :func:`progress` loop inside report
``callback(desc, done, total)`` after each step. The listener is a context variable, so it follows the
thread (or task) that set it and never leaks into other users' work.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
Listener = Callable[[str, int, "int | None"], None]

_listener: ContextVar[Listener | None] = ContextVar("nnmend_progress_listener", default=None)


@contextmanager
def listen(callback: Listener) -> Iterator[None]:
    """Call ``callback(desc, done, total)`` after each step of every :func:`progress` loop in this context."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


class _Reporting:
    """Iterate a tqdm bar and tell the listener after each item (keeps ``set_postfix`` working)."""

    def __init__(self, bar, callback: Listener, desc: str, total: int | None):
        self.bar, self.callback, self.desc, self.total = bar, callback, desc, total

    def __iter__(self):
        self.callback(self.desc, 0, self.total)
        for i, item in enumerate(self.bar, start=1):
            yield item
            self.callback(self.desc, i, self.total)

    def set_postfix(self, *args, **kwargs) -> None:
        self.bar.set_postfix(*args, **kwargs)


def progress(it: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool | None = None, leave: bool = False) -> Iterable[T]:
    """Wrap ``it`` in a tqdm bar on stderr when it is a terminal (or when ``enabled``)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("NNMEND_NO_PROGRESS")
    bar = tqdm(it, desc=desc, total=total, disable=not enabled, leave=leave, file=sys.stderr, dynamic_ncols=True)
    callback = _listener.get()
    if callback is None:
        return bar
    if total is None:
        total = len(it) if hasattr(it, "__len__") else None
    return _Reporting(bar, callback, desc, total)
