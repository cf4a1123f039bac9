"""The batch: mint a run, open a ClientRun for every selected client, execute the client notebook for each through
papermill's Python API in parallel worker processes, record what failed, finish the Run, exit with a code a
scheduler can act on (0 all completed, 1 some clients failed, 2 configuration or auth error before any client ran,
3 another batch of the stream holds the lease).

Crash safety: workers and kernels die with the batch (see ``leadkit.batch.kernels``); a ClientRun is keyed by
(run, client), so ``--resume RUN_ID`` reopens the same records and runs only those that had not completed.

Test hook: ``LEADKIT_TEST_CRASH_AT=<point>`` (one of ``CRASH_POINTS``) makes the batch kill itself with SIGKILL at
that point, so the crash tests can stop it exactly there. It has no other effect.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadkit import logs
from leadkit.batch.executors import _execute_dask, _execute_local
from leadkit.batch.kernels import NotebookJob, NotebookResult
from leadkit.batch.lease import BatchLease
from leadkit.batch.progress import Progress
from leadkit.batch.settle import _settle
from leadkit.config import SECRET_SETTINGS, Settings
from leadkit.errors import ConfigError, DataError
from leadkit.models import (
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Run,
    RunEvent,
    RunStatus,
    Source,
)
from leadkit.records import handoff
from leadkit.resources import notebooks_dir
from leadkit.runids import RunId
from leadkit.workflow import DEFAULT_STAGES
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")

NOTEBOOK = notebooks_dir() / "client_workflow.ipynb"
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
    from leadkit.alerts import after_batch

    after_batch(ws, run, final, swept=swept, takeover_note=lease.takeover_note, lease=lease.name)
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
