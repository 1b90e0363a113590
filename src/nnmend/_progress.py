"""One progress-bar helper (tqdm), silent when not wanted."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(it: Iterable[T], *, desc: str = "", total: int | None = None, enabled: bool | None = None, leave: bool = False) -> Iterable[T]:
    """Wrap ``it`` in a tqdm bar on stderr when it is a terminal (or when ``enabled``)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("NNMEND_NO_PROGRESS")
    return tqdm(it, desc=desc, total=total, disable=not enabled, leave=leave, file=sys.stderr, dynamic_ncols=True)
