"""Where jobs run: in this process, on a local process pool, or on a Ray cluster.

Each executor is a function ``(fn, jobs, workers, **kw) -> iterator of records`` yielding each record as
soon as its job finishes (in completion order). ``fn`` is a module-level function of one job dict that
never raises (:func:`nnmend.campaign.job.execute`), so the same jobs give the same records everywhere.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections import deque
from typing import Callable, Iterator, Sequence

from ..errors import NnmendError, describe
from .job import failed

EXECUTORS = ("inline", "pool", "ray")
RAY_EXTRA = "the Ray executor needs ray, an optional extra: pip install 'nnmend[campaign]'"

Job = dict
Runner = Callable[[Job], dict]


def inline(fn: Runner, jobs: Sequence[Job], workers: int = 1, **_) -> Iterator[dict]:
    """One job after another in this process."""
    for job in jobs:
        yield fn(job)


def pool(fn: Runner, jobs: Sequence[Job], workers: int = 2, **_) -> Iterator[dict]:
    """A pool of ``workers`` fresh (spawned) processes: no state forked from a process running torch."""
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        futures = {ex.submit(fn, job): job for job in jobs}
        try:
            for fut in cf.as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died: the job is failed, the rest go on
                    yield failed(futures[fut], f"worker process failed: {describe(exc)}")
        finally:
            for fut in futures:
                fut.cancel()


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def ray(fn: Runner, jobs: Sequence[Job], workers: int = 0, *, address: str | None = None, **_) -> Iterator[dict]:
    """Jobs as Ray tasks of one CPU each on the cluster at ``address`` (None: a local Ray started here
    with ``workers`` CPUs; 0 = every CPU). At most ``2 × workers`` tasks are in flight at once (or
    twice the cluster's CPUs), so a 100,000-job grid does not flood the scheduler."""
    if not ray_available():
        raise NnmendError(RAY_EXTRA)
    import ray as _ray

    started = False
    if not _ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": workers or None, "include_dashboard": False}
        try:
            _ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"--address {address}: cannot join the Ray cluster" if address else "cannot start a local Ray"
            raise NnmendError(f"{where} ({describe(exc)})") from None
        started = True
    try:
        task = _ray.remote(num_cpus=1)(fn)
        limit = 2 * max(1, workers or int(_ray.cluster_resources().get("CPU", 1)))
        queue, pending, sent = deque(jobs), [], {}
        while queue or pending:
            while queue and len(pending) < limit:
                job = queue.popleft()
                ref = task.remote(job)
                sent[ref] = job
                pending.append(ref)
            ready, pending = _ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    yield _ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker or node that died: the job is failed
                    yield failed(sent[ref], f"Ray task failed: {describe(exc)}")
                finally:
                    sent.pop(ref, None)
    finally:
        if started:
            _ray.shutdown()


def get(name: str) -> Callable[..., Iterator[dict]]:
    if name not in EXECUTORS:
        raise NnmendError(f"--executor {name}: unknown (known: {', '.join(EXECUTORS)})")
    if name == "ray" and not ray_available():
        raise NnmendError(RAY_EXTRA)
    return {"inline": inline, "pool": pool, "ray": ray}[name]
