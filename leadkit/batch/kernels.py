"""One client notebook executed through papermill's Python API on a kernel of its own.

The batch drives its notebooks from threads of its own process (the work is I/O-bound: a notebook mostly waits on
Apify), so papermill is imported once and there are no worker processes; what costs memory is the kernels, one
per notebook in flight. Kernel start-up is CPU-bound: `START_GATE` lets one kernel per core boot at once. With
no more notebooks in flight than cores (short, CPU-bound notebooks), each thread starts its next kernel while the
current notebook runs, so start-up overlaps with work. Kernels are shut down with ``shutdown_kernel="immediate"``.

Crash safety: every kernel dies with the batch (``PR_SET_PDEATHSIG``, set in the kernel before it execs), and
`kill_all` stops the live ones when the batch is interrupted.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadkit.config import scrub

KERNEL_NAME = "python3"
KERNELS_LOG = "kernels.log"


@dataclass(frozen=True)
class NotebookJob:
    client_id: str
    input_path: str
    output_path: str
    parameters: dict[str, Any]
    env: dict[str, str]
    cwd: str
    timeout_s: float
    start_timeout_s: float
    prestart_next: bool = False
    return_notebook: bool = False


@dataclass
class NotebookResult:
    client_id: str
    ok: bool
    seconds: float
    kind: str = ""  # "", "exception", "dead_kernel", "timeout", "error", "stopped" (never started: batch stopped)
    message: str = ""
    cell: int | None = None
    notebook_json: str | None = None  # the executed notebook, when it must travel back (dask)
    status: str | None = None  # the ClientRun status the notebook published (see leadkit.notebook)


# -------------------------------------------------------------------------------------------- worker side
try:
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform == "linux" else None
except OSError:
    _LIBC = None


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends this process SIGKILL when the thread that started it ends (with the batch);
    used as a kernel's preexec_fn (bound to the batch's PID, `parent`), so it imports nothing (the batch is
    multi-threaded). A batch that is itself PID 1 (a container's entrypoint, a fresh PID namespace) is a parent like
    any other: only a parent other than the batch means it died before the prctl took effect."""
    if _LIBC is None:
        return
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the batch died before the prctl took effect: the kernel was re-parented
        os._exit(1)


#: Kernels booting at once, one per core: a boot is mostly CPU, and the notebooks already running need the cores
#: too. Measured with bench/harvest_scale.py on an idle 2-core machine (48 clients, concurrency 32): with 4 per
#: core the first actor run started 12.3 s into the batch and the batch took 1.50 x the ideal; with 1 per core
#: 7.0 s and 1.28 x (the first kernels are ready sooner and reach Apify while the others boot).
STARTS_PER_CORE = 1
START_GATE = threading.BoundedSemaphore(STARTS_PER_CORE * (os.cpu_count() or 2))
_LIVE: set[Any] = set()  # every kernel manager with a kernel started and not yet stopped
_LIVE_LOCK = threading.Lock()
#: Set while a batch is stopping (`stop_batch`): no notebook starts any more; cleared when the next batch starts.
_STOPPING = threading.Event()
#: Why a notebook never ran: the batch was stopped before its kernel was ready.
NOT_STARTED = "the batch was stopped before this notebook started"


def batch_starting() -> None:
    """A batch starts: notebooks may start again (after an earlier batch of this process was stopped)."""
    _STOPPING.clear()


def stop_leftovers() -> None:
    """Stop the kernels still alive once every notebook has run (started ahead, never used)."""
    kill_all()
    with _LIVE_LOCK:
        managers = list(_LIVE)
        _LIVE.clear()
    for km in managers:
        try:
            km.cleanup_connection_file()
        except OSError:
            pass


#: How long an interrupted batch gives its kernels to abort their actor runs and put their leads back after
#: SIGTERM, before SIGKILL (an abort is one Apify request and one store write).
STOP_GRACE_S = 15.0


def stop_batch(grace_s: float = STOP_GRACE_S) -> None:
    """The batch is stopping (a signal): no notebook starts from now on, and the live kernels are stopped
    (`kill_all`)."""
    _STOPPING.set()
    kill_all(grace_s)


def kill_all(grace_s: float = STOP_GRACE_S) -> None:
    """Stop every live kernel of this process (an interrupted batch): SIGTERM first, so a kernel that is
    harvesting aborts its actor run and releases its leads (see `leadkit.harvest.harvester.terminate_on_sigterm`),
    then SIGKILL for any still alive after `grace_s`."""
    with _LIVE_LOCK:
        managers = list(_LIVE)
    processes = [
        p for p in (getattr(getattr(km, "provisioner", None), "process", None) for km in managers) if p is not None
    ]
    for process in processes:
        try:
            process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + max(0.0, grace_s)
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, OSError):
            pass
        if process.poll() is None:
            try:
                process.kill()
            except OSError:
                pass


class _Kernels(threading.local):
    """The kernels of one thread: the next one may be started while the current notebook runs."""

    def __init__(self) -> None:
        self.ready: Any = None  # an AsyncKernelManager with a kernel booting or booted
        self.key: tuple[str, tuple[tuple[str, str], ...]] | None = None

    @staticmethod
    def _key(job: NotebookJob) -> tuple[str, tuple[tuple[str, str], ...]]:
        return job.cwd, tuple(sorted(job.env.items()))

    def start(self, env: dict[str, str], cwd: str, start_timeout_s: float = 60.0) -> Any:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=KERNEL_NAME)
        with START_GATE:
            # the kernels' own output (start-up warnings, a crash's last words) goes to the run's kernels.log
            with open(Path(cwd) / KERNELS_LOG, "ab") as out:
                inherited = {
                    k: v for k, v in os.environ.items() if k != "LEADKIT_ALERT_URLS"
                }  # channel secrets stay out
                run_sync(km.start_kernel)(
                    env={**inherited, **env},
                    cwd=cwd,
                    preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                    stdout=out,
                    stderr=out,
                )
            with _LIVE_LOCK:
                _LIVE.add(km)
            client = km.client()
            client.start_channels()
            try:
                run_sync(client.wait_for_ready)(timeout=start_timeout_s)
            except RuntimeError:
                pass  # a kernel that does not come up fails the notebook, with papermill's own message
            finally:
                client.stop_channels()
        return km

    def prestart(self, job: NotebookJob) -> None:
        self.discard()
        if _STOPPING.is_set():
            return
        self.ready, self.key = self.start(job.env, job.cwd, job.start_timeout_s), self._key(job)

    def take(self, job: NotebookJob) -> Any:
        """A kernel for `job`: the one started ahead when it fits and is alive, else a new one."""
        from jupyter_core.utils import run_sync

        km, self.ready = self.ready, None
        if km is not None and self.key == self._key(job) and run_sync(km.is_alive)():
            return km
        if km is not None:
            stop_kernel(km)
        return self.start(job.env, job.cwd, job.start_timeout_s)

    def discard(self) -> None:
        if self.ready is not None:
            stop_kernel(self.ready)
            self.ready = None


def stop_kernel(km: Any) -> None:
    from jupyter_core.utils import run_sync

    try:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=True)
    except RuntimeError:
        pass
    finally:
        run_sync(km.cleanup_resources)()
        with _LIVE_LOCK:
            _LIVE.discard(km)


_KERNELS = _Kernels()
_ENGINE = "leadkit-prestarted"


def kernelspec_metadata(km: Any, kernel_name: str) -> dict[str, str] | None:
    """The notebook's `kernelspec` metadata for the kernel that runs it, as JupyterLab writes it (name, the
    installed spec's display name and language); None when the spec cannot be read. An executed notebook whose
    kernelspec differs from the installed one (a notebook saying "Python 3" where ipykernel installs "Python 3
    (ipykernel)") is marked modified by the Lab as soon as its kernel connects."""
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        spec = km.kernel_spec
    except (NoSuchKernel, OSError, ValueError):  # no readable spec of that name: the notebook keeps its own
        return None
    if spec is None:
        return None
    return {"display_name": str(spec.display_name), "language": str(spec.language), "name": kernel_name}


def _register_engine() -> None:
    """A papermill engine that runs on a kernel started ahead (papermill passes `km` through to nbclient) and
    closes the client's channels afterwards (papermill leaves them open when it does not own the kernel). The
    executed notebook carries the running kernel's `kernelspec` (`kernelspec_metadata`), so opening it in the
    Lab changes nothing."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    if _ENGINE in papermill_engines._engines:
        return

    class PrestartedKernelEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(  # type: ignore[override]
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: float = 60,
            execution_timeout: float | None = None,
            km: Any = None,
            **kwargs: Any,
        ) -> Any:
            spec = kernelspec_metadata(km, kernel_name) if km is not None else None
            if spec is not None:
                nb_man.nb.metadata["kernelspec"] = spec
            client = PapermillNotebookClient(
                nb_man,
                km=km,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                shutdown_kernel="immediate",
            )
            try:
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register(_ENGINE, PrestartedKernelEngine)


def published_status(notebook: Any) -> str | None:
    """The ClientRun status a notebook published with `leadkit.notebook.publish_result`, if any."""
    from leadkit.notebook import RESULT_MIMETYPE

    for cell in reversed(notebook.get("cells", [])):
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get(RESULT_MIMETYPE)
            if isinstance(data, dict) and isinstance(data.get("status"), str):
                return str(data["status"])
    return None


def execute_notebook(job: NotebookJob) -> NotebookResult:
    """Run one client notebook with papermill on a (pre-started) kernel, with a whole-notebook timeout."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    _register_engine()
    started = time.monotonic()
    if _STOPPING.is_set():
        return NotebookResult(job.client_id, False, 0.0, "stopped", NOT_STARTED)
    km = _KERNELS.take(job)
    if _STOPPING.is_set():  # stopped while this kernel started: `stop_batch` may have missed it
        stop_kernel(km)
        return NotebookResult(job.client_id, False, time.monotonic() - started, "stopped", NOT_STARTED)
    if job.prestart_next:
        _KERNELS.prestart(job)
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        process = getattr(km.provisioner, "process", None)
        if process is not None:
            process.kill()

    watchdog = threading.Timer(job.timeout_s, kill_on_timeout)
    watchdog.daemon = True
    watchdog.start()

    def failed(kind: str, message: str, cell: int | None = None) -> NotebookResult:
        return NotebookResult(job.client_id, False, time.monotonic() - started, kind, scrub(message), cell)

    result: NotebookResult
    try:
        executed = papermill.execute_notebook(
            job.input_path,
            job.output_path,
            # the kernel's time budget ends where the watchdog's does (wall clock: the kernel is another process)
            parameters={**job.parameters, "deadline_at": time.time() + job.timeout_s - (time.monotonic() - started)},
            engine_name=_ENGINE,
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            start_timeout=job.start_timeout_s,
            execution_timeout=job.timeout_s,
            km=km,
        )
        result = NotebookResult(job.client_id, True, time.monotonic() - started, status=published_status(executed))
    except papermill.PapermillExecutionError as exc:
        result = failed("exception", f"cell {exc.cell_index} raised {exc.ename}: {exc.evalue}", exc.cell_index)
    except (DeadKernelError, CellTimeoutError, TimeoutError, RuntimeError) as exc:
        if timed_out.is_set() or isinstance(exc, CellTimeoutError):
            result = failed("timeout", f"the notebook ran past its timeout of {job.timeout_s:g} s")
        elif isinstance(exc, DeadKernelError) or "dead" in str(exc).lower():
            result = failed("dead_kernel", f"the kernel died while running the notebook: {exc}")
        else:
            result = failed("error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # papermill/nbclient errors of other kinds: recorded, never lost
        result = failed("error", f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
        stop_kernel(km)
    if job.return_notebook and Path(job.output_path).exists():
        result.notebook_json = Path(job.output_path).read_text(encoding="utf-8")
    return result


def execute_notebook_remote(job: NotebookJob) -> NotebookResult:
    """On a dask worker: run into a temporary folder and send the executed notebook back to the coordinator.
    Secrets are not in the job: the worker's kernels read them from the worker's own environment."""
    with tempfile.TemporaryDirectory(prefix="leadkit-dask-") as tmp:
        local = Path(tmp) / Path(job.output_path).name
        remote_job = NotebookJob(
            client_id=job.client_id,
            input_path=job.input_path,
            output_path=str(local),
            parameters=job.parameters,
            env=job.env,
            cwd=tmp,
            timeout_s=job.timeout_s,
            start_timeout_s=job.start_timeout_s,
            prestart_next=False,
            return_notebook=True,
        )
        return execute_notebook(remote_job)
