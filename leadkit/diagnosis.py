"""Failure reports: failure groups, record-keeping stats and one run described for a person, built on the
classification in `leadkit.classify`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leadkit.classify import classified
from leadkit.models import ClientRunStatus, EventKind, Failure, RunStatus, Source
from leadkit.store.base import AlertRecords, RunFilter, Store

if TYPE_CHECKING:
    from leadkit.workspace import Workspace


# ------------------------------------------------------------------------------------------------ groups


@dataclass
class FailureGroup:
    """Failures with one fingerprint: how often, when, which clients, and whether a later run succeeded."""

    category: str
    fingerprint: str
    count: int
    first_seen: datetime
    last_seen: datetime
    clients: list[str]
    hint: str
    resolved: bool
    example: str = ""
    stages: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    status: str = "NEW"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "fingerprint": self.fingerprint,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "clients": list(self.clients),
            "hint": self.hint,
            "resolved": self.resolved,
            "status": self.status,
            "note": self.note,
            "example": self.example,
            "stages": list(self.stages),
            "runs": list(self.runs),
        }


def group_failures(
    ws: Workspace, *, since: datetime | None = None, unresolved_only: bool = False
) -> list[FailureGroup]:
    """Failures grouped by fingerprint, newest `last_seen` first.

    A group is resolved when every client it affected has a Completed ClientRun that started after that
    client's last failure in the group (a group with no client: a Completed Run started after its last failure).
    """
    store = ws.store
    buckets: dict[str, list[Failure]] = {}
    for failure in store.list_failures(since=since):
        failure = classified(failure)
        buckets.setdefault(failure.fingerprint, []).append(failure)
    latest = _LatestCompleted(store)
    triage = {t.fingerprint: t for t in store.list_triage()} if isinstance(store, AlertRecords) else {}
    groups = []
    for key, items in buckets.items():
        items.sort(key=lambda f: f.at)
        newest = items[-1]
        last_by_client: dict[str, datetime] = {}
        for f in items:
            if f.client_id:
                last_by_client[f.client_id] = max(f.at, last_by_client.get(f.client_id, f.at))
        if last_by_client:
            resolved = all(latest.after(client, at) for client, at in last_by_client.items())
        else:
            resolved = bool(store.list_runs(RunFilter(status=RunStatus.COMPLETED.value, since=newest.at), limit=1))
        groups.append(
            FailureGroup(
                category=newest.category,
                fingerprint=key,
                count=len(items),
                first_seen=items[0].at,
                last_seen=newest.at,
                clients=sorted(last_by_client),
                hint=newest.hint,
                resolved=resolved,
                example=newest.message,
                stages=sorted({f.stage for f in items if f.stage}),
                runs=sorted({f.run_id for f in items if f.run_id}, reverse=True)[:10],
                status=triage[key].status.value if key in triage else "NEW",
                note=triage[key].note if key in triage else "",
            )
        )
    if unresolved_only:
        groups = [g for g in groups if not g.resolved]
    groups.sort(key=lambda g: g.last_seen, reverse=True)
    return groups


class _LatestCompleted:
    """When each client's newest Completed ClientRun started (one query per client, however many groups)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_client: dict[str, datetime | None] = {}

    def after(self, client_id: str, at: datetime) -> bool:
        if client_id not in self._by_client:
            newest = self.store.list_client_runs(client_id=client_id, status=ClientRunStatus.COMPLETED.value, limit=1)
            self._by_client[client_id] = newest[0].started_at if newest else None
        started = self._by_client[client_id]
        return started is not None and started > at


# ------------------------------------------------------------------------------------------------ record stats


def record_stats(ws: Workspace, *, since: datetime | None = None) -> dict[str, Any]:
    """Record-keeping metrics from the run events (and the failures of the `records` stage).

    - opens_by_source: every `open` call, by source (batch, notebook, recovery), whether it created or found;
    - created: records that came to exist; reopens: opens that found the record (a duplicate prevented);
    - recoveries: records created by the recovery path (a stage reported for a missing ClientRun);
    - failed_opens: opens that raised (Failures with stage "records");
    - creation_success_rate: successful opens / all opens (None when there were none);
    - stale_swept: Running records the sweep marked Stale.
    """
    opens_by_source = {source.value: 0 for source in Source}
    created = reopens = recoveries = 0
    stale_swept = 0
    for event in ws.store.list_events(since=since):
        if event.kind in (EventKind.OPENED, EventKind.REOPENED, EventKind.RECOVERED):
            for name, value in event.metrics.items():
                if name.startswith("opens_"):
                    source = name.removeprefix("opens_")
                    opens_by_source[source] = opens_by_source.get(source, 0) + int(value)
            if event.kind is EventKind.REOPENED:
                reopens += 1
            else:
                created += 1
            if event.kind is EventKind.RECOVERED:
                recoveries += 1
        elif event.kind is EventKind.SWEPT:
            stale_swept += int(event.metrics.get("stale_swept", 1))
    failed_opens = sum(1 for f in ws.store.list_failures(since=since) if f.stage == "records")
    succeeded = sum(opens_by_source.values())
    attempts = succeeded + failed_opens
    return {
        "since": since.isoformat() if since else None,
        "opens_by_source": opens_by_source,
        "opens": succeeded,
        "created": created,
        "reopens": reopens,
        "recoveries": recoveries,
        "failed_opens": failed_opens,
        "creation_success_rate": round(succeeded / attempts, 4) if attempts else None,
        "stale_swept": stale_swept,
    }


# ------------------------------------------------------------------------------------------------ one run


def describe_run(ws: Workspace, run_id: str) -> dict[str, Any]:
    """One run for a person: the run, its clients, each client's stages (last event of each), every event,
    its failures (classified) and the executed notebooks. `run_id` in any format RunId.parse accepts."""
    from leadkit.runids import RunId

    run = ws.records.get_run(RunId.parse(run_id))
    records = sorted(ws.store.list_client_runs(run_id=run.run_id), key=lambda r: r.client_id)
    events = ws.store.list_events(run_id=run.run_id)
    stages: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        if event.stage == "records":
            continue
        stages[(event.client_id, event.stage)] = {
            "client_id": event.client_id,
            "stage": event.stage,
            "kind": event.kind.value,
            "at": event.at.isoformat(),
            "message": event.message,
        }
    failures = [
        classified(f)
        for f in ws.store.list_failures(since=run.started_at - timedelta(seconds=1))
        if f.run_id == run.run_id
    ]
    return {
        "run": run.to_dict(),
        "clients": [
            {
                "client_id": r.client_id,
                "status": r.status.value,
                "source": r.source.value,
                "reason": r.reason,
                "posts_harvested": r.metrics.get("posts_harvested", 0),
                "notebook": r.notebook,
                "failure": r.failure.category if r.failure else None,
            }
            for r in records
        ],
        "stages": list(stages.values()),
        "events": [e.to_dict() for e in events],
        "failures": [
            {**f.to_dict(), "client_id": f.client_id, "stage": f.stage, "at": f.at.isoformat(), "cell": f.cell}
            for f in failures
        ],
        "notebooks": {r.client_id: r.notebook for r in records if r.notebook},
    }


def example_run(ws: Workspace) -> str:
    """Make a small run in-process, sending nothing anywhere, for the notebooks' default parameters; returns its
    base run ID. With a scratch workspace's demo clients (Acme-Co, Globex, Initech, Umbrella-Corp): the batch
    opens all but the first, which complete (dry run) or are skipped; the first is opened by the recovery path
    and fails for want of an Apify token."""
    from leadkit.runids import RunId
    from leadkit.workflow import run_client

    clients = ws.store.list_clients()[:4]
    run = ws.records.start_run(notes="example run made in-process by leadkit.diagnosis.example_run")
    run_id = RunId.parse(run.run_id)
    batch, late = clients[1:], clients[:1]
    ws.records.open_many(run_id, batch, Source.BATCH)
    for client in batch:
        run_client(ws.store, ws.settings, run_id, client.client_id, dry_run=True, records=ws.records)
    # Not opened by the batch: its stages report anyway, so the recovery path creates the record and says so.
    # Without an Apify token the harvest stage fails with a config error (recorded and classified).
    no_token = ws.settings.model_copy(update={"apify_token": None})
    for client in late:
        run_client(ws.store, no_token, run_id, client.client_id, dry_run=False, records=ws.records)
    ws.records.finish_run(run)
    return run.run_id
