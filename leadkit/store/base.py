"""The storage protocol: a master store (clients, runs, client runs, events, failures, auth checks,
leases) and one lead base per client. Every backend implements it and passes the same contract tests.

Rules every backend keeps:
- a ClientRun is keyed by (run_id, client_id) as separate values; `open_client_runs` creates the
  missing ones and leaves existing ones as they were but for the opening event it appends, so opening twice
  never makes two records;
- a client's leads are only ever read or written through that client's own `LeadBase`;
- list methods take a limit and an offset: SQLite pages in its query; Airtable, which has no offset, reads the
  first offset + limit records of the sorted view (`max_records`), so a page costs the rows before it, never the
  whole table while a limit is given. A list without a limit (where the protocol allows one) reads every match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from leadkit.models import (
    Alert,
    AuthCheck,
    Client,
    ClientRun,
    DuePolicy,
    Failure,
    FailureTriage,
    Lead,
    Lease,
    NewLead,
    Run,
    RunEvent,
)


@dataclass(frozen=True)
class RunFilter:
    """Filters for listing runs; all optional."""

    status: str | None = None
    client_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Only runs with a client Failed or Stale, whatever the run's own status.
    has_failures: bool = False


@dataclass(frozen=True)
class ClientRunCounts:
    """ClientRuns by status over a time window, counted by the backend (not by reading the records)."""

    by_status: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def finished(self) -> int:
        """Those that ended with a verdict on the work: not Running, not Skipped."""
        return sum(n for status, n in self.by_status.items() if status not in ("Running", "Skipped"))

    @property
    def completed(self) -> int:
        return int(self.by_status.get("Completed", 0))

    @property
    def success_rate(self) -> float | None:
        """Completed over finished, None when none finished."""
        return self.completed / self.finished if self.finished else None


@dataclass(frozen=True)
class EventTotal:
    """Events of one kind over a window: how many, and the sum of each metric they carry."""

    count: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class ImportResult:
    created: int
    existing: int


@runtime_checkable
class LeadBase(Protocol):
    """One client's leads, in that client's own base."""

    client_id: str

    def list_leads(self, *, status: str | None = None, limit: int | None = None) -> list[Lead]:
        """Leads, optionally only those whose harvest status is `status` ("" or "blank" for blank)."""
        ...

    def count_leads_by_status(self) -> dict[str, int]:
        """How many leads have each harvest status ("" for blank), counted in the backend."""
        ...

    def get_lead(self, lead_id: str) -> Lead: ...

    def due_leads(self, policy: DuePolicy, now: datetime, *, limit: int) -> list[Lead]:
        """At most `limit` leads due for harvesting under `policy` (its docstring has the rule), queried in the
        backend: blank or Pending first (newest first), then re-checks (longest due first)."""
        ...

    def posts_found_since(self, since: datetime) -> int:
        """Posts Found summed over the leads last checked at or after `since` (today's harvest so far)."""
        ...

    def import_leads(self, leads: Sequence[NewLead]) -> ImportResult:
        """Add leads keyed by normalised profile URL; a lead already there is left as it is."""
        ...

    def update_leads(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        """Write fields (Lead attribute names) of several leads, keyed by lead_id."""
        ...


@runtime_checkable
class AlertRecords(Protocol):
    """Alerts and the triage of failure groups: kept by every backend next to the master store's tables."""

    def add_alerts(self, alerts: Sequence[Alert]) -> None: ...

    def list_alerts(
        self,
        *,
        since: datetime | None = None,
        kind: str | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Newest first."""
        ...

    def save_triage(self, triage: FailureTriage) -> None:
        """Create or replace the triage of the failure group `triage.fingerprint`."""
        ...

    def list_triage(self) -> list[FailureTriage]: ...


@runtime_checkable
class Store(AlertRecords, Protocol):
    """The master store (with its alert records)."""

    url: str

    def init(self) -> None:
        """Create or migrate what the backend needs (SQLite) or check it is there (Airtable)."""
        ...

    def close(self) -> None: ...

    # clients ---------------------------------------------------------------------------------
    def list_clients(self) -> list[Client]: ...

    def get_client(self, client_id: str) -> Client:
        """The client, or MissingRecordError naming it."""
        ...

    def save_client(self, client: Client) -> Client:
        """Create or update the client keyed by client_id."""
        ...

    def remove_client(self, client_id: str) -> None:
        """Delete the client (MissingRecordError when there is none). SQLite also deletes the client's lead base;
        an Airtable client's own base is left alone. Callers refuse clients with runs first."""
        ...

    def lead_base(self, client: Client) -> LeadBase: ...

    # runs ------------------------------------------------------------------------------------
    def insert_run(self, run: Run) -> bool:
        """Create the run; False (and nothing written) when a run with that ID exists."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def update_run(self, run: Run) -> None: ...

    def list_runs(self, filt: RunFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[Run]:
        """Newest first."""
        ...

    def count_runs(self, filt: RunFilter | None = None) -> int: ...

    # client runs -----------------------------------------------------------------------------
    def open_client_runs(
        self,
        records: Sequence[ClientRun],
        *,
        opened: Callable[[ClientRun, bool], RunEvent] | None = None,
        new: bool = False,
    ) -> list[tuple[ClientRun, bool]]:
        """Upsert on (run_id, client_id): create the missing records, return existing ones unchanged but for
        the event `opened(record, created)` (when given), which is appended to each in the same write.

        Returns (record as stored, created?) in the order given. Safe under concurrent callers. `new` says the
        caller knows none of them exists yet (a batch opening the clients of a run it has just started): a
        backend may then create them in fewer requests.
        """
        ...

    def write_left_save(self, run_id: str, client_id: str) -> bool:
        """Write what a killed process held back of this Running ClientRun's progress (a backend that holds
        saves keeps them in the workspace meanwhile); True when something was written. Only for a record whose
        writer is gone."""
        ...

    def get_client_run(self, run_id: str, client_id: str) -> ClientRun | None: ...

    def save_client_run(self, record: ClientRun, events: Sequence[RunEvent] = (), *, hand_over: bool = False) -> None:
        """Write the record's status, times, metrics, notebook, reason and failure, and append events.
        `hand_over`: another process writes the record next (a batch reopening it for a kernel), so the save is
        written before this returns, never held back (a held save written later would overwrite that process's
        writes with this one)."""
        ...

    def touch_client_run(self, record: ClientRun, at: datetime) -> bool:
        """Refresh the heartbeat of the ClientRun while it is Running, and nothing else; False when it is not
        Running (any more)."""
        ...

    def adopt_client_run(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Take the state of a ClientRun that another process opened and handed over (the record and every event
        it has), so a backend that caches may append to it without reading it first."""
        ...

    def list_client_runs(
        self,
        *,
        run_id: str | None = None,
        client_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ClientRun]:
        """Newest first."""
        ...

    def count_client_runs(
        self, *, since: datetime | None = None, until: datetime | None = None, client_id: str | None = None
    ) -> ClientRunCounts:
        """ClientRuns started in [since, until) (either end open when None), by status, counted in the backend."""
        ...

    def latest_client_runs(self, client_ids: Sequence[str], *, status: str | None = None) -> dict[str, ClientRun]:
        """The newest ClientRun (by start time) of each client in `client_ids` that has one (of that `status`,
        when given); events not included."""
        ...

    def add_events(self, events: Sequence[RunEvent]) -> None: ...

    def list_events(
        self, *, run_id: str | None = None, client_id: str | None = None, since: datetime | None = None
    ) -> list[RunEvent]:
        """Oldest first. `since` is applied in the query (SQL, or the Airtable formula), not after reading."""
        ...

    def event_totals(self, *, since: datetime | None = None) -> dict[str, EventTotal]:
        """Events at or after `since`, by kind: how many and their metrics summed (aggregated in the backend where
        it can; Airtable reads only the records whose events may fall in the window)."""
        ...

    # diagnostics -----------------------------------------------------------------------------
    def add_failure(self, failure: Failure) -> None: ...

    def list_failures(
        self, *, since: datetime | None = None, limit: int | None = None, client_id: str | None = None
    ) -> list[Failure]:
        """Newest first; `since` and `client_id` filter in the query."""
        ...

    def add_auth_checks(self, checks: Sequence[AuthCheck]) -> None: ...

    def list_auth_checks(self, *, since: datetime | None = None, limit: int | None = None) -> list[AuthCheck]:
        """Newest first."""
        ...

    # lease -----------------------------------------------------------------------------------
    def get_lease(self, name: str) -> Lease | None: ...

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        """Compare-and-set: replace the lease `name` with `new` (None releases it) only if it is still
        `expected` (None: only if nobody holds it). True when the swap happened."""
        ...


#: How many times of each kind a lead summary keeps (more than any batch takes of one client).
SUMMARY_TIMES = 2000
#: How many days of Posts Found (by last-check day) a lead summary keeps.
SUMMARY_DAYS = 3


@dataclass(frozen=True)
class LeadSummary:
    """What Client health needs of one client's leads, kept by the master store as the leads are written, so the
    whole workspace's health is one query instead of a read of every client's leads. It holds no policy: the due
    rule (`DuePolicy`) is applied when it is read.

    Only harvestable leads (a LinkedIn profile URL, Posts Actioned blank or 0) count as due. `due_now`: those due
    whatever the time (blank, Pending, or with no check time); `next_checks`: the Next Check times of Done and No
    Posts leads that have one; `checked[status]`: the Last Check times of the Done, No Posts and Processing leads
    due by the policy's period after it. Each list sorted, at most `SUMMARY_TIMES` (`lengths` says how many in
    all). `posts_by_day`: Posts Found by the UTC day of each lead's last check (the last `SUMMARY_DAYS` days)."""

    client_id: str
    by_status: Mapping[str, int]  # "" for blank
    due_now: int
    next_checks: tuple[datetime, ...]
    checked: Mapping[str, tuple[datetime, ...]]  # "Done" / "No Posts" / "Processing" -> last check times
    lengths: Mapping[str, int]  # "next" and each status of `checked` -> how many in all
    posts_by_day: Mapping[str, int]  # ISO date -> Posts Found
    written_at: datetime

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def _due_lists(self, policy: DuePolicy) -> list[tuple[str, tuple[datetime, ...], Any]]:
        """(list name, times, how to turn a time into its due time) for each kept list."""
        period = {"Done": policy.refresh_after, "No Posts": policy.no_posts_recheck}
        out: list[tuple[str, tuple[datetime, ...], Any]] = [("next", self.next_checks, lambda t: t)]
        for status, times in self.checked.items():
            if status == "Processing":  # due once the stale period has passed (strictly)
                out.append((status, times, lambda t: t + policy.processing_stale_after + _TICK))
            else:
                out.append((status, times, lambda t, p=period[status]: t + p))
        return out

    def waiting(self, policy: DuePolicy, now: datetime, limit: int) -> int | None:
        """How many leads are due at `now` (at most `limit`); None when the summary cannot tell (a kept list is
        due to its end and had more)."""
        due = self.due_now
        unknown = False
        for name, times, due_at in self._due_lists(policy):
            n = sum(1 for t in times if due_at(t) <= now)
            due += n
            unknown = unknown or (n == len(times) and self.lengths.get(name, 0) > len(times))
        if unknown and due < limit:
            return None
        return min(due, limit)

    def next_due(self, policy: DuePolicy, now: datetime) -> datetime | None:
        """`now` when a lead is due, else when the next one comes due; None when none ever will."""
        firsts = [due_at(times[0]) for _, times, due_at in self._due_lists(policy) if times]
        if self.due_now or any(t <= now for t in firsts):
            return now
        return min(firsts) if firsts else None

    def posts_on(self, day: date) -> int | None:
        """Posts Found of the leads last checked on UTC `day`; None when that day is outside the kept window."""
        if day < self.written_at.date() - timedelta(days=SUMMARY_DAYS - 1):
            return None
        return int(self.posts_by_day.get(day.isoformat(), 0))


_TICK = timedelta(microseconds=1)


@runtime_checkable
class LeadSummaries(Protocol):
    """A master store that keeps a `LeadSummary` per client as its leads are written (SQLite)."""

    def lead_summaries(self) -> dict[str, LeadSummary]:
        """Every client's kept summary, by client ID, in one query (a client whose leads were not written since
        the store keeps summaries has none)."""
        ...


@runtime_checkable
class ChangeVersions(Protocol):
    """A master store that can tell cheaply whether anything changed: `change_version()` returns a value equal
    to the last one only when nothing was written since (by any process). A reader that cached what it read
    then needs no read at all (the dashboard)."""

    def change_version(self) -> Any: ...
