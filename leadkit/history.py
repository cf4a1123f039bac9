"""Recovery that keeps its history: every attempt of a ClientRun, and a run's status history.

A ClientRun is keyed by (run, client), so `leadkit batch --resume` re-runs the same record. Before it does, the
attempt that ended is written down as an event (stage ``attempt``, message ``"<status>: <why>"``, metric
``attempt`` = its number), and the next attempt's notebook gets its own file: ``<client>.ipynb`` for the first,
``<client>.attempt-2.ipynb`` for the second, and so on; earlier notebooks are never overwritten. A run's status
changes are events too (stage ``run``, no client): "Completed with Errors", "Resumed (was Completed with
Errors)", then "Completed after resume".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from leadkit.models import ClientRun, ClientRunStatus, EventKind, Run, RunEvent, utcnow

if TYPE_CHECKING:
    from leadkit.store.base import Store
    from leadkit.workspace import Workspace

__all__ = [
    "FAILED_OUTCOMES",
    "Attempt",
    "FailedClient",
    "batch_exit_code",
    "clients_failed",
    "counts_as_failed",
    "outcome",
    "RunStatusChange",
    "latest_failed",
    "list_attempts",
    "run_history",
    "run_status_label",
]

ATTEMPT_STAGE = "attempt"
RUN_STAGE = "run"
RESUMED = "Resumed"
AFTER_RESUME = "after resume"
#: Longest first, so "Completed with Errors" is not read as "Completed".
_STATUSES = sorted((s.value for s in ClientRunStatus), key=len, reverse=True)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a client in a run: its number (from 1), outcome, why, when it started, its notebook."""

    number: int
    status: str
    why: str
    started_at: datetime
    notebook: str | None
    current: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "attempt": self.number,
            "status": self.status,
            "why": self.why,
            "started_at": self.started_at.isoformat(),
            "notebook": self.notebook,
            "current": self.current,
        }


@dataclass(frozen=True)
class RunStatusChange:
    """One change of a run's status: "Completed with Errors", "Resumed (was ...)", "Completed after resume"."""

    at: datetime
    status: str


def attempt_notebook(run_dir: Path, client_id: str, number: int) -> Path:
    """Where attempt `number` of `client_id` writes its executed notebook."""
    return run_dir / (f"{client_id}.ipynb" if number <= 1 else f"{client_id}.attempt-{number}.ipynb")


def why(record: ClientRun) -> str:
    """The record's outcome in one line: its failure's first line, else its reason."""
    if record.failure is not None:
        return record.failure.message.strip().splitlines()[0] if record.failure.message.strip() else ""
    return record.reason or ""


def _attempt_events(events: list[RunEvent]) -> list[RunEvent]:
    return sorted((e for e in events if e.stage == ATTEMPT_STAGE), key=lambda e: e.at)


def ended_attempt_counts(ws: Workspace, run_id: str) -> dict[str, int]:
    """Per client of the run, how many attempts have ended before the current one (one query for the run)."""
    counts: dict[str, int] = {}
    for event in ws.store.list_events(run_id=run_id):
        if event.stage == ATTEMPT_STAGE:
            counts[event.client_id] = counts.get(event.client_id, 0) + 1
    return counts


def end_attempt(record: ClientRun, number: int, *, at: datetime | None = None) -> RunEvent:
    """The event that keeps attempt `number` (the record as it ended) before the record is run again."""
    return RunEvent(
        record.run_id,
        record.client_id,
        ATTEMPT_STAGE,
        EventKind.INFO,
        f"{record.status.value}: {why(record)}",
        {"attempt": float(number)},
        at=at or utcnow(),
    )


def _split(message: str) -> tuple[str, str]:
    for status in _STATUSES:
        if message.startswith(status + ":"):
            return status, message[len(status) + 1 :].strip()
    return "", message


def list_attempts(ws: Workspace, record: ClientRun) -> list[Attempt]:
    """Every attempt of `record`, oldest first; the last one is the record as it is now."""
    events = _attempt_events(ws.store.list_events(run_id=record.run_id, client_id=record.client_id))
    run_dir = ws.run_dir(record.run_id)
    out = []
    started = record.started_at
    for number, event in enumerate(events, start=1):
        status, text = _split(event.message)
        path = attempt_notebook(run_dir, record.client_id, number)
        out.append(Attempt(number, status, text, started, str(path) if path.is_file() else None, False))
        started = event.at
    out.append(Attempt(len(events) + 1, record.status.value, why(record), started, record.notebook, True))
    return out


def attempt_started_at(store: Store, record: ClientRun) -> datetime:
    """When the record's current attempt started (the resume time for a resumed record)."""
    events = _attempt_events(store.list_events(run_id=record.run_id, client_id=record.client_id))
    return max([record.started_at, *(e.at for e in events)])


def status_event(run: Run, note: str, *, at: datetime | None = None) -> RunEvent:
    """A change of the run's status, kept as an event of the run (no client)."""
    return RunEvent(run.run_id, "", RUN_STAGE, EventKind.INFO, note, at=at or utcnow())


def record_finish(ws: Workspace, run: Run, *, resumed: bool | None = None) -> None:
    """Keep the status a batch finished the run with ("... after resume" when it was resumed). `resumed`: whether
    the run was ever resumed, when the caller knows (a batch that started the run knows it was not); else the
    run's status changes are read to find out."""
    if resumed is None:
        resumed = any(c.status.startswith(RESUMED) for c in run_history(ws, run.run_id, fallback=False))
    note = f"{run.status.value} {AFTER_RESUME}" if resumed else run.status.value
    ws.store.add_events([status_event(run, note)])


def run_history(ws: Workspace, run_id: str, *, fallback: bool = True) -> list[RunStatusChange]:
    """The run's status changes, oldest first. A run without recorded changes (made before they were kept, or
    still running for the first time) shows its current status, unless `fallback` is off."""
    changes = [
        RunStatusChange(e.at, e.message)
        for e in ws.store.list_events(run_id=run_id)
        if e.stage == RUN_STAGE and not e.client_id
    ]
    run = ws.store.get_run(run_id) if fallback and not changes else None
    if run is not None:
        changes = [RunStatusChange(run.ended_at or run.started_at, run.status.value)]
    return changes


def run_status_label(ws: Workspace, run: Run) -> str:
    """The run's status as shown: "Completed after resume" when the last change says so, else its status."""
    history = run_history(ws, run.run_id)
    last = history[-1].status if history else run.status.value
    return last if last in (run.status.value, f"{run.status.value} {AFTER_RESUME}") else run.status.value


#: How many of a client's newest ClientRuns are searched for its latest attempt (a resumed older run may have
#: run after a newer one).
LATEST_SCAN = 3


#: Writers' clocks may differ this much: a record's last write is trusted to be no earlier than its attempt's
#: start minus this.
CLOCK_SKEW = timedelta(seconds=5)


def latest_attempt(store: Store, client_id: str) -> ClientRun | None:
    """The client's ClientRun whose current attempt started last (of its newest few), or None if never run.

    A record's current attempt started no earlier than its `started_at` and no later than its last write (its
    heartbeat or end), so the events (one read per record) are read only for records whose last write comes
    after the newest start: the common case, newest record started after every other one was last written,
    reads none."""
    records = store.list_client_runs(client_id=client_id, limit=LATEST_SCAN)
    if not records:
        return None
    newest = max(records, key=lambda r: r.started_at)

    def last_write(record: ClientRun) -> datetime:
        return max(record.started_at, record.heartbeat_at, record.ended_at or record.started_at) + CLOCK_SKEW

    contenders = [r for r in records if r is newest or last_write(r) >= newest.started_at]
    if len(contenders) == 1:
        return newest
    return max(contenders, key=lambda r: attempt_started_at(store, r))


# ------------------------------------------------------------------------------------------------ one outcome
#: The outcomes of a client's attempt that count as failed: `runs` counts them in `clients_failed`, `failures`
#: calls them unresolved, `rerun --failed` re-runs them, `health` says so and a batch with one exits 1. A client
#: that "Completed with Errors" (an upstream failure on some of its leads) counts as failed; "Interrupted" (a
#: batch stopped by a signal) is listed for the stores that record it.
FAILED_OUTCOMES = frozenset({"Failed", "Stale", "Completed with Errors", "Interrupted"})
#: The outcomes that count as done: nothing to re-run.
DONE_OUTCOMES = frozenset({"Completed", "Skipped"})


def outcome(record: ClientRun) -> str:
    """The one outcome of a record's current attempt: Completed, Completed with Errors, Failed, Stale, Skipped,
    Interrupted (where recorded) or Running (not ended yet). Every report reads it here."""
    return record.status.value


def counts_as_failed(record: ClientRun) -> bool:
    """Whether the record's current attempt counts as failed (see `FAILED_OUTCOMES`)."""
    return outcome(record) in FAILED_OUTCOMES


def clients_failed(records: Sequence[ClientRun]) -> int:
    """How many of a run's records count as failed (what `leadkit runs` shows as `clients_failed`)."""
    return sum(1 for r in records if counts_as_failed(r))


def batch_exit_code(run: Run, records: Sequence[ClientRun], *, lost_lease: bool = False) -> int:
    """The exit code of a batch over `records`: 3 when it lost its lease to another batch, 1 when any client
    counts as failed or the run itself did not complete, else 0 (every client Completed or Skipped)."""
    if lost_lease:
        return 3
    if any(counts_as_failed(r) for r in records) or run.status.value != "Completed":
        return 1
    return 0


# ------------------------------------------------------------------------------------------------ re-run what failed
@dataclass(frozen=True)
class FailedClient:
    """A client whose latest attempt failed: the record and the failure it ended with (classified)."""

    client_id: str
    record: ClientRun
    category: str
    why: str


def latest_failed(
    ws: Workspace,
    *,
    since: datetime | None = None,
    client_ids: Sequence[str] | None = None,
    category: str | None = None,
) -> list[FailedClient]:
    """The clients whose latest attempt (`latest_attempt`, as it is now) counts as failed (`counts_as_failed`:
    Failed, Stale, Completed with Errors, Interrupted), optionally only
    those named, of one failure category, or whose attempt started at or after `since`; by client ID. Unknown
    client IDs or categories are refused with the accepted values."""
    from leadkit.classify import classified
    from leadkit.errors import Category, DataError
    from leadkit.runids import validate_client_id

    known = {c.client_id for c in ws.store.list_clients()}
    if category is not None and category not in {c.value for c in Category}:
        raise DataError(f"--category {category!r} is not a category; accepted: {', '.join(c.value for c in Category)}")
    for cid in client_ids or ():
        validate_client_id(cid)
        if cid not in known:
            raise DataError(f"unknown client {cid!r}; known clients: {', '.join(sorted(known)) or '(none)'}")
    out = []
    for cid in sorted(client_ids or known):
        record = latest_attempt(ws.store, cid)
        if record is None or not counts_as_failed(record):
            continue
        failure = classified(record.failure) if record.failure is not None else None
        found = failure.category if failure is not None else ""
        if category is not None and found != category:
            continue
        if since is not None and attempt_started_at(ws.store, record) < since:
            continue
        out.append(FailedClient(cid, record, found or "unknown", why(record)))
    return out
