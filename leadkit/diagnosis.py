"""Failure reports: failure groups, record-keeping stats and one run described for a person, built on the
classification in `leadkit.classify`."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from leadkit.classify import classified
from leadkit.history import attempt_started_at
from leadkit.models import ClientRunStatus, EventKind, Failure, RunEvent, RunStatus, Source
from leadkit.store.base import AlertRecords, RunFilter, Store

if TYPE_CHECKING:
    from leadkit.workspace import Workspace


# ------------------------------------------------------------------------------------------------ headline

_CLAUSE_END = re.compile(r";\s|\.\s| with a body that is not JSON")
_BODY = re.compile(r"(?:starts with|Body starts:) (['\"])(.*?)\1(?:\)|\.|$)")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>?")


def body_first_line(excerpt: str) -> str:
    """The first line of text of a quoted response body: an HTML page's title, else its first non-empty line
    with the markup removed."""
    excerpt = excerpt.replace("\\n", "\n").replace("\\r", "")
    title = _TITLE.search(excerpt)
    if title and title.group(1).strip():
        return html.unescape(title.group(1).strip())
    for line in _TAG.sub("\n", excerpt).splitlines():
        if line.strip():
            return html.unescape(line.strip())
    return ""


def failure_headline(message: str) -> str:
    """A failure message as a person reads it first: its first clause (with the secret-free URL the message
    names) and the first line of the body it quotes, e.g. `Apify answered 404 for http://.../runs (body:
    "404 Not Found")`. Messages without a quoted body keep their whole first line."""
    text = message.strip().splitlines()[0].strip() if message.strip() else ""
    body = _BODY.search(text)
    if body is None:
        return text
    head = _CLAUSE_END.split(text, maxsplit=1)[0].rstrip(" .;")
    first = body_first_line(body.group(2))
    return f'{head} (body: "{first}")' if first else head


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
    headline: str = ""
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
            "headline": self.headline,
        }


def group_failures(
    ws: Workspace, *, since: datetime | None = None, unresolved_only: bool = False
) -> list[FailureGroup]:
    """Failures grouped by fingerprint, newest `last_seen` first.

    A group is resolved when every client it affected has a Completed ClientRun whose last attempt started after
    that client's last failure in the group (a resumed client: the same run; a re-run: a later one) (a group with no client: a Completed Run started after its last failure).
    """
    store = ws.store
    buckets: dict[str, list[Failure]] = {}
    for failure in store.list_failures(since=since):
        failure = classified(failure)
        buckets.setdefault(failure.fingerprint, []).append(failure)
    latest = _LatestCompleted(store, {f.client_id for items in buckets.values() for f in items if f.client_id})
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
                headline=failure_headline(newest.message),
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
    """When each client's newest Completed ClientRun's last attempt started (for the clients named up front, one
    query finds every newest Completed ClientRun; then one query per client for its attempts)."""

    def __init__(self, store: Store, clients: set[str] | None = None) -> None:
        self.store = store
        self._by_client: dict[str, datetime | None] = {}
        if clients:
            newest = store.latest_client_runs(sorted(clients), status=ClientRunStatus.COMPLETED.value)
            self._by_client = {c: attempt_started_at(store, newest[c]) if c in newest else None for c in clients}

    def after(self, client_id: str, at: datetime) -> bool:
        if client_id not in self._by_client:
            newest = self.store.list_client_runs(client_id=client_id, status=ClientRunStatus.COMPLETED.value, limit=1)
            self._by_client[client_id] = attempt_started_at(self.store, newest[0]) if newest else None
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
    totals = ws.store.event_totals(since=since)  # counted by the store, not by reading every event
    for kind in (EventKind.OPENED, EventKind.REOPENED, EventKind.RECOVERED):
        for name, value in totals[kind.value].metrics.items() if kind.value in totals else ():
            if name.startswith("opens_"):
                source = name.removeprefix("opens_")
                opens_by_source[source] = opens_by_source.get(source, 0) + int(value)

    def count(kind: EventKind) -> int:
        return totals[kind.value].count if kind.value in totals else 0

    reopens = count(EventKind.REOPENED)
    recoveries = count(EventKind.RECOVERED)
    created = count(EventKind.OPENED) + recoveries
    swept = totals.get(EventKind.SWEPT.value)
    stale_swept = int(swept.metrics.get("stale_swept", swept.count)) if swept is not None else 0
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


# ------------------------------------------------------------------------------------------------ one client over time

#: Caps on the reads behind `client_history` (one window of days, newest first).
HISTORY_RUNS_CAP = 5000
HISTORY_FAILURES_CAP = 5000


def client_history(ws: Workspace, client_id: str, *, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """A client's trend over the last `days` UTC days: per day the posts harvested, the Apify cost, the client
    runs, the failures and the mean seconds per run; and the failures by category. JSON-able."""
    from collections import Counter, defaultdict
    from datetime import UTC

    from leadkit.models import utcnow
    from leadkit.runids import validate_client_id

    if days < 1:
        from leadkit.errors import DataError

        raise DataError(f"days={days} is not accepted; give 1 or more days")
    client = ws.store.get_client(validate_client_id(client_id))
    now = now or utcnow()
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days - 1)
    posts: Counter[str] = Counter()
    cost: defaultdict[str, float] = defaultdict(float)
    runs: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)
    timed: Counter[str] = Counter()
    for r in ws.store.list_client_runs(client_id=client.client_id, since=start, limit=HISTORY_RUNS_CAP):
        day = r.started_at.astimezone(UTC).date().isoformat()
        posts[day] += int(r.metrics.get("posts_harvested", 0))
        cost[day] += float(r.metrics.get("apify_cost_usd", 0.0))
        runs[day] += 1
        if r.ended_at is not None:
            seconds[day] += (r.ended_at - r.started_at).total_seconds()
            timed[day] += 1
    failures: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for f in ws.store.list_failures(since=start, limit=HISTORY_FAILURES_CAP):
        if f.client_id == client.client_id:
            failures[f.at.astimezone(UTC).date().isoformat()] += 1
            categories[classified(f).category] += 1
    daily = []
    for i in range(days):
        d = (start + timedelta(days=i)).date().isoformat()
        daily.append(
            {
                "day": d,
                "posts": posts[d],
                "cost_usd": round(cost[d], 4),
                "runs": runs[d],
                "failures": failures[d],
                "seconds_per_run": round(seconds[d] / timed[d], 1) if timed[d] else None,
            }
        )
    return {
        "client_id": client.client_id,
        "days": days,
        "since": start.isoformat(),
        "daily": daily,
        "failures_by_category": dict(categories.most_common()),
    }


def example_history(ws: Workspace, *, days: int = 30, now: datetime | None = None) -> None:
    """Fill a scratch workspace with a month of made-up client runs for its demo clients (records only: nothing
    is harvested or sent), so the analysts' notebooks have a trend to show on their default parameters: one
    run a day, posts and cost that vary, a failure every seventh day for the second client."""
    from leadkit.classify import failure_from
    from leadkit.errors import ConfigError, UpstreamError
    from leadkit.models import utcnow
    from leadkit.records import RunRecordService
    from leadkit.runids import RunId

    now = now or utcnow()
    clients = ws.store.list_clients()
    clock = {"t": now}
    records = RunRecordService(ws.store, now=lambda: clock["t"])
    for back in range(days - 1, -1, -1):
        clock["t"] = now - timedelta(days=back, minutes=30)
        run = records.start_run(notes="made by leadkit.diagnosis.example_history")
        opened = records.open_many(RunId.parse(run.run_id), clients, Source.BATCH)
        for n, record in enumerate(opened):
            clock["t"] = clock["t"] + timedelta(seconds=20 + 7 * n + back % 5)
            if n == 1 and back % 7 == 3:
                exc = (ConfigError if back % 2 else UpstreamError)(f"Apify answered 50{back % 4} for the run start")
                failure = failure_from(
                    exc, run_id=run.run_id, client_id=record.client_id, stage="harvest", at=clock["t"]
                )
                records.update(record, status=ClientRunStatus.FAILED, failure=failure, reason="stage harvest failed")
                continue
            posts = (back * 3 + n * 5) % 11
            event = RunEvent(
                run.run_id,
                record.client_id,
                "harvest",
                EventKind.COMPLETED,
                f"{posts} posts",
                {"posts_harvested": posts, "apify_cost_usd": round(posts * 0.002, 4)},
                at=clock["t"],
            )
            records.update(record, [event], status=ClientRunStatus.COMPLETED)
        records.finish_run(run)
