"""The batch: select the clients, take the lease of each of their streams, sweep under it, mint a run, execute the
client notebook for each client through papermill's Python API, record what failed, finish the Run, and exit with
a code a scheduler can act on (0 all completed, 1 some clients failed, 2 configuration, auth or selection error
before any client ran, 3 a live batch holds a stream's lease or took it over from this one).

Crash safety: kernels die with the batch (see ``leadkit.batch.kernels``); a ClientRun is keyed by (run, client),
so ``--resume RUN_ID`` reopens the same records and runs only those that had not completed.

Concurrency: up to `--concurrency` clients at once (`LEADKIT_CONCURRENCY`; by default as many kernels as
available memory holds at `KERNEL_MB` each, 8 to 32); their Apify runs share `APIFY_MAX_CONCURRENT_RUNS` slots
(by default the account's cap on runs at once, read once per batch and shared with every batch of the account) through `leadkit.capacity`. A ClientRun is opened
when its client gets a slot, so a client waiting in the queue is never Running (and never Stale).

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
from datetime import timedelta
from pathlib import Path
from typing import Any

from leadkit import logs
from leadkit.batch.executors import execute_dask, execute_local
from leadkit.batch.kernels import WARM_SPARES, NotebookJob, NotebookResult
from leadkit.batch.lease import DEFAULT_TTL_S, StreamLeases
from leadkit.batch.progress import Progress
from leadkit.batch.settle import _settle, settle_stopped
from leadkit.capacity import DEFAULT_RUNS, SLOTS_ENV, SlotSpec
from leadkit.config import SECRET_SETTINGS, Settings
from leadkit.errors import ConfigError, DataError, LeadkitError
from leadkit.history import attempt_notebook, end_attempt, ended_attempt_counts, record_finish, status_event
from leadkit.models import (
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Run,
    RunEvent,
    RunStatus,
    Source,
    interrupted_reason,
)
from leadkit.records import handoff, holder_name
from leadkit.resources import notebooks_dir
from leadkit.runids import RunId
from leadkit.streams import may_harvest
from leadkit.workflow import DEFAULT_STAGES
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")

NOTEBOOK = notebooks_dir() / "client_workflow.ipynb"
EXECUTORS = ("local", "dask")
CRASH_ENV = "LEADKIT_TEST_CRASH_AT"
CRASH_POINTS = ("lease", "run", "opened", "notebook", "finish")
_SELECTION_PREFIX = "selection: clients "


KERNEL_MB = 300
MIN_CONCURRENCY, MAX_CONCURRENCY = 8, 32


def default_concurrency() -> int:
    """As many kernels as available memory holds at about `KERNEL_MB` each, at least 8 and at most 32, whatever
    the store. Clients beyond the Apify capacity wait for a slot (`leadkit.capacity`); with the Airtable store,
    request pacing is a separate limit every kernel already shares, so it does not lower the concurrency."""
    import psutil

    fits = psutil.virtual_memory().available // (KERNEL_MB * 2**20)
    return int(min(MAX_CONCURRENCY, max(MIN_CONCURRENCY, fits)))


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
    #: Why the batch stopped starting clients (it lost a lease), or None.
    lost_lease: str | None = None
    concurrency: int = 0
    apify_runs: int | None = None

    @property
    def exit_code(self) -> int:
        """0 when every client completed (or was skipped, not due), 1 when some failed, 3 when the batch lost
        its lease to another live batch (the clients it had not started are left for it, or for --resume)."""
        if self.lost_lease:
            return 3
        return 0 if self.run.status is RunStatus.COMPLETED else 1


def kernel_env(
    settings: Settings, ws: Workspace, log_file: Path, *, secrets: bool = True, slots: SlotSpec | None = None
) -> dict[str, str]:
    """The environment a client kernel needs: workspace, store, log file, the batch's Apify slots, and the
    secrets (never parameters)."""
    env = {
        "LEADKIT_HOME": str(ws.home),
        "LEADKIT_STORE": settings.leadkit_store,
        logs.LOG_FILE_ENV: str(log_file),
        "AIRTABLE_ENDPOINT_URL": settings.airtable_endpoint_url,
        "AIRTABLE_MAX_REQUESTS_PER_S": str(settings.airtable_max_requests_per_s),
        "AIRTABLE_RATE_LIMIT_WAIT_S": str(settings.airtable_rate_limit_wait_s),
        "APIFY_API_URL": settings.apify_api_url,
        "APIFY_ACTOR_ID": settings.apify_actor_id,
        "LEADKIT_STALE_AFTER_S": str(settings.leadkit_stale_after_s),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    if slots is not None:
        env[SLOTS_ENV] = slots.to_env()
    if secrets:
        for name in SECRET_SETTINGS:
            secret = getattr(settings, name)
            if secret is not None:
                env[name.upper()] = secret.get_secret_value()
    return env


def select_clients(
    ws: Workspace,
    client_ids: Sequence[str] | None,
    stream: int | None,
    *,
    known: Sequence[Client] | None = None,
) -> list[Client]:
    """The named clients (any status), or every Active client (of `stream`, when given), among `known` (the
    workspace's clients as the caller read them; read here when not given). DataError (exit 2) when that is
    nobody, naming what was asked and what the workspace has."""
    from leadkit.runids import validate_client_id

    all_clients = list(known) if known is not None else ws.store.list_clients()
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
    chosen = [c for c in all_clients if c.active and (stream is None or c.stream == stream)]
    if not chosen:
        asked = f"the Active clients of stream {stream}" if stream is not None else "the Active clients"
        active = sorted({c.stream for c in all_clients if c.active})
        statuses = sorted({c.status for c in all_clients})
        exists = (
            f"the workspace has {len(all_clients)} clients (statuses: {', '.join(statuses)}); Active ones are in "
            f"streams {', '.join(map(str, active))}"
            if active
            else f"the workspace has {len(all_clients)} clients and none is Active"
            + (f" (statuses: {', '.join(statuses)})" if statuses else "")
        )
        raise DataError(
            f"no client selected: asked for {asked}; {exists}",
            hint="Check --stream and the clients' Status (`leadkit clients`); nothing was run or recorded.",
        )
    return chosen


def preflight(ws: Workspace, clients: Sequence[Client], stages: Sequence[str], dry_run: bool) -> int | None:
    """Before any Run is recorded: check the services this batch will use (ConfigError/AuthError, exit 2), and
    return the Apify runs the batch may have in flight (None when it will not harvest).

    The store was reached when the clients were listed; Apify is checked (token set, `users/me` answers) only
    when the batch harvests and some selected client may be harvested. The runs are APIFY_MAX_CONCURRENT_RUNS
    when set, else the account's cap on runs at once (`users/me/limits`; every batch of the account shares it
    through the account's slots), else `DEFAULT_RUNS`."""
    if "harvest" not in stages or dry_run or not any(may_harvest(c) for c in clients):
        return None
    from leadkit.capacity import account_run_limit
    from leadkit.harvest.apify import ApifyClient

    apify = ApifyClient.from_settings(ws.settings)
    try:
        apify.whoami()
        if ws.settings.apify_max_concurrent_runs:
            return ws.settings.apify_max_concurrent_runs
        free = account_run_limit(apify)
    finally:
        apify.close()
    if free is None:
        log.warning("the Apify account's limits could not be read: %d runs at once", DEFAULT_RUNS)
        return DEFAULT_RUNS
    return max(1, free)


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """A scheduler's SIGTERM ends the batch like Ctrl-C (SIGINT, KeyboardInterrupt): kernels are stopped, every
    client it started is settled (`settle_stopped`) and the leases released. Only the first signal stops the
    batch; a second one while it settles is logged and ignored, so the settling is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stopping:
            log.warning("signal %d ignored: the batch is stopping (settling its clients)", signum)
            return
        stopping.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_signal(exc: BaseException) -> int | None:
    """The signal that stopped the batch, from the exception it raised: SIGINT for KeyboardInterrupt, N for
    SystemExit(128 + N); None for anything else."""
    if isinstance(exc, KeyboardInterrupt):
        return int(signal.SIGINT)
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128:
        return exc.code - 128
    return None


def run_batch(
    ws: Workspace,
    *,
    concurrency: int | None = None,
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
    lease_ttl_s: float = DEFAULT_TTL_S,
) -> BatchResult:
    """Run the client notebook for every selected client; see the module docstring. `workers` is the old
    name of `concurrency`."""
    if executor not in EXECUTORS:
        raise DataError(f"unknown executor {executor!r}; accepted: {', '.join(EXECUTORS)}")
    if executor == "dask" and not scheduler:
        raise ConfigError(
            "--executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)",
            hint="Start a dask scheduler and workers, then pass its address.",
        )
    if not Path(notebook).is_file():
        raise DataError(f"notebook {notebook} does not exist; pass the path of a client workflow notebook")
    n = concurrency or workers or ws.settings.leadkit_concurrency or default_concurrency()
    records = ws.records
    prior = records.get_run(RunId.parse(resume)) if resume else None
    if prior is not None and dry_run and not prior.dry_run:
        raise DataError(
            f"run {prior.run_id} is not a dry run: --dry-run cannot resume it",
            hint=f"Resume it as it was started: `leadkit batch --resume {prior.run_id}` (nothing was run).",
        )
    if prior is not None:
        dry_run = prior.dry_run  # a dry run resumes dry, a real run real
    known = ws.store.list_clients()  # read once: the selection, the sweep and the jobs all use it
    if prior is not None:
        clients = _resume_selection(ws, prior, known)
    else:
        clients = select_clients(ws, client_ids, stream, known=known)
    streams = sorted({c.stream for c in clients}) or [prior.stream if prior else (stream or 1)]
    leases = StreamLeases(ws, streams, ttl_s=lease_ttl_s)
    leases.acquire()
    _crash_point("lease")
    try:
        with _sigterm_exits():
            swept, _ = _sweep_under(ws, streams, known=known)
            apify_runs = preflight(ws, clients, stages, dry_run)
            if prior is not None:
                run = records.get_run(prior.run_id)
                todo = _resume(ws, run, clients)
                resumed = {r.client_id for r in ws.store.list_client_runs(run_id=run.run_id)}
            else:
                notes = _SELECTION_PREFIX + ",".join(client_ids) if client_ids else ""
                run = records.start_run(stream=streams[0], notes=notes, dry_run=dry_run)
                _crash_point("run")
                todo = [c.client_id for c in clients]
                resumed = set()
            return _run(
                ws,
                leases,
                run,
                known,
                todo,
                resumed if prior is not None else None,
                swept,
                n,
                apify_runs,
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
        leases.release()


@dataclass
class SweepReport:
    swept: list[ClientRun] = field(default_factory=list)
    runs_failed: list[Run] = field(default_factory=list)
    #: Streams left alone because a live batch holds their lease (what LeaseHeld said).
    held: list[str] = field(default_factory=list)


def _sweep_under(
    ws: Workspace,
    streams: Sequence[int],
    older_than: timedelta | None = None,
    *,
    known: Sequence[Client] | None = None,
) -> tuple[list[ClientRun], list[Run]]:
    """The sweep, for a caller that holds the leases of `streams`: nothing of them is running, so what is
    Running there is left over. `known`: the workspace's clients, when the caller has read them."""
    listed = known if known is not None else ws.store.list_clients()
    clients = {c.client_id for c in listed if c.stream in streams}
    swept = ws.records.sweep(older_than=older_than, clients=clients)
    if swept:
        log.warning("swept %d Running records of streams %s to Stale", len(swept), streams)
    return swept, ws.records.sweep_runs(streams)


def sweep_streams(
    ws: Workspace,
    streams: Sequence[int] | None = None,
    *,
    older_than: timedelta | None = None,
    lease_ttl_s: float = DEFAULT_TTL_S,
) -> SweepReport:
    """Sweep each stream (default: every stream a client or a Running run belongs to) under its lease, one at a
    time; a stream whose lease a live batch holds is left alone and named in `held`."""
    from leadkit.errors import LeaseHeld
    from leadkit.store.base import RunFilter

    if streams is None:
        running = ws.store.list_runs(RunFilter(status=RunStatus.RUNNING.value), limit=1000)
        streams = sorted({c.stream for c in ws.store.list_clients()} | {r.stream for r in running})
    report = SweepReport()
    for stream in streams:
        lease = StreamLeases(ws, [stream], ttl_s=lease_ttl_s)
        try:
            lease.acquire()
        except LeaseHeld as exc:
            report.held.append(f"stream {stream}: {exc}")
            continue
        try:
            swept, failed = _sweep_under(ws, [stream], older_than)
            report.swept += swept
            report.runs_failed += failed
        finally:
            lease.release()
    return report


def _run(
    ws: Workspace,
    leases: StreamLeases,
    run: Run,
    known: Sequence[Client],
    todo: Sequence[str],
    resumed_records: set[str] | None,
    swept: list[ClientRun],
    concurrency: int,
    apify_runs: int | None,
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
    # a resumed run: the clients it has records of; a new run (None) has no records or events yet
    resumed = resumed_records or set()
    was_resumed = None if resumed_records is not None else False
    leases.set_run(run.run_id)
    run_id = RunId.parse(run.run_id)
    for note in leases.takeover_notes:
        ws.store.add_events([RunEvent(run.run_id, "", "lease", EventKind.INFO, note)])
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = run_dir / "log.jsonl"
    handler = logs.add_jsonl(log_file)
    remote = executor == "dask"
    slots: SlotSpec | None = None
    if apify_runs is not None:
        slots = (
            SlotSpec(apify_runs, "dask", scheduler=scheduler or "", name=f"leadkit-apify-{ws.home.name}")
            if remote
            else SlotSpec(apify_runs, "file", path=str(ws.home / "apify-slots"))
        )
    env = kernel_env(ws.settings, ws, log_file, secrets=not remote, slots=slots)
    clients = {c.client_id: c for c in known}
    queue = list(todo)
    total = len(queue)
    attempts = ended_attempt_counts(ws, run_id.base) if resumed else {}
    lost: list[str] = []
    handed_out: dict[str, NotebookJob] = {}  # every job dispatched, by client: a stopped batch settles them

    def dispatch(k: int) -> list[NotebookJob]:
        """Open the ClientRuns of the next `k` clients (one store call) and hand out their jobs; none once a
        lease is lost."""
        if leases.lost:
            if not lost:
                lost.append(leases.lost)
                _record_lost_lease(ws, run, leases.lost, queue)
            return []
        if k <= 0 or not queue:
            return []
        chosen, queue[:] = queue[:k], queue[k:]
        # a client without a record of this run opens in one write; one with a record (a resumed run) is found
        first = [clients.get(cid) or cid for cid in chosen if cid not in resumed]
        again = [clients.get(cid) or cid for cid in chosen if cid in resumed]
        opened = (records.open_many(run_id, first, Source.BATCH, new=True) if first else []) + (
            records.open_many(run_id, again, Source.BATCH) if again else []
        )
        _crash_point("opened")
        jobs: list[NotebookJob] = []
        for record in opened:
            attempt = attempts.get(record.client_id, 0) + 1
            if record.client_id in resumed and not record.status.done:  # its record is from an earlier attempt
                event = RunEvent(
                    run.run_id, record.client_id, "batch", EventKind.INFO, f"resumed (was {record.status.value})"
                )
                kept = end_attempt(record, attempt)  # the attempt that ended stays on record
                attempt += 1
                record.failure = None
                record.ended_at = None
                record.notebook = None  # the next attempt writes its own file (`history.attempt_notebook`)
                records.update(record, [kept, event], status=ClientRunStatus.RUNNING, reason="", hand_over=True)
            position = total - len(queue) - len(opened) + len(jobs)
            jobs.append(
                _job(
                    ws,
                    run_id,
                    record,
                    clients.get(record.client_id),
                    run_dir,
                    env,
                    stages,
                    dry_run,
                    notebook,
                    timeout_s,
                    start_timeout_s,
                    # spares warmed ahead while clients remain after this one
                    warm_ahead=0 if remote else min(WARM_SPARES, total - position - 1),
                    attempt=attempt,
                )
            )
            handed_out[record.client_id] = jobs[-1]
        return jobs

    try:
        with logs.context(run_id=run.run_id):
            log.info(
                "batch %s: %d clients, %d at once (%s), %s Apify runs at once",
                run.run_id,
                total,
                concurrency,
                executor,
                apify_runs if apify_runs is not None else "no",
            )
            bar = Progress(total, enabled=progress, stream=progress_stream)

            def settle(job: NotebookJob, result: NotebookResult) -> None:
                if result.notebook_json is not None:
                    Path(job.output_path).write_text(result.notebook_json, encoding="utf-8")
                    result.notebook_json = None
                status = _settle(ws, run_id, job, result)
                bar.update(job.client_id, status, result.seconds)
                _crash_point("notebook")

            try:
                if remote and ws.settings.leadkit_store.startswith("airtable://"):
                    from leadkit.store.airtable.remote import coordinate

                    with coordinate(ws.home, scheduler or ""):
                        results = execute_dask(dispatch, concurrency, settle, scheduler or "")
                elif remote:
                    results = execute_dask(dispatch, concurrency, settle, scheduler or "")
                else:
                    results = execute_local(dispatch, concurrency, settle)
            except BaseException as exc:
                signum = stop_signal(exc)
                why = interrupted_reason(signum) if signum is not None else f"the batch stopped: {exc!r}"
                try:
                    settle_stopped(ws, run_id, handed_out, why)
                except LeadkitError as error:  # the store failed too: the next batch's sweep settles them (Stale)
                    log.error("the clients of the stopped batch could not all be settled: %s", error.message)
                run = records.finish_run(run, failed_reason=f"{why}: the batch stopped before every client ran")
                record_finish(ws, run, resumed=was_resumed)
                try:  # the stopped clients are failures like any other: the operator hears of them
                    _alert(ws, run, swept, leases)
                except Exception as error:  # noqa: BLE001 - the stop itself must go on; the alert is logged
                    log.error("the alert for the stopped batch %s failed: %r", run.run_id, error)
                raise
            finally:
                bar.close()
            if leases.lost and not lost:  # lost while the last clients ran
                lost.append(leases.lost)
                _record_lost_lease(ws, run, leases.lost, queue)
            _crash_point("finish")
            run = records.finish_run(run, failed_reason=lost[0] if lost else None)
            record_finish(ws, run, resumed=was_resumed)
            log.info("batch %s finished: %s", run.run_id, run.status.value)
    finally:
        logging.getLogger("leadkit").removeHandler(handler)
    final = _alert(ws, run, swept, leases)
    takeover = "; ".join(leases.takeover_notes) or None
    return BatchResult(
        run,
        sorted(final, key=lambda r: r.client_id),
        run_dir,
        takeover,
        results,
        swept,
        lost[0] if lost else None,
        concurrency,
        apify_runs,
    )


def _alert(ws: Workspace, run: Run, swept: Sequence[ClientRun], leases: StreamLeases) -> list[ClientRun]:
    """The batch's alerts (failed clients, swept records, a lease taken over), from its records as the store has
    them now; returns those records. Called once a batch ended, normally or stopped by a signal."""
    from leadkit.alerts import after_batch

    final = ws.store.list_client_runs(run_id=run.run_id)
    takeover = "; ".join(leases.takeover_notes) or None
    after_batch(
        ws, run, final, swept=list(swept), takeover_note=takeover, lease=",".join(le.name for le in leases.leases)
    )
    return final


def _record_lost_lease(ws: Workspace, run: Run, why: str, queue: Sequence[str]) -> None:
    message = f"{why}; started no further client ({len(queue)} not started), let the running ones finish"
    log.error(message)
    ws.store.add_events([RunEvent(run.run_id, "", "lease", EventKind.FAILED, message)])


def _resume_selection(ws: Workspace, run: Run, known: Sequence[Client]) -> list[Client]:
    """The clients the run was started for: the named ones (kept in its notes), else the Active clients of its
    stream that it has records for or that are Active now."""
    named: list[str] = []
    for line in run.notes.splitlines():
        if line.startswith(_SELECTION_PREFIX):
            named = [c for c in line[len(_SELECTION_PREFIX) :].split(",") if c]
    if named:
        return select_clients(ws, named, None, known=known)
    existing = {r.client_id for r in ws.store.list_client_runs(run_id=run.run_id)}
    return [c for c in known if c.client_id in existing or (c.active and c.stream == run.stream)]


def _resume(ws: Workspace, run: Run, clients: Sequence[Client]) -> list[str]:
    """The clients of `run` that had not completed. Their ClientRuns (the same records: no duplicates) are set
    Running again when they get a slot; selected clients the crash left without a record are opened then."""
    existing = {r.client_id: r for r in ws.store.list_client_runs(run_id=run.run_id)}
    todo = sorted(
        {c.client_id for c in clients if c.client_id not in existing}
        | {cid for cid, r in existing.items() if not r.status.done}
    )
    ws.store.add_events([status_event(run, f"Resumed (was {run.status.value})")])
    run.status = RunStatus.RUNNING
    run.ended_at = None
    run.started_by = holder_name()  # the batch that runs it now: a later sweep asks whether this one is alive
    ws.store.update_run(run)
    log.info(
        "resuming run %s: %d of %d clients had not completed",
        run.run_id,
        len(todo),
        len(existing | dict.fromkeys(todo)),
    )
    return todo


def _job(
    ws: Workspace,
    run_id: RunId,
    record: ClientRun,
    client: Client | None,
    run_dir: Path,
    env: dict[str, str],
    stages: Sequence[str],
    dry_run: bool,
    notebook: Path,
    timeout_s: float,
    start_timeout_s: float,
    *,
    warm_ahead: int,
    attempt: int,
) -> NotebookJob:
    output = str(attempt_notebook(run_dir, record.client_id, attempt))
    return NotebookJob(
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
            "handoff": handoff(client, record, ws.records.fresh_events.get((record.run_id, record.client_id)))
            if client is not None
            else "",
        },
        env=env,
        cwd=str(run_dir),
        timeout_s=timeout_s,
        start_timeout_s=start_timeout_s,
        warm_ahead=warm_ahead,
    )
