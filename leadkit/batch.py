"""The batch: mint a run, open a ClientRun for every selected client, execute the client notebook for each through
papermill's Python API in parallel worker processes, record what failed, finish the Run, exit with a code a
scheduler can act on (0 all completed, 1 some clients failed, 2 configuration or auth error before any client ran,
3 another batch of the stream holds the lease).

Throughput: the worker pool lives for the whole batch and imports papermill once (preloaded in the forkserver);
each worker starts its next kernel while the current notebook runs, so kernel start-up (most of a short notebook's
time) overlaps with work; kernels are shut down with ``shutdown_kernel="immediate"``.

Crash safety: workers and kernels die with the batch (``PR_SET_PDEATHSIG`` down the chain batch -> forkserver ->
worker -> kernel); a ClientRun is keyed by (run, client), so ``--resume RUN_ID`` reopens the same records and runs
only those that had not completed.

Test hook: ``LEADKIT_TEST_CRASH_AT=<point>`` (one of ``CRASH_POINTS``) makes the batch kill itself with SIGKILL at
that point, so the crash tests can stop it exactly there. It has no other effect.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leadkit import logs
from leadkit.classify import fingerprint
from leadkit.config import SECRET_SETTINGS, Settings, scrub
from leadkit.errors import ConfigError, DataError, LeaseHeld, NotebookError
from leadkit.models import (
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Failure,
    Lease,
    Run,
    RunEvent,
    RunStatus,
    Source,
    utcnow,
)
from leadkit.records import handoff
from leadkit.runids import RunId
from leadkit.workflow import DEFAULT_STAGES
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "client_workflow.ipynb"
KERNEL_NAME = "python3"
KERNELS_LOG = "kernels.log"
EXECUTORS = ("local", "dask")
CRASH_ENV = "LEADKIT_TEST_CRASH_AT"
CRASH_POINTS = ("lease", "run", "opened", "notebook", "finish")
_SELECTION_PREFIX = "selection: clients "


def default_workers() -> int:
    return os.cpu_count() or 2


def _crash_point(name: str) -> None:
    """Test hook: SIGKILL this process at `name` when LEADKIT_TEST_CRASH_AT says so."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
    kind: str = ""  # "", "exception", "dead_kernel", "timeout", "error"
    message: str = ""
    cell: int | None = None
    notebook_json: str | None = None  # the executed notebook, when it must travel back (dask)
    status: str | None = None  # the ClientRun status the notebook published (see leadkit.notebook)


# -------------------------------------------------------------------------------------------- worker side
def _die_with_parent() -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies (also used as a kernel preexec_fn)."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the prctl took effect
        os._exit(1)


class _Kernels:
    """The kernels of one worker process: the next one is started while the current notebook runs."""

    def __init__(self) -> None:
        self.ready: Any = None  # an AsyncKernelManager with a kernel booting or booted
        self.key: tuple[str, tuple[tuple[str, str], ...]] | None = None

    @staticmethod
    def _key(job: NotebookJob) -> tuple[str, tuple[tuple[str, str], ...]]:
        return job.cwd, tuple(sorted(job.env.items()))

    def start(self, env: dict[str, str], cwd: str) -> Any:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=KERNEL_NAME)
        # the kernels' own output (start-up warnings, a crash's last words) goes to the run's kernels.log
        with open(Path(cwd) / KERNELS_LOG, "ab") as out:
            run_sync(km.start_kernel)(
                env={**os.environ, **env}, cwd=cwd, preexec_fn=_die_with_parent, stdout=out, stderr=out
            )
        return km

    def prestart(self, job: NotebookJob) -> None:
        self.discard()
        self.ready, self.key = self.start(job.env, job.cwd), self._key(job)

    def take(self, job: NotebookJob) -> Any:
        """A kernel for `job`: the one started ahead when it fits and is alive, else a new one."""
        from jupyter_core.utils import run_sync

        km, self.ready = self.ready, None
        if km is not None and self.key == self._key(job) and run_sync(km.is_alive)():
            return km
        if km is not None:
            stop_kernel(km)
        return self.start(job.env, job.cwd)

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


_KERNELS = _Kernels()
_ENGINE = "leadkit-prestarted"


def _register_engine() -> None:
    """A papermill engine that runs on a kernel started ahead (papermill passes `km` through to nbclient) and
    closes the client's channels afterwards (papermill leaves them open when it does not own the kernel)."""
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


def _exit_with(pid: int) -> None:
    """End this process the moment process `pid` (the batch) ends, whoever our parent is: a forkserver's
    workers hold the forkserver open, so PR_SET_PDEATHSIG on the forkserver alone would never fire."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            while _pid_alive(pid):
                time.sleep(0.2)
        else:
            select.select([fd], [], [])  # readable once the process has ended
        os._exit(1)  # our kernels follow through their PR_SET_PDEATHSIG

    threading.Thread(target=watch, name="leadkit-exit-with-batch", daemon=True).start()


def _worker_init(batch_pid: int, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    """Worker processes die with the batch, import papermill once, and start their first kernel at once."""
    _die_with_parent()
    _exit_with(batch_pid)
    _register_engine()
    from multiprocessing.util import Finalize

    Finalize(_KERNELS, _KERNELS.discard, exitpriority=10)  # a kernel started ahead but never used is shut down
    if env is not None and cwd is not None:
        _KERNELS.ready = _KERNELS.start(env, cwd)
        _KERNELS.key = (cwd, tuple(sorted(env.items())))


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
    km = _KERNELS.take(job)
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
            parameters=job.parameters,
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


# -------------------------------------------------------------------------------------------- lease
def lease_name(stream: int) -> str:
    return f"batch-stream-{stream}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BatchLease:
    """One batch per stream: a lease in the store with a heartbeat. A holder that is gone (dead process on this
    host at once; from another host, once its heartbeat is older than its TTL) is taken over."""

    def __init__(self, ws: Workspace, stream: int, *, ttl_s: float = 120.0) -> None:
        self.ws = ws
        self.stream = stream
        self.name = lease_name(stream)
        self.ttl_s = ttl_s
        self.current: Lease | None = None
        self.takeover_note: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def acquire(self, run_id: str = "") -> None:
        store = self.ws.store
        host = socket.gethostname()
        for _ in range(5):
            now = utcnow()
            mine = Lease(self.name, host, os.getpid(), run_id, now, now, self.ttl_s)
            held = store.get_lease(self.name)
            note: str | None = None
            if held is not None:
                age = (now - held.heartbeat_at).total_seconds()
                since = held.acquired_at.isoformat(timespec="seconds")
                if held.host == host and not _pid_alive(held.pid):
                    note = (
                        f"took over the lease of stream {self.stream} from {held.host} process {held.pid} "
                        f"(held since {since}): that process no longer exists"
                    )
                elif held.host != host and age > held.ttl_s:
                    note = (
                        f"took over the lease of stream {self.stream} from {held.host} process {held.pid} "
                        f"(held since {since}): its heartbeat is {age:.0f} s old, past its TTL of {held.ttl_s:g} s"
                    )
                else:
                    raise LeaseHeld(
                        f"another batch of stream {self.stream} is running: held by {held.host} process "
                        f"{held.pid} since {since}" + (f" (run {held.run_id})" if held.run_id else ""),
                        holder=f"{held.host}:{held.pid}",
                        since=since,
                    )
            if store.swap_lease(self.name, held, mine):
                self.current, self.takeover_note = mine, note
                if note:
                    log.warning(note)
                break
        else:
            raise LeaseHeld(f"could not take the lease {self.name}: it kept changing hands")
        self._thread = threading.Thread(target=self._beat, name="leadkit-lease", daemon=True)
        self._thread.start()

    def set_run(self, run_id: str) -> None:
        with self._lock:
            if self.current is None:
                return
            new = Lease(**{**self.current.__dict__, "run_id": run_id, "heartbeat_at": utcnow()})
            if self.ws.store.swap_lease(self.name, self.current, new):
                self.current = new

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                if self.current is None:
                    return
                new = Lease(**{**self.current.__dict__, "heartbeat_at": utcnow()})
                try:
                    if self.ws.store.swap_lease(self.name, self.current, new):
                        self.current = new
                except Exception:  # a failed heartbeat is retried next beat; the batch goes on
                    log.exception("lease heartbeat failed")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.current is not None:
                self.ws.store.swap_lease(self.name, self.current, None)
                self.current = None


# -------------------------------------------------------------------------------------------- progress
class Progress:
    """Clients done, failed, left and an ETA: a bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, *, stream: Any = None, enabled: bool = True) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, client_id: str, status: str, seconds: float) -> None:
        self.done += 1
        if status not in ("Completed", "Skipped"):
            self.failed += 1
        if not self.enabled:
            return
        left = self.total - self.done
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * left if self.done else 0.0
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r[{bar}] {self.done}/{self.total} done, {self.failed} failed, {left} left, ETA {eta:4.0f}s "
                f"({client_id}: {status})\x1b[K"
            )
            if left == 0:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"[{self.done}/{self.total}] {client_id}: {status} in {seconds:.1f}s "
                f"({self.failed} failed, {left} left, ETA {eta:.0f}s)\n"
            )
        self.stream.flush()


# -------------------------------------------------------------------------------------------- batch
@dataclass
class BatchResult:
    run: Run
    records: list[ClientRun]
    run_dir: Path
    takeover_note: str | None = None
    results: dict[str, NotebookResult] = field(default_factory=dict)
    swept: list[ClientRun] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every client completed (or was skipped, not due), 1 when some failed."""
        return 0 if self.run.status is RunStatus.COMPLETED else 1


def kernel_env(settings: Settings, ws: Workspace, log_file: Path, *, secrets: bool = True) -> dict[str, str]:
    """The environment a client kernel needs: workspace, store, log file, and the secrets (never parameters)."""
    env = {
        "LEADKIT_HOME": str(ws.home),
        "LEADKIT_STORE": settings.leadkit_store,
        logs.LOG_FILE_ENV: str(log_file),
        "AIRTABLE_ENDPOINT_URL": settings.airtable_endpoint_url,
        "AIRTABLE_MAX_REQUESTS_PER_S": str(settings.airtable_max_requests_per_s),
        "AIRTABLE_RATE_LIMIT_WAIT_S": str(settings.airtable_rate_limit_wait_s),
        "APIFY_API_URL": settings.apify_api_url,
        "APIFY_ACTOR_ID": settings.apify_actor_id,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    if secrets:
        for name in SECRET_SETTINGS:
            secret = getattr(settings, name)
            if secret is not None:
                env[name.upper()] = secret.get_secret_value()
    return env


def select_clients(ws: Workspace, client_ids: Sequence[str] | None, stream: int | None) -> list[Client]:
    """The named clients (any status), or every Active client (of `stream`, when given)."""
    from leadkit.runids import validate_client_id

    all_clients = ws.store.list_clients()
    if client_ids:
        by_id = {c.client_id: c for c in all_clients}
        chosen = []
        for cid in client_ids:
            validate_client_id(cid)
            if cid not in by_id:
                raise DataError(
                    f"unknown client {cid!r}; known clients: {', '.join(sorted(by_id)) or '(none)'}",
                    hint="List clients with `leadkit clients`.",
                )
            chosen.append(by_id[cid])
        return chosen
    return [c for c in all_clients if c.active and (stream is None or c.stream == stream)]


def may_harvest(client: Client) -> bool:
    """Post harvesting is possible for this client (whether it is due today is the notebook's decision)."""
    return client.active and client.service_level >= 2 and client.post_access


def preflight(ws: Workspace, clients: Sequence[Client], stages: Sequence[str], dry_run: bool) -> None:
    """Before any Run is recorded: check the services this batch will use (ConfigError/AuthError, exit 2).

    The store was reached when the clients were listed; Apify is checked (token set, `users/me` answers) only
    when the batch harvests and some selected client may be harvested."""
    if "harvest" not in stages or dry_run or not any(may_harvest(c) for c in clients):
        return
    from leadkit.harvest.apify import ApifyClient

    apify = ApifyClient.from_settings(ws.settings)
    try:
        apify.whoami()
    finally:
        apify.close()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """A scheduler's SIGTERM ends the batch like Ctrl-C: workers are stopped and the lease released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_batch(
    ws: Workspace,
    *,
    workers: int | None = None,
    client_ids: Sequence[str] | None = None,
    stream: int | None = None,
    resume: str | None = None,
    stages: Sequence[str] = DEFAULT_STAGES,
    dry_run: bool = False,
    notebook: Path = NOTEBOOK,
    timeout_s: float = 600.0,
    start_timeout_s: float = 60.0,
    progress: bool = True,
    executor: str = "local",
    scheduler: str | None = None,
    progress_stream: Any = None,
) -> BatchResult:
    """Run the client notebook for every selected client; see the module docstring."""
    if executor not in EXECUTORS:
        raise DataError(f"unknown executor {executor!r}; accepted: {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ConfigError(
            "--executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)",
            hint="Start a dask scheduler and workers, then pass its address.",
        )
    if not Path(notebook).is_file():
        raise DataError(f"notebook {notebook} does not exist; pass the path of a client workflow notebook")
    records = ws.records
    swept = records.sweep()
    if swept:
        log.warning("swept %d Running records without a fresh heartbeat to Stale", len(swept))
    prior = records.get_run(RunId.parse(resume)) if resume else None
    lease = BatchLease(ws, prior.stream if prior else (stream or 1))
    lease.acquire()
    _crash_point("lease")
    try:
        with _sigterm_exits():
            if prior is not None:
                run, clients = _resume_selection(ws, prior)
                preflight(ws, clients, stages, dry_run)
                todo = _resume(ws, run, clients)
            else:
                clients = select_clients(ws, client_ids, stream)
                preflight(ws, clients, stages, dry_run)
                notes = _SELECTION_PREFIX + ",".join(client_ids) if client_ids else ""
                run = records.start_run(stream=stream or 1, notes=notes)
                _crash_point("run")
                todo = records.open_many(RunId.parse(run.run_id), clients, Source.BATCH)
            _crash_point("opened")
            return _run(
                ws,
                lease,
                run,
                todo,
                swept,
                workers,
                stages,
                dry_run,
                notebook,
                timeout_s,
                start_timeout_s,
                progress,
                executor,
                scheduler,
                progress_stream,
            )
    finally:
        lease.release()


def _run(
    ws: Workspace,
    lease: BatchLease,
    run: Run,
    todo: Sequence[ClientRun],
    swept: list[ClientRun],
    workers: int | None,
    stages: Sequence[str],
    dry_run: bool,
    notebook: Path,
    timeout_s: float,
    start_timeout_s: float,
    progress: bool,
    executor: str,
    scheduler: str | None,
    progress_stream: Any,
) -> BatchResult:
    records = ws.records
    lease.set_run(run.run_id)
    run_id = RunId.parse(run.run_id)
    if lease.takeover_note:
        ws.store.add_events([RunEvent(run.run_id, "", "lease", EventKind.INFO, lease.takeover_note)])
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / "log.jsonl"
    handler = logs.add_jsonl(log_file)
    n_workers = workers or default_workers()
    try:
        with logs.context(run_id=run.run_id):
            log.info("batch %s: %d clients, %s %s workers", run.run_id, len(todo), n_workers, executor)
            jobs = _jobs(
                ws,
                run_id,
                todo,
                run_dir,
                log_file,
                stages,
                dry_run,
                notebook,
                timeout_s,
                start_timeout_s,
                n_workers,
                remote=executor == "dask",
            )
            bar = Progress(len(jobs), enabled=progress, stream=progress_stream)

            def settle(job: NotebookJob, result: NotebookResult) -> None:
                if result.notebook_json is not None:
                    Path(job.output_path).write_text(result.notebook_json, encoding="utf-8")
                    result.notebook_json = None
                status = _settle(ws, run_id, job, result)
                bar.update(job.client_id, status, result.seconds)
                _crash_point("notebook")

            try:
                if executor == "dask":
                    results = _execute_dask(jobs, scheduler or "", settle)
                else:
                    results = _execute_local(jobs, n_workers, settle)
            except BaseException as exc:
                records.finish_run(run, failed_reason=f"the batch stopped before every client ran: {exc!r}")
                raise
            _crash_point("finish")
            run = records.finish_run(run)
            log.info("batch %s finished: %s", run.run_id, run.status.value)
    finally:
        logging.getLogger("leadkit").removeHandler(handler)
    final = ws.store.list_client_runs(run_id=run.run_id)
    return BatchResult(run, sorted(final, key=lambda r: r.client_id), run_dir, lease.takeover_note, results, swept)


def _resume_selection(ws: Workspace, run: Run) -> tuple[Run, list[Client]]:
    """The clients the run was started for: the named ones (kept in its notes), else the Active clients of its
    stream that it has records for or that are Active now."""
    named: list[str] = []
    for line in run.notes.splitlines():
        if line.startswith(_SELECTION_PREFIX):
            named = [c for c in line[len(_SELECTION_PREFIX) :].split(",") if c]
    if named:
        return run, select_clients(ws, named, None)
    existing = {r.client_id for r in ws.store.list_client_runs(run_id=run.run_id)}
    return run, [c for c in ws.store.list_clients() if c.client_id in existing or (c.active and c.stream == run.stream)]


def _resume(ws: Workspace, run: Run, clients: Sequence[Client]) -> list[ClientRun]:
    """The ClientRuns of `run` that had not completed, set Running again (the same records: no duplicates), and
    records opened for selected clients the crash left without one."""
    records = ws.records
    run_id = RunId.parse(run.run_id)
    existing = {r.client_id: r for r in ws.store.list_client_runs(run_id=run.run_id)}
    missing = [c for c in clients if c.client_id not in existing]
    todo = records.open_many(run_id, missing, Source.BATCH) if missing else []
    for record in existing.values():
        if record.status.done:
            continue
        event = RunEvent(run.run_id, record.client_id, "batch", EventKind.INFO, f"resumed (was {record.status.value})")
        record.failure = None
        record.ended_at = None
        records.update(record, [event], status=ClientRunStatus.RUNNING, reason="")
        todo.append(record)
    run.status = RunStatus.RUNNING
    run.ended_at = None
    ws.store.update_run(run)
    log.info("resuming run %s: %d of %d clients had not completed", run.run_id, len(todo), len(existing) + len(missing))
    return sorted(todo, key=lambda r: r.client_id)


def _jobs(
    ws: Workspace,
    run_id: RunId,
    todo: Sequence[ClientRun],
    run_dir: Path,
    log_file: Path,
    stages: Sequence[str],
    dry_run: bool,
    notebook: Path,
    timeout_s: float,
    start_timeout_s: float,
    workers: int,
    *,
    remote: bool,
) -> list[NotebookJob]:
    env = kernel_env(ws.settings, ws, log_file, secrets=not remote)
    clients = {c.client_id: c for c in ws.store.list_clients()}
    jobs = []
    for position, record in enumerate(todo):
        output = str(run_dir / f"{record.client_id}.ipynb")
        jobs.append(
            NotebookJob(
                client_id=record.client_id,
                input_path=str(Path(notebook).resolve()),
                output_path=output,
                parameters={
                    "client_id": record.client_id,
                    "run_id": str(run_id),
                    "stages": ",".join(stages),
                    "workspace": str(ws.home),
                    "store_url": ws.settings.leadkit_store,
                    "dry_run": dry_run,
                    "notebook_path": output,
                    "handoff": handoff(
                        clients[record.client_id],
                        record,
                        ws.records.fresh_events.get((record.run_id, record.client_id)),
                    )
                    if record.client_id in clients
                    else "",
                },
                env=env,
                cwd=str(run_dir),
                timeout_s=timeout_s,
                start_timeout_s=start_timeout_s,
                # start the next kernel only while more jobs wait than there are workers to take them
                prestart_next=position < len(todo) - workers,
            )
        )
    return jobs


Settle = Callable[[NotebookJob, NotebookResult], None]


def _execute_local(jobs: Sequence[NotebookJob], workers: int, settle: Settle) -> dict[str, NotebookResult]:
    results: dict[str, NotebookResult] = {}
    if not jobs:
        return results
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["leadkit.batch", "papermill", "nbclient", "jupyter_client.manager"])
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


def _settle(ws: Workspace, run_id: RunId, job: NotebookJob, result: NotebookResult) -> str:
    """After a notebook: a record the notebook left Running (cell raised, kernel died, timeout) becomes Failed
    with the reason; the executed notebook is kept either way. Returns the ClientRun's status. A notebook that
    ran to the end and published a final status completed its own record: nothing to read or write here."""
    if result.ok and result.status is not None and result.status != ClientRunStatus.RUNNING.value:
        return result.status
    record = ws.store.get_client_run(run_id.base, job.client_id)
    if record is None:
        return ClientRunStatus.FAILED.value
    if record.status is not ClientRunStatus.RUNNING:
        if record.notebook is None:
            ws.records.update(record, notebook=job.output_path)
        return record.status.value
    reason = result.message if not result.ok else "the notebook ended without completing its ClientRun"
    error = NotebookError(reason)
    failure = Failure(
        category=str(error.category),
        fingerprint=fingerprint(str(error.category), reason),
        message=reason,
        hint={
            "dead_kernel": "The kernel died (out of memory, or killed). Open the executed notebook; re-run with "
            "`leadkit batch --resume RUN_ID`.",
            "timeout": "The notebook ran past its timeout; raise `--timeout` or look at the slow stage in the "
            "executed notebook.",
        }.get(result.kind, "Open the executed notebook at the failing cell; the traceback is there."),
        run_id=run_id.base,
        client_id=job.client_id,
        stage="notebook",
        notebook=job.output_path,
        cell=result.cell,
    )
    event = RunEvent(run_id.base, job.client_id, "notebook", EventKind.FAILED, reason)
    ws.records.update(
        record, [event], status=ClientRunStatus.FAILED, reason=reason, failure=failure, notebook=job.output_path
    )
    return ClientRunStatus.FAILED.value


# -------------------------------------------------------------------------------------------- prune
@dataclass
class PruneReport:
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    kept_running: list[str] = field(default_factory=list)


PRUNABLE_SUFFIXES = (".ipynb", ".jsonl", ".log")


def prune(ws: Workspace, older_than: timedelta, *, dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Remove executed notebooks and logs of runs older than `older_than` (by file time); records stay. The
    folders of runs still Running are left alone."""
    cutoff = (now or utcnow()).timestamp() - older_than.total_seconds()
    report = PruneReport()
    if not ws.home.is_dir():
        return report
    for run_dir in sorted(ws.home.iterdir()):
        if not run_dir.is_dir() or not _is_base_run_id(run_dir.name):
            continue
        run = ws.store.get_run(run_dir.name)
        if run is not None and run.status is RunStatus.RUNNING:
            report.kept_running.append(run_dir.name)
            continue
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and path.suffix in PRUNABLE_SUFFIXES and path.stat().st_mtime < cutoff:
                report.bytes_freed += path.stat().st_size
                report.removed.append(path)
                if not dry_run:
                    path.unlink()
        if not dry_run and not any(run_dir.iterdir()):
            run_dir.rmdir()
    return report


def _is_base_run_id(name: str) -> bool:
    try:
        run_id = RunId.parse(name)
    except DataError:
        return False
    return str(run_id) == name and run_id.client_id is None
