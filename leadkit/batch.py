"""The batch: mint a run, open a ClientRun for every Active client, execute the client notebook for each through
papermill's Python API in parallel worker processes, record what failed, finish the Run, exit with a code a
scheduler can act on (0 all completed, 1 some clients failed, 2 configuration or auth error, 3 lease held).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from leadkit import logs
from leadkit.config import SECRET_SETTINGS, Settings, scrub
from leadkit.diagnosis import fingerprint
from leadkit.errors import DataError, LeaseHeld, NotebookError
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
from leadkit.runids import RunId
from leadkit.workflow import DEFAULT_STAGES
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "client_workflow.ipynb"


def default_workers() -> int:
    return os.cpu_count() or 2


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


@dataclass
class NotebookResult:
    client_id: str
    ok: bool
    seconds: float
    kind: str = ""  # "", "exception", "dead_kernel", "timeout", "error"
    message: str = ""
    cell: int | None = None


def _worker_init() -> None:
    """Worker processes die with the batch (Linux: the kernel signals them when their parent dies)."""
    _die_with_parent()


def _die_with_parent() -> None:
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def execute_notebook(job: NotebookJob) -> NotebookResult:
    """Run one client notebook with papermill (in a worker process)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    os.environ.update(job.env)
    started = time.monotonic()
    try:
        papermill.execute_notebook(
            job.input_path,
            job.output_path,
            parameters=job.parameters,
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            cwd=job.cwd,
            start_timeout=job.start_timeout_s,
            execution_timeout=job.timeout_s,
            shutdown_kernel="immediate",
        )
    except papermill.PapermillExecutionError as exc:
        return NotebookResult(
            job.client_id,
            False,
            time.monotonic() - started,
            "exception",
            scrub(f"cell {exc.cell_index} raised {exc.ename}: {exc.evalue}"),
            exc.cell_index,
        )
    except DeadKernelError as exc:
        return NotebookResult(
            job.client_id, False, time.monotonic() - started, "dead_kernel", scrub(f"the kernel died: {exc}")
        )
    except (CellTimeoutError, TimeoutError) as exc:
        return NotebookResult(
            job.client_id,
            False,
            time.monotonic() - started,
            "timeout",
            scrub(f"the notebook ran past its timeout of {job.timeout_s:g} s: {exc}"),
        )
    except Exception as exc:  # papermill/nbclient errors of other kinds: recorded, never lost
        return NotebookResult(
            job.client_id, False, time.monotonic() - started, "error", scrub(f"{type(exc).__name__}: {exc}")
        )
    return NotebookResult(job.client_id, True, time.monotonic() - started)


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
    host, or a heartbeat older than its TTL from another host) is taken over."""

    def __init__(self, ws: Workspace, stream: int, *, ttl_s: float = 120.0) -> None:
        self.ws = ws
        self.name = lease_name(stream)
        self.ttl_s = ttl_s
        self.current: Lease | None = None
        self.takeover_note: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def acquire(self, run_id: str = "") -> None:
        store = self.ws.store
        now = utcnow()
        mine = Lease(self.name, socket.gethostname(), os.getpid(), run_id, now, now, self.ttl_s)
        for _ in range(5):
            held = store.get_lease(self.name)
            if held is not None:
                same_host = held.host == socket.gethostname()
                age = (now - held.heartbeat_at).total_seconds()
                if same_host and not _pid_alive(held.pid):
                    note = f"took over the lease of {held.host}:{held.pid} (process no longer exists)"
                elif not same_host and age > held.ttl_s:
                    note = f"took over the lease of {held.host}:{held.pid} (heartbeat {age:.0f} s old > TTL)"
                else:
                    raise LeaseHeld(
                        f"another batch of stream {self.name.rsplit('-', 1)[-1]} is running: held by "
                        f"{held.host} process {held.pid} since {held.acquired_at.isoformat(timespec='seconds')}"
                        + (f" (run {held.run_id})" if held.run_id else ""),
                        holder=f"{held.host}:{held.pid}",
                    )
                if store.swap_lease(self.name, held, mine):
                    self.current, self.takeover_note = mine, note
                    log.warning(note)
                    break
            elif store.swap_lease(self.name, None, mine):
                self.current = mine
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

    @property
    def exit_code(self) -> int:
        if self.run.status is RunStatus.COMPLETED:
            return 0
        return 1


def kernel_env(settings: Settings, ws: Workspace, log_file: Path) -> dict[str, str]:
    """The environment a client kernel needs: workspace, store, log file, and the secrets (never parameters)."""
    env = {
        "LEADKIT_HOME": str(ws.home),
        "LEADKIT_STORE": settings.leadkit_store,
        logs.LOG_FILE_ENV: str(log_file),
        "AIRTABLE_ENDPOINT_URL": settings.airtable_endpoint_url,
        "APIFY_API_URL": settings.apify_api_url,
        "APIFY_ACTOR_ID": settings.apify_actor_id,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    for name in SECRET_SETTINGS:
        secret = getattr(settings, name)
        if secret is not None:
            env[name.upper()] = secret.get_secret_value()
    return env


def select_clients(ws: Workspace, client_ids: Sequence[str] | None, stream: int | None) -> list[Client]:
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
    on_event: Callable[[str], None] | None = None,
) -> BatchResult:
    """Run the client notebook for every selected client; see the module docstring."""
    records = ws.records
    swept = records.sweep()
    if swept:
        log.warning("swept %d Running records without a fresh heartbeat to Stale", len(swept))
    lease = BatchLease(ws, stream or 1)
    lease.acquire()
    try:
        if resume:
            run, todo = _resume(ws, resume)
        else:
            clients = select_clients(ws, client_ids, stream)
            run = records.start_run(stream=stream or 1)
            todo = records.open_many(RunId.parse(run.run_id), clients, Source.BATCH)
        lease.set_run(run.run_id)
        run_id = RunId.parse(run.run_id)
        if lease.takeover_note:
            ws.store.add_events([RunEvent(run.run_id, "", "lease", EventKind.INFO, lease.takeover_note)])
        run_dir = ws.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_file = run_dir / "log.jsonl"
        logs.add_jsonl(log_file)
        with logs.context(run_id=run.run_id):
            log.info("batch %s: %d clients, %s workers", run.run_id, len(todo), workers or default_workers())
            results = _execute_all(
                ws,
                run_id,
                todo,
                run_dir,
                kernel_env(ws.settings, ws, log_file),
                workers=workers or default_workers(),
                stages=stages,
                dry_run=dry_run,
                notebook=notebook,
                timeout_s=timeout_s,
                start_timeout_s=start_timeout_s,
                progress=progress,
            )
            run = records.finish_run(run)
            log.info("batch %s finished: %s", run.run_id, run.status.value)
        final = ws.store.list_client_runs(run_id=run.run_id)
        return BatchResult(run, sorted(final, key=lambda r: r.client_id), run_dir, lease.takeover_note, results)
    finally:
        lease.release()


def _resume(ws: Workspace, text: str) -> tuple[Run, list[ClientRun]]:
    """The Run and the ClientRuns that had not completed, set Running again (the same records: no duplicates)."""
    records = ws.records
    run = records.get_run(RunId.parse(text))
    existing = {r.client_id: r for r in ws.store.list_client_runs(run_id=run.run_id)}
    active = [c for c in ws.store.list_clients() if c.active and c.stream == run.stream]
    missing = [c for c in active if c.client_id not in existing]
    run_id = RunId.parse(run.run_id)
    todo = records.open_many(run_id, missing, Source.BATCH) if missing else []
    for record in existing.values():
        if record.status.done:
            continue
        event = RunEvent(
            run.run_id, record.client_id, "batch", EventKind.INFO, f"resumed (was {record.status.value})"
        )
        record.failure = None
        record.ended_at = None
        records.update(record, [event], status=ClientRunStatus.RUNNING, reason="")
        todo.append(record)
    run.status = RunStatus.RUNNING
    run.ended_at = None
    ws.store.update_run(run)
    return run, sorted(todo, key=lambda r: r.client_id)


def _execute_all(
    ws: Workspace,
    run_id: RunId,
    todo: Sequence[ClientRun],
    run_dir: Path,
    env: dict[str, str],
    *,
    workers: int,
    stages: Sequence[str],
    dry_run: bool,
    notebook: Path,
    timeout_s: float,
    start_timeout_s: float,
    progress: bool,
) -> dict[str, NotebookResult]:
    jobs = [
        NotebookJob(
            client_id=record.client_id,
            input_path=str(notebook),
            output_path=str(run_dir / f"{record.client_id}.ipynb"),
            parameters={
                "client_id": record.client_id,
                "run_id": str(run_id),
                "stages": ",".join(stages),
                "workspace": str(ws.home),
                "store_url": ws.settings.leadkit_store,
                "dry_run": dry_run,
                "notebook_path": str(run_dir / f"{record.client_id}.ipynb"),
            },
            env=env,
            cwd=str(run_dir),
            timeout_s=timeout_s,
            start_timeout_s=start_timeout_s,
        )
        for record in todo
    ]
    bar = Progress(len(jobs), enabled=progress)
    results: dict[str, NotebookResult] = {}
    if not jobs:
        return results
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=_worker_init
    ) as pool:
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
                record = _settle(ws, run_id, job, result)
                bar.update(job.client_id, record.status.value if record else "Failed", result.seconds)
    return results


def _settle(ws: Workspace, run_id: RunId, job: NotebookJob, result: NotebookResult) -> ClientRun | None:
    """After a notebook: a record the notebook left Running (cell raised, kernel died, timeout) becomes Failed
    with the reason; the executed notebook is kept either way."""
    record = ws.store.get_client_run(run_id.base, job.client_id)
    if record is None:
        return None
    if record.status is not ClientRunStatus.RUNNING:
        if record.notebook is None:
            record.notebook = job.output_path
            ws.records.update(record, notebook=job.output_path)
        return record
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
    return ws.records.update(
        record, [event], status=ClientRunStatus.FAILED, reason=reason, failure=failure, notebook=job.output_path
    )


def older_than(days: float) -> timedelta:
    return timedelta(days=days)
