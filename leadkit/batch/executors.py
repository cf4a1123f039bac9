"""Executors: the same notebook jobs in a local forkserver process pool, or on a dask.distributed cluster."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from leadkit.batch.kernels import NotebookJob, NotebookResult, _worker_init, execute_notebook, execute_notebook_remote
from leadkit.config import scrub
from leadkit.errors import ConfigError

Settle = Callable[[NotebookJob, NotebookResult], None]


def _execute_local(jobs: Sequence[NotebookJob], workers: int, settle: Settle) -> dict[str, NotebookResult]:
    results: dict[str, NotebookResult] = {}
    if not jobs:
        return results
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["leadkit.batch.kernels", "papermill", "nbclient", "jupyter_client.manager"])
    first = jobs[0]
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(), first.env, first.cwd),
    )
    try:
        pending: dict[Future[NotebookResult], NotebookJob] = {pool.submit(execute_notebook, job): job for job in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker process itself died
                    result = NotebookResult(job.client_id, False, 0.0, "dead_kernel", f"worker process died: {exc}")
                results[job.client_id] = result
                settle(job, result)
    except BaseException:
        _kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop now: SIGKILL the workers (their kernels follow them through PR_SET_PDEATHSIG)."""
    processes = dict(getattr(pool, "_processes", None) or {})
    for process in processes.values():
        try:
            process.kill()
        except (OSError, ValueError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)


def _execute_dask(jobs: Sequence[NotebookJob], scheduler: str, settle: Settle) -> dict[str, NotebookResult]:
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
    if not jobs:
        return results
    try:
        client = DaskClient(scheduler, timeout=30, set_as_default=False)
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the dask scheduler at {scheduler}: {exc}",
            hint="Check the address (tcp://HOST:8786) and that the scheduler is running.",
        ) from None
    try:
        futures = {
            client.submit(execute_notebook_remote, job, pure=False, key=f"leadkit-{job.client_id}-{id(job)}"): job
            for job in jobs
        }
        for future in as_completed(list(futures), loop=client.loop):
            job = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the task or its worker failed
                result = NotebookResult(job.client_id, False, 0.0, "error", scrub(f"dask task failed: {exc!r}"))
            results[job.client_id] = result
            settle(job, result)
    finally:
        client.close()
    return results
