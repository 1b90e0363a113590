"""Waiting on the workbench's background jobs in AppTest sessions: on completion, never on wall-clock time."""
from __future__ import annotations

import math
from typing import Callable

from streamlit.testing.v1 import AppTest

from nnmend.app import jobs
from nnmend.app.widgets import JOBS_KEY

RUN_TIMEOUT = 900.0   # seconds for one script run: generous, so that only a hang fails on it
IDLE_RERUNS = 3       # reruns with no job running before wait_for gives up on a page that shows nothing


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def running_jobs(at: AppTest) -> list[jobs.Job]:
    """The session's background jobs that have not finished."""
    found = at.session_state.get(JOBS_KEY) or {}
    return [j for j in found.values() if not j.done]


def wait_for(at: AppTest, done: Callable[[AppTest], bool]) -> AppTest:
    """Rerun the page until ``done(at)``; between reruns, block until the session's jobs have finished.

    Fails only when the page still does not show ``done`` after ``IDLE_RERUNS`` reruns with no job left."""
    idle = 0
    while idle < IDLE_RERUNS:
        at.run()
        assert not at.exception, at.exception
        if done(at):
            return at
        pending = running_jobs(at)
        for job in pending:
            jobs.wait(job, timeout=math.inf)
        idle = 0 if pending else idle + 1
    raise AssertionError(f"page shows no result and runs no job; errors: {texts(at.error)}")
