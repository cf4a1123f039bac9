"""The Airtable budget: the requests leadkit makes, counted by the store itself, against the workspace plan.

Every `AirtableApi` request is added to a tally in the workspace (`<LEADKIT_HOME>/airtable-usage.json`, one
entry per month and base, updated under a file lock so every kernel of a batch adds to the same tally), and so
is every ClientRun the store creates. `usage_report` turns the tally into requests per client run, the month's
projection against the plan's monthly calls and, when counted, records per base against the plan's cap.

A kernel of a dask batch (the batch's slot spec names a scheduler) may run on another host, whose disk the
coordinator never reads: it keeps its counts on the scheduler instead (`DASK_USAGE_KEY`, one entry per process
with everything it counted), and `collect_remote` adds what is new there to the workspace's tally, on the
coordinator, as often as it is called (each process's counts are added once: the tally remembers how much of
each it has taken).

Requests made for the dashboard (inside `leadkit.requesters.requests_for(DASHBOARD)`, as the dashboard's reads)
are also counted under `dashboard_requests`, so `usage_report` shows the dashboard's own cost apart from the
batches'.
"""

from __future__ import annotations

import calendar
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadkit.capacity import dask_scheduler_from_env, scheduler_client
from leadkit.requesters import DASHBOARD, REQUESTER

log = logging.getLogger(__name__)

USAGE_FILE = "airtable-usage.json"
#: How many months the tally keeps.
KEEP_MONTHS = 3
#: The tally's count of requests that may change records (POST, PATCH, PUT, DELETE; not a listRecords POST).
WRITES = "writes"
#: The same by table (`writes:<table>`, by base) and the DELETE requests by table (`deletes:<table>`): the
#: dashboard's mirror asks Airtable only for the tables written here (`local_journal`).
TABLE_WRITES = "writes:"
TABLE_DELETES = "deletes:"
#: Scheduler metadata under which the processes of a dask batch keep their counts, by workspace and process.
DASK_USAGE_KEY = "leadkit-airtable-usage"


def workspace_key(path: Path) -> str:
    """Names a workspace's tally on a dask scheduler: a hash of the tally's path as the coordinator gave it."""
    return hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Plan:
    name: str
    calls_per_month: int | None  # None: no monthly cap
    records_per_base: int


#: Airtable's caps per workspace plan (api-contracts.md section 1.3).
PLANS: dict[str, Plan] = {
    "free": Plan("free", 1_000, 1_000),
    "team": Plan("team", 100_000, 50_000),
    "business": Plan("business", None, 125_000),
    "enterprise": Plan("enterprise", None, 500_000),
}


def month_key(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


class UsageLog:
    """Adds requests and created ClientRuns to the workspace's tally; also keeps this process's own counts
    (`requests`, by base) for benchmarks and tests. Without a path (no workspace) only the process counts."""

    def __init__(self, path: Path | None, *, scheduler: str | None = None) -> None:
        self.path = path
        #: The dask scheduler that keeps this process's counts for the coordinator ("" for the workspace file).
        self.scheduler = (dask_scheduler_from_env() if scheduler is None else scheduler) if path is not None else ""
        self.requests: dict[str, int] = {}
        #: This process's requests by requester (`requests_for`), e.g. {"dashboard": 12}.
        self.requested_for: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warned = False
        self._process = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._remote: dict[str, Any] = {}

    def request(self, base: str, *, write: bool = False, table: str = "", delete: bool = False) -> None:
        """Count one request to `base`; `write`: it may change records of `table` (the workspace's local change
        journal, `local_journal`, which the dashboard's mirror follows); `delete`: it is a DELETE."""
        who = REQUESTER.get()
        with self._lock:
            self.requests[base] = self.requests.get(base, 0) + 1
            if who:
                self.requested_for[who] = self.requested_for.get(who, 0) + 1
        also = [f"{who}_requests"] if who else []
        if write:
            also.append(WRITES)
            if table:
                also.append(f"{TABLE_WRITES}{table}")
                if delete:
                    also.append(f"{TABLE_DELETES}{table}")
        self._add("requests", base, 1, also=also)

    def client_runs(self, base: str, created: int) -> None:
        if created:
            self._add("client_runs", base, created)

    def records_counted(self, base: str, tables: dict[str, int]) -> None:
        """Keep a count of a base's records (made by `usage_report`), for the dashboard card."""
        with self._tally() as tally:
            if tally is not None:
                tally.setdefault("records", {})[base] = {
                    "counted_at": datetime.now(UTC).isoformat(),
                    "tables": tables,
                }

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def _add(self, what: str, base: str, n: int, *, also: list[str] | None = None) -> None:
        """Add `n` to the month's `what` of `base` (and to its `also` counts, in the same write)."""
        kinds = [what, *(also or [])]
        if self.scheduler and self.path is not None:
            for kind in kinds:
                self._add_remote(kind, base, n)
            return
        with self._tally() as tally:
            if tally is not None:
                months = tally.setdefault("months", {})
                month = months.setdefault(month_key(datetime.now(UTC)), {})
                for kind in kinds:
                    counts = month.setdefault(kind, {})
                    counts[base] = int(counts.get(base, 0)) + n
                for old in sorted(months)[:-KEEP_MONTHS]:
                    del months[old]

    def _add_remote(self, what: str, base: str, n: int) -> None:
        """Count on the scheduler (this process's entry holds all it counted; one request, no lock)."""
        assert self.path is not None
        with self._lock:
            counts = self._remote.setdefault(month_key(datetime.now(UTC)), {}).setdefault(what, {})
            counts[base] = int(counts.get(base, 0)) + n
            snapshot = json.dumps(self._remote, sort_keys=True)
            try:
                scheduler_client(self.scheduler).set_metadata(
                    [DASK_USAGE_KEY, workspace_key(self.path), self._process], snapshot
                )
            except (OSError, TimeoutError) as exc:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "cannot count Airtable requests on the dask scheduler %s (%s)",
                        self.scheduler,
                        type(exc).__name__,
                    )

    def collect_remote(self, scheduler: str) -> int:
        """Add to the workspace's tally what the processes of dask batches counted on `scheduler` since the last
        collection; how many requests were new."""
        if self.path is None:
            return 0
        client = scheduler_client(scheduler)
        entries = client.get_metadata([DASK_USAGE_KEY, workspace_key(self.path)], default={})
        added = 0
        with self._tally() as tally:
            if tally is None:
                return 0
            taken = tally.setdefault("collected", {})
            months = tally.setdefault("months", {})
            for process, text in sorted(dict(entries).items()):
                try:
                    counted = json.loads(text)
                except (TypeError, ValueError):
                    log.warning("the usage counts of %s on the scheduler cannot be read; skipped", process)
                    continue
                before = taken.get(process, {})
                for month, kinds in counted.items():
                    for what, bases in kinds.items():
                        for base, n in bases.items():
                            new = int(n) - int(before.get(month, {}).get(what, {}).get(base, 0))
                            if new <= 0:
                                continue
                            counts = months.setdefault(month, {}).setdefault(what, {})
                            counts[base] = int(counts.get(base, 0)) + new
                            added += new if what == "requests" else 0
                taken[process] = counted
            for old in sorted(months)[:-KEEP_MONTHS]:
                del months[old]
            for process in [p for p, c in taken.items() if not set(c) & set(months)]:
                del taken[process]
        return added

    @contextmanager
    def _tally(self) -> Iterator[dict[str, Any] | None]:
        if self.path is None or not self.path.parent.is_dir():
            yield None
            return
        try:
            handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot count Airtable requests in %s (%s)", self.path, type(exc).__name__)
            yield None
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            tally = read_tally_bytes(handle.read())
            yield tally
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(tally, sort_keys=True).encode())


def read_tally_bytes(data: bytes) -> dict[str, Any]:
    try:
        tally = json.loads(data) if data.strip() else {}
    except ValueError:
        return {}
    return tally if isinstance(tally, dict) else {}


@dataclass(frozen=True)
class Journal:
    """What this host's processes wrote to Airtable, from the tally (the months it keeps): write requests and
    DELETE requests by (base, table). A count that moved since the last look means that table was written here."""

    writes: dict[tuple[str, str], int]
    deletes: dict[tuple[str, str], int]


def local_journal(home: Path) -> Journal:
    """The workspace's change journal by table (`Journal`): one read of the tally file, no request."""
    writes: dict[tuple[str, str], int] = {}
    deletes: dict[tuple[str, str], int] = {}
    for month in read_tally(home).get("months", {}).values():
        for kind, bases in month.items():
            for prefix, into in ((TABLE_WRITES, writes), (TABLE_DELETES, deletes)):
                if kind.startswith(prefix):
                    table = kind[len(prefix) :]
                    for base, n in bases.items():
                        into[(str(base), table)] = into.get((str(base), table), 0) + int(n)
    return Journal(writes, deletes)


def read_tally(home: Path) -> dict[str, Any]:
    """The workspace's tally ({} when there is none)."""
    try:
        return read_tally_bytes((Path(home) / USAGE_FILE).read_bytes())
    except OSError:
        return {}


def usage_report(tally: dict[str, Any], *, master_base: str, plan: str, now: datetime | None = None) -> dict[str, Any]:
    """The month's budget from a tally: requests (master base, client bases; the dashboard's own apart from the
    others), client runs created, requests
    per client run, the month's projection at this pace against the plan's monthly calls, and the last
    counted records per base against the plan's cap."""
    now = now or datetime.now(UTC)
    chosen = PLANS[plan]
    month = tally.get("months", {}).get(month_key(now), {})
    requests: dict[str, int] = {str(k): int(v) for k, v in month.get("requests", {}).items()}
    runs = int(sum(int(v) for v in month.get("client_runs", {}).values()))
    dashboard = int(sum(int(v) for v in month.get(f"{DASHBOARD}_requests", {}).values()))
    master = requests.get(master_base, 0)
    total = sum(requests.values())
    days = calendar.monthrange(now.year, now.month)[1]
    elapsed_days = (now - datetime(now.year, now.month, 1, tzinfo=UTC)).total_seconds() / 86400
    projection = round(total * days / max(elapsed_days, 1 / 24)) if total else 0
    records = []
    for base, entry in sorted(tally.get("records", {}).items()):
        count = int(sum(int(n) for n in entry.get("tables", {}).values()))
        records.append(
            {
                "base": base,
                "records": count,
                "cap": chosen.records_per_base,
                "share": round(count / chosen.records_per_base, 4),
                "tables": entry.get("tables", {}),
                "counted_at": entry.get("counted_at"),
            }
        )
    return {
        "month": month_key(now),
        "plan": chosen.name,
        "requests": total,
        "master_requests": master,
        "client_base_requests": total - master,
        # the dashboard's own reads (every tab, every view), apart from what the batches and commands spent
        "dashboard_requests": dashboard,
        "other_requests": total - dashboard,
        "client_runs": runs,
        "master_requests_per_client_run": round(master / runs, 2) if runs else None,
        "requests_per_client_run": round(total / runs, 2) if runs else None,
        "projected_requests": projection,
        "monthly_cap": chosen.calls_per_month,
        "projected_share": round(projection / chosen.calls_per_month, 4) if chosen.calls_per_month else None,
        "records_per_base": records,
    }
