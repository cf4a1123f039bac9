"""Executors: run notebook jobs as a batch hands them out, at most `concurrency` at once, in threads of the batch
process (local) or as tasks on a dask.distributed cluster.

A batch hands out jobs through `Dispatch`: asked for up to n, it returns the next ones (opening their ClientRuns
just then, so no client is Running while it waits for a slot), or [] when none is left or the batch has stopped
starting clients (it lost its lease). `Settle` is called once per finished job, in the calling thread.

Stopped (a signal, or any error in the calling thread): the local executor starts no further notebook, stops the
kernels (`stop_batch`), lets the notebooks whose kernels were stopped save what they ran (papermill writes the
executed cells) for up to `SAVE_GRACE_S`, and raises; the batch then settles every job it handed out
(`leadkit.batch.settle.settle_stopped`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from leadkit.batch.kernels import (
    NotebookJob,
    NotebookResult,
    batch_starting,
    execute_notebook,
    execute_notebook_remote,
    stop_batch,
    stop_leftovers,
)
from leadkit.config import scrub
from leadkit.errors import ConfigError

Dispatch = Callable[[int], list[NotebookJob]]
Settle = Callable[[NotebookJob, NotebookResult], None]

#: How long a stopped batch waits, once its kernels are gone, for their notebooks to be saved with the cells that ran.
SAVE_GRACE_S = 20.0


def execute_local(dispatch: Dispatch, concurrency: int, settle: Settle) -> dict[str, NotebookResult]:
    results: dict[str, NotebookResult] = {}
    batch_starting()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="leadkit-notebook")
    pending: dict[Future[NotebookResult], NotebookJob] = {}
    try:
        while True:
            for job in dispatch(concurrency - len(pending)) if len(pending) < concurrency else []:
                pending[pool.submit(execute_notebook, job)] = job
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # a bug in the notebook runner itself: recorded, never lost
                    result = NotebookResult(job.client_id, False, 0.0, "error", scrub(f"{type(exc).__name__}: {exc}"))
                results[job.client_id] = result
                settle(job, result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # queued notebooks never start
        stop_batch()  # the notebooks' threads see their kernels die, save what ran, and end
        wait(pending, timeout=SAVE_GRACE_S)
        stop_leftovers()  # the fork server, and any kernel warmed meanwhile
        raise
    pool.shutdown(wait=True)
    stop_leftovers()
    return results


def execute_dask(dispatch: Dispatch, concurrency: int, settle: Settle, scheduler: str) -> dict[str, NotebookResult]:
    """The same jobs on a dask.distributed cluster; executed notebooks come back and are written here."""
    try:
        from distributed import Client as DaskClient
        from distributed import as_completed
    except ImportError as exc:
        from leadkit.errors import DependencyError

        raise DependencyError(
            f"--executor dask needs dask.distributed, which does not import: {exc}",
            hint="Install it with `pip install -e '.[dask]'`.",
        ) from None
    results: dict[str, NotebookResult] = {}
    try:
        client = DaskClient(scheduler, timeout=30, set_as_default=False)
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the dask scheduler at {scheduler}: {exc}",
            hint="Check the address (tcp://HOST:8786) and that the scheduler is running.",
        ) from None
    try:
        futures: dict[Any, NotebookJob] = {}

        def submit(jobs: list[NotebookJob]) -> list[Any]:
            fresh: list[Any] = []
            for job in jobs:
                future = client.submit(
                    execute_notebook_remote, job, pure=False, key=f"leadkit-{job.client_id}-{id(job)}"
                )
                futures[future] = job
                fresh.append(future)
            return fresh

        queue = as_completed(submit(dispatch(concurrency)), loop=client.loop)
        for future in queue:
            job = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # the task or its worker failed
                result = NotebookResult(job.client_id, False, 0.0, "error", scrub(f"dask task failed: {exc!r}"))
            results[job.client_id] = result
            settle(job, result)
            for fresh in submit(dispatch(concurrency - len(futures))):
                queue.add(fresh)
    finally:
        client.close()
    return results
