"""Run records: the single creation point for ClientRuns, additive metrics, heartbeats and the stale sweep.

`RunRecordService.open` is the only way a ClientRun comes to exist, from one of three sources (batch, notebook,
recovery). It is idempotent: opening an existing (run, client) returns the record that is there. "Refuse to
create" and "create on a miss" are therefore one policy: a stage that reports for a ClientRun that does not
exist goes through `attach`, which opens it with source `recovery` and says so in an event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

from leadkit.classify import failure_from
from leadkit.errors import DataError, LeadkitError, MissingRecordError
from leadkit.models import (
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Failure,
    Run,
    RunEvent,
    RunStatus,
    Source,
    event_from_dict,
    utcnow,
)
from leadkit.runids import RunId, validate_client_id
from leadkit.store.base import Store

log = logging.getLogger("leadkit.records")


def _source(value: Source | str) -> Source:
    try:
        return Source(value)
    except ValueError:
        raise DataError(
            f"{value!r} is not a source that may open a ClientRun; accepted: {', '.join(s.value for s in Source)}"
        ) from None


def add_metrics(total: dict[str, float], delta: dict[str, float]) -> dict[str, float]:
    out = dict(total)
    for key, value in delta.items():
        out[key] = out.get(key, 0) + value
    return out


def run_status(statuses: Sequence[ClientRunStatus]) -> RunStatus:
    """A Run's status from its clients': Completed when every client completed or was skipped, Failed when all
    failed (or none could run), Completed with Errors otherwise."""
    if not statuses:
        return RunStatus.COMPLETED
    if all(s.done for s in statuses):
        return RunStatus.COMPLETED
    if not any(s.done or s is ClientRunStatus.COMPLETED_WITH_ERRORS for s in statuses):
        return RunStatus.FAILED
    return RunStatus.COMPLETED_WITH_ERRORS


def handoff(client: Client, record: ClientRun, events: Sequence[RunEvent] | None = None) -> str:
    """What a batch hands a notebook about the client and the ClientRun it has just opened (JSON, no secrets), so
    the notebook does not read them again: fewer reads per client on a rate-limited store. `events` is every event
    the record has, when the batch knows them all (a record it has just created); None otherwise."""
    return json.dumps(
        {
            "events": [e.to_dict() for e in events] if events is not None else None,
            "client": dataclasses.asdict(client),
            "record": {
                "run_id": record.run_id,
                "client_id": record.client_id,
                "source": record.source.value,
                "client_name": record.client_name,
                "status": record.status.value,
                "started_at": record.started_at.isoformat(),
                "heartbeat_at": record.heartbeat_at.isoformat(),
                "metrics": record.metrics,
                "record_id": record.record_id,
            },
        }
    )


def from_handoff(text: str, run_id: RunId, client_id: str) -> tuple[Client, ClientRun, list[RunEvent] | None]:
    """The client, ClientRun and (when known) its events that a batch handed over; DataError when they are not
    for this run and client."""
    try:
        data = json.loads(text)
        events = [event_from_dict(e) for e in data["events"]] if data.get("events") is not None else None
        client = Client(**data["client"])
        raw = data["record"]
        record = ClientRun(
            run_id=raw["run_id"],
            client_id=raw["client_id"],
            source=Source(raw["source"]),
            client_name=raw["client_name"],
            status=ClientRunStatus(raw["status"]),
            started_at=datetime.fromisoformat(raw["started_at"]),
            heartbeat_at=datetime.fromisoformat(raw["heartbeat_at"]),
            metrics=dict(raw["metrics"]),
            record_id=raw["record_id"],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"the batch handoff is not valid JSON of a client and its ClientRun: {exc}") from None
    if (record.run_id, record.client_id, client.client_id) != (run_id.base, client_id, client_id):
        raise DataError(
            f"the batch handoff is for {record.run_id}-{record.client_id}, not for {run_id.base}-{client_id}"
        )
    return client, record, events


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RunRecordService:
    """Creates and updates Runs and ClientRuns through a Store."""

    def __init__(self, store: Store, *, stale_after_s: float = 900.0, now: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.stale_after = timedelta(seconds=stale_after_s)
        self.now = now
        #: Every event of the ClientRuns this service created, while that is all they have (for `handoff`).
        self.fresh_events: dict[tuple[str, str], list[RunEvent]] = {}

    # runs ------------------------------------------------------------------------------------
    def start_run(self, *, stream: int = 1, run_id: RunId | None = None, notes: str = "", dry_run: bool = False) -> Run:
        """Mint a base run ID and create its Run (marked `dry_run` for a `batch --dry-run`). Two runs minted in
        the same second do not share an ID: the store refuses the second insert and the later one moves on to the
        next free second."""
        candidate = run_id.base_id if run_id is not None else RunId.new(now=self.now())
        for _ in range(120):
            run = Run(
                run_id=str(candidate),
                stream=stream,
                started_at=self.now(),
                started_by=holder_name(),
                notes=notes,
                dry_run=dry_run,
            )
            if self.store.insert_run(run):
                return run
            if run_id is not None:
                raise DataError(f"run {run_id} exists already; pass another run ID or resume it")
            candidate = candidate.next_second()
        raise DataError("could not find a free run ID within two minutes of now")

    def get_run(self, run_id: RunId | str) -> Run:
        base = RunId.parse(str(run_id)).base if isinstance(run_id, str) else run_id.base
        run = self.store.get_run(base)
        if run is None:
            raise MissingRecordError(
                f"no run {base!r}", hint="List runs with `leadkit runs`; run IDs look like 251128-093000."
            )
        return run

    def finish_run(self, run: Run, *, failed_reason: str | None = None) -> Run:
        """Set the Run's status from its ClientRuns (or Failed with a reason when the batch could not go on)."""
        records = self.store.list_client_runs(run_id=run.run_id)
        run.clients_total = len(records)
        run.clients_failed = sum(1 for r in records if r.status in (ClientRunStatus.FAILED, ClientRunStatus.STALE))
        run.status = RunStatus.FAILED if failed_reason else run_status([r.status for r in records])
        if failed_reason:
            run.notes = (run.notes + "\n" if run.notes else "") + failed_reason
        run.ended_at = self.now()
        self.store.update_run(run)
        return run

    # client runs -----------------------------------------------------------------------------
    def open(self, run_id: RunId, client: Client | str, source: Source | str) -> ClientRun:
        """Open (or find) the ClientRun of `client` in `run_id`."""
        return self.open_many(run_id, [client], source)[0]

    def open_many(
        self, run_id: RunId, clients: Sequence[Client | str], source: Source | str, *, new: bool = False
    ) -> list[ClientRun]:
        """Open the ClientRuns of several clients in one store call (the batch's way), each with its event
        (opened, or found: no duplicate) in the same write. `new`: the caller knows none of them exists yet."""
        src = _source(source)
        if not isinstance(run_id, RunId):
            raise DataError(f"run_id must be a RunId, not {type(run_id).__name__}: parse it once with RunId.parse")
        now = self.now()
        fresh = []
        for client in clients:
            client_id = validate_client_id(client.client_id if isinstance(client, Client) else client)
            name = client.name if isinstance(client, Client) else client_id
            fresh.append(
                ClientRun(
                    run_id=run_id.base,
                    client_id=client_id,
                    source=src,
                    client_name=name,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

        def opened(record: ClientRun, created: bool) -> RunEvent:
            if created:
                kind = EventKind.RECOVERED if src is Source.RECOVERY else EventKind.OPENED
                message = f"opened by {src.value}"
                if src is Source.RECOVERY:
                    message = "created by the recovery path: a stage reported for a ClientRun that did not exist"
            else:
                kind, message = EventKind.REOPENED, f"open by {src.value} found the existing record (no duplicate)"
            event = RunEvent(
                run_id=record.run_id,
                client_id=record.client_id,
                stage="records",
                kind=kind,
                message=message,
                metrics={f"opens_{src.value}": 1},
                at=now,
            )
            if created:
                self.fresh_events[(record.run_id, record.client_id)] = [event]
            return event

        try:
            results = self.store.open_client_runs(fresh, opened=opened, new=new)
        except LeadkitError as exc:
            # A failed open is itself a record-keeping fact (`leadkit stats` counts them); keep it if we can.
            for record in fresh:
                with contextlib.suppress(Exception):
                    self.store.add_failure(
                        failure_from(exc, run_id=run_id.base, client_id=record.client_id, stage="records")
                    )
            raise
        return [record for record, _ in results]

    def attach(self, run_id: RunId, client: Client | str) -> ClientRun:
        """The ClientRun a stage reports to; opened by the recovery path (and said so) when it is missing."""
        client_id = client.client_id if isinstance(client, Client) else client
        record = self.store.get_client_run(run_id.base, validate_client_id(client_id))
        if record is not None:
            return record
        log.warning("ClientRun %s-%s missing; the recovery path creates it", run_id.base, client_id)
        return self.open(run_id, client, Source.RECOVERY)

    def update(
        self,
        record: ClientRun,
        events: Sequence[RunEvent] = (),
        *,
        status: ClientRunStatus | None = None,
        reason: str | None = None,
        failure: Failure | None = None,
        notebook: str | None = None,
        hand_over: bool = False,
    ) -> ClientRun:
        """Append events (their metrics add to the record's totals), refresh the heartbeat and, when given,
        set status, reason, failure and notebook: one store write. `hand_over`: another process (a kernel) writes
        the record next, so the write is made before this returns (see `Store.save_client_run`)."""
        now = self.now()
        for event in events:
            if (event.run_id, event.client_id) != (record.run_id, record.client_id):
                raise DataError(
                    f"event for {event.run_id}-{event.client_id} cannot be added to ClientRun {record.client_run_id}"
                )
            record.metrics = add_metrics(record.metrics, event.metrics)
        record.heartbeat_at = now
        if status is not None:
            record.status = status
            if status.terminal:
                record.ended_at = now
        if reason is not None:
            record.reason = reason
        if failure is not None:
            record.failure = failure
        if notebook is not None:
            record.notebook = notebook
        self.store.save_client_run(record, events, hand_over=hand_over)
        if failure is not None:
            self.store.add_failure(failure)
        return record

    def heartbeat(self, record: ClientRun) -> ClientRun:
        return self.update(record)

    def keep_alive(self, record: ClientRun, *, every_s: float | None = None) -> threading.Thread:
        """Refresh the heartbeat of `record` from a daemon thread every `every_s` (a third of the stale TTL)
        until it is no longer Running: a client that waits minutes on an Apify slot or an actor run is never
        taken for dead, and one whose process died goes Stale within the TTL."""
        interval = every_s if every_s is not None else max(1.0, self.stale_after.total_seconds() / 3)

        def beat() -> None:
            while True:
                time.sleep(interval)
                try:
                    if not self.store.touch_client_run(record, self.now()):
                        return
                except Exception as exc:  # retried next beat; the record's own writes go on
                    log.warning("heartbeat of %s failed: %s", record.client_run_id, exc)

        thread = threading.Thread(target=beat, name=f"leadkit-heartbeat-{record.client_id}", daemon=True)
        thread.start()
        return thread

    def sweep(self, *, older_than: timedelta | None = None, clients: Collection[str] | None = None) -> list[ClientRun]:
        """Mark Running ClientRuns whose heartbeat is older than the TTL as Stale, with the reason.

        `clients` (the clients of the streams whose leases the caller holds) limits the sweep to them, and also
        sweeps at once their records of a Run whose batch is provably gone (`starter_gone`): under the lease,
        nobody else can be running them."""
        ttl = older_than if older_than is not None else self.stale_after
        now = self.now()
        swept = []
        gone: dict[str, Run | None] = {}
        for record in self.store.list_client_runs(status=ClientRunStatus.RUNNING.value):
            if clients is not None and record.client_id not in clients:
                continue
            age = now - record.heartbeat_at
            if age > ttl:
                reason = (
                    f"no heartbeat for {int(age.total_seconds())} s (limit {int(ttl.total_seconds())} s): "
                    "the process running it stopped without finishing it"
                )
            else:
                if clients is None:
                    continue
                if record.run_id not in gone:
                    run = self.store.get_run(record.run_id)
                    gone[record.run_id] = run if run is not None and self.starter_gone(run) else None
                dead = gone[record.run_id]
                if dead is None:
                    continue
                reason = (
                    f"the batch running it ({dead.started_by}) is gone (heartbeat {int(age.total_seconds())} s "
                    "old): it stopped without finishing it"
                )
            # Compare before writing: the list may be old by now. A record that finished, or whose heartbeat
            # moved since it was listed (its process is alive after all), is left alone.
            current = self.store.get_client_run(record.run_id, record.client_id)
            if (
                current is None
                or current.status is not ClientRunStatus.RUNNING
                or current.heartbeat_at > record.heartbeat_at
            ):
                continue
            if self.store.write_left_save(record.run_id, record.client_id):  # the progress its process held back
                current = self.store.get_client_run(record.run_id, record.client_id) or current
            record = current
            event = RunEvent(
                run_id=record.run_id,
                client_id=record.client_id,
                stage="records",
                kind=EventKind.SWEPT,
                message=reason,
                metrics={"stale_swept": 1},
                at=now,
            )
            record.status = ClientRunStatus.STALE
            record.reason = reason
            record.ended_at = now
            self.store.save_client_run(record, [event])
            self._release(record)
            swept.append(record)
        return swept

    def _release(self, record: ClientRun) -> None:
        """A swept record's process died without settling it (a batch killed with its kernels): its actor runs
        are aborted (or, SUCCEEDED, kept to be read) and its Processing leads released, as settling a dead kernel
        does. Imported here: the harvest modules (httpx) stay off the kernels' import path of this module."""
        from leadkit.config import get_settings
        from leadkit.harvest.orphans import release_orphans

        try:
            released = release_orphans(self.store, get_settings(), record)
            if released.message():
                self.store.add_events(
                    [RunEvent(record.run_id, record.client_id, "harvest", EventKind.INFO, released.message())]
                )
        except LeadkitError as exc:
            log.warning("ClientRun %s: could not release what its process held: %s", record.client_run_id, exc)

    def starter_gone(self, run: Run) -> bool:
        """The process that started (or resumed) `run` is gone: on this host, no process with its PID that is
        old enough to be it. Elsewhere we cannot look (False): only its records' heartbeats tell."""
        host, _, pid = run.started_by.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        return not _started_it(int(pid), run.started_at)

    def _elsewhere(self, run: Run) -> bool:
        """`run` was started under another host name than this one's (another host, or this one renamed)."""
        host, _, _ = run.started_by.rpartition(":")
        return host != socket.gethostname()

    def sweep_runs(self, streams: Collection[int], *, keep: str | None = None) -> list[Run]:
        """Runs of `streams` left Running by a batch that is gone become Failed with the reason. Call it under
        those streams' leases, after `sweep`: a Run is the batch's when no ClientRun of it is Running any more
        and the process that started it (`started_by`, host:pid) is not alive on this host, or, started under
        another host name, nothing of it (start, heartbeats) is newer than the stale TTL. The Run is read again
        just before it is written. `keep` is a run ID never swept (the caller's own)."""
        from leadkit.store.base import RunFilter

        failed = []
        now = self.now()
        for run in self.store.list_runs(RunFilter(status=RunStatus.RUNNING.value), limit=1000):
            if run.stream not in streams or run.run_id == keep:
                continue
            here = self.starter_gone(run)
            if not here and not self._elsewhere(run):
                continue
            records = self.store.list_client_runs(run_id=run.run_id)
            if any(r.status is ClientRunStatus.RUNNING for r in records):
                continue
            if not here:
                # Started on another host (or this one under another name: a container or pod restart): nothing
                # to look at but its records. Quiet for longer than the TTL is gone; under the lease, nobody else
                # runs it.
                last = max(
                    [run.started_at, *(r.heartbeat_at for r in records), *(r.ended_at for r in records if r.ended_at)]
                )
                if now - last <= self.stale_after:
                    continue
            current = self.store.get_run(run.run_id)  # compare before writing: it may have finished meanwhile
            if current is None or current.status is not RunStatus.RUNNING:
                continue
            run = current
            open_ = sum(1 for r in records if not r.status.done)
            reason = (
                f"the batch that ran it ({run.started_by}) stopped without finishing it: {open_} of {len(records)} "
                f"opened clients had not completed; `leadkit batch --resume {run.run_id}` runs the rest"
            )
            self.store.add_events([RunEvent(run.run_id, "", "records", EventKind.SWEPT, reason)])
            failed.append(self.finish_run(run, failed_reason=reason))
            log.warning("run %s: %s", run.run_id, reason)
        return failed


def _started_it(pid: int, started_at: datetime) -> bool:
    """Process `pid` exists and is old enough to have started a run at `started_at` (not a reused PID)."""
    import psutil

    try:
        return psutil.Process(pid).create_time() <= started_at.timestamp() + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
