"""The records leadkit keeps: plain dataclasses shared by every store backend."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(StrEnum):
    """Status of a Run (Job Tracking), spelled as the original's select options."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed with Errors"
    FAILED = "Failed"


class ClientRunStatus(StrEnum):
    """Status of a ClientRun (Client Run Results), spelled as the original's select options."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed with Errors"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    STALE = "Stale"

    @property
    def done(self) -> bool:
        """Finished with the work it had: nothing left to resume."""
        return self in (ClientRunStatus.COMPLETED, ClientRunStatus.SKIPPED)

    @property
    def terminal(self) -> bool:
        return self is not ClientRunStatus.RUNNING


#: The outcome of a client stopped by a signal (Ctrl-C, SIGTERM, its batch stopped): stored as Failed with a reason
#: that says so (`interrupted (signal N)`, or the kernel's own `stage S interrupted (signal N ...)`), read as this.
INTERRUPTED = "Interrupted"
_INTERRUPTED_REASON = re.compile(r"(stage \S+ )?interrupted \((signal \d+|KeyboardInterrupt)")


def interrupted_reason(signum: int) -> str:
    """The reason recorded for a client its batch stopped on signal `signum`."""
    return f"interrupted (signal {signum})"


class Source(StrEnum):
    """Who opened a ClientRun. The only three ways a ClientRun comes to exist."""

    BATCH = "batch"
    NOTEBOOK = "notebook"
    RECOVERY = "recovery"


class HarvestStatus(StrEnum):
    """A lead's `Posts Harvest Status` (blank means not yet harvested)."""

    PENDING = "Pending"
    PROCESSING = "Processing"
    DONE = "Done"
    NO_POSTS = "No Posts"


class EventKind(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"
    OPENED = "opened"
    REOPENED = "reopened"
    RECOVERED = "recovered"
    HEARTBEAT = "heartbeat"
    SWEPT = "swept"
    INFO = "info"


@dataclass
class Client:
    client_id: str
    name: str
    status: str = "Active"
    service_level: int = 1
    post_access: bool = False
    daily_target: int = 0
    batch_size: int = 20
    max_batches: int = 10
    stream: int = 1
    base_id: str | None = None
    #: Max Apify USD Per Day: the client's daily Apify spend cap (None: no cap).
    max_usd_per_day: float | None = None

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "name": self.name,
            "status": self.status,
            "service_level": self.service_level,
            "post_access": "yes" if self.post_access else "no",
            "daily_target": self.daily_target,
            "batch_size": self.batch_size,
            "stream": self.stream,
            "max_usd_per_day": self.max_usd_per_day,
        }


@dataclass
class Post:
    post_url: str
    author_url: str
    text: str = ""
    posted_at: str | None = None
    likes: int = 0
    comments: int = 0
    reposts: int = 0
    is_repost: bool = False
    image_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "postUrl": self.post_url,
            "authorUrl": self.author_url,
            "text": self.text,
            "postedAt": self.posted_at,
            "likes": self.likes,
            "comments": self.comments,
            "reposts": self.reposts,
            "isRepost": self.is_repost,
            "imageUrl": self.image_url,
        }


@dataclass
class Lead:
    lead_id: str
    profile_url: str
    name: str = ""
    company: str = ""
    harvest_status: HarvestStatus | None = None
    posts_found: int | None = None
    last_check_at: datetime | None = None
    last_error: str | None = None
    posts_actioned: int | None = None
    harvest_run_id: str | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    #: When a Done or No Posts lead is due again (None: due now, or never checked).
    next_check_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "profile_url": self.profile_url,
            "harvest_status": str(self.harvest_status) if self.harvest_status else None,
            "posts_found": self.posts_found,
            "last_check_at": self.last_check_at.isoformat() if self.last_check_at else None,
            "next_check_at": self.next_check_at.isoformat() if self.next_check_at else None,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class DuePolicy:
    """When a lead is due for harvesting; one rule, applied in Python (`is_due`) and by every store's query.

    Due: a LinkedIn profile URL, Posts Actioned blank or 0, and status blank or Pending; Processing for longer
    than `processing_stale_after` (a crashed run); Done or No Posts once `next_check_at` has passed (a lead
    written before `next_check_at` existed: `refresh_after` / `no_posts_recheck` after its last check)."""

    refresh_after: timedelta = timedelta(days=7)
    no_posts_recheck: timedelta = timedelta(days=14)
    processing_stale_after: timedelta = timedelta(minutes=30)

    def due_at(self, lead: Lead) -> datetime | None:
        """When the lead is (or was) due; None when it is due with no date (never harvested, Pending)."""
        status = lead.harvest_status
        if status is None or status is HarvestStatus.PENDING:
            return None
        if lead.next_check_at is not None and status in (HarvestStatus.DONE, HarvestStatus.NO_POSTS):
            return lead.next_check_at
        if lead.last_check_at is None:
            return None
        period = {
            HarvestStatus.DONE: self.refresh_after,
            HarvestStatus.NO_POSTS: self.no_posts_recheck,
            HarvestStatus.PROCESSING: self.processing_stale_after,
        }[status]
        return lead.last_check_at + period

    def is_due(self, lead: Lead, now: datetime) -> bool:
        if lead.posts_actioned:
            return False
        due = self.due_at(lead)
        if due is None:
            return True
        if lead.harvest_status is HarvestStatus.PROCESSING:
            return now > due
        return now >= due


@dataclass
class NewLead:
    """A lead as imported: the client's base assigns its ID."""

    profile_url: str
    name: str = ""
    company: str = ""


@dataclass
class Run:
    """One batch (Job Tracking), keyed by the base run ID."""

    run_id: str
    status: RunStatus = RunStatus.RUNNING
    stream: int = 1
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    started_by: str = ""
    clients_total: int = 0
    clients_failed: int = 0
    notes: str = ""
    #: A `batch --dry-run`: it decided and recorded, sent nothing to Apify. Left out of success rates and of the
    #: silence checks; a store written before the flag existed reads False.
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": str(self.status),
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "clients_total": self.clients_total,
            "clients_failed": self.clients_failed,
            "dry_run": self.dry_run,
        }


@dataclass
class Failure:
    """A classified failure: what went wrong, how it groups with its repeats, and what to do."""

    category: str
    fingerprint: str
    message: str
    hint: str
    run_id: str | None = None
    client_id: str | None = None
    stage: str | None = None
    at: datetime = field(default_factory=utcnow)
    notebook: str | None = None
    cell: int | None = None
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "fingerprint": self.fingerprint,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass
class ClientRun:
    """One client in one run (Client Run Results), keyed by (base run ID, client ID)."""

    run_id: str
    client_id: str
    source: Source
    client_name: str = ""
    status: ClientRunStatus = ClientRunStatus.RUNNING
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    heartbeat_at: datetime = field(default_factory=utcnow)
    metrics: dict[str, float] = field(default_factory=dict)
    notebook: str | None = None
    reason: str | None = None
    failure: Failure | None = None
    record_id: str | None = None

    @property
    def client_run_id(self) -> str:
        return f"{self.run_id}-{self.client_id}"

    @property
    def outcome(self) -> str:
        """The attempt's one outcome: its status, except that a Failed record stopped by a signal (its reason
        says `interrupted (signal N)`) is "Interrupted"."""
        if self.status is ClientRunStatus.FAILED and _INTERRUPTED_REASON.match(self.reason or ""):
            return INTERRUPTED
        return self.status.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_run_id": self.client_run_id,
            "status": str(self.status),
            "outcome": self.outcome,
            "source": str(self.source),
            "metrics": dict(self.metrics),
            "notebook": self.notebook,
            "reason": self.reason,
            "failure": self.failure.to_dict() if self.failure else None,
        }


@dataclass
class RunEvent:
    """An additive fact about a ClientRun: a stage started, completed, skipped or failed, with metric deltas."""

    run_id: str
    client_id: str
    stage: str
    kind: EventKind
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "client_id": self.client_id,
            "stage": self.stage,
            "kind": str(self.kind),
            "message": self.message,
            "metrics": dict(self.metrics),
            "at": self.at.isoformat(),
        }


def event_from_dict(data: dict[str, Any]) -> RunEvent:
    """The inverse of `RunEvent.to_dict`."""
    return RunEvent(
        run_id=data["run_id"],
        client_id=data["client_id"],
        stage=data["stage"],
        kind=EventKind(data["kind"]),
        message=data["message"],
        metrics=dict(data["metrics"]),
        at=datetime.fromisoformat(data["at"]),
    )


@dataclass
class AuthCheck:
    name: str
    ok: bool
    category: str | None
    status: int | None
    latency_ms: float
    hint: str
    checked_at: datetime = field(default_factory=utcnow)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "category": self.category,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "hint": self.hint,
            "checked_at": self.checked_at.isoformat(),
        }


@dataclass
class Lease:
    """Who holds a stream's batch lease, and since when."""

    name: str
    host: str
    pid: int
    run_id: str
    acquired_at: datetime
    heartbeat_at: datetime
    ttl_s: float
    #: The holder process's start time (psutil `create_time`, epoch seconds): a reused PID is not the holder.
    #: 0 when unknown (a lease written before it was recorded).
    process_started: float = 0.0


class TriageStatus(StrEnum):
    """Where a failure group stands with the operator (the original's Production Issues status)."""

    NEW = "NEW"
    INVESTIGATING = "INVESTIGATING"
    FIXED = "FIXED"
    IGNORED = "IGNORED"


@dataclass
class FailureTriage:
    """The operator's status and note for one failure group (keyed by fingerprint), with the clients and the
    category the group had when the status was set: a new client or category makes a quiet group alert again."""

    fingerprint: str
    status: TriageStatus
    note: str = ""
    clients: list[str] = field(default_factory=list)
    category: str = ""
    updated_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status.value,
            "note": self.note,
            "clients": list(self.clients),
            "category": self.category,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass
class Alert:
    """One alert message to one channel: what (kind, key, clients, run), the text, and whether it arrived.

    `channel` is the channel's scheme and host only (`json://127.0.0.1:8025`), never its path, query or
    credentials; "" when no channel is configured (the alert is recorded, not sent). Rows of one message to
    several channels share `message_id`; a retry of an undelivered message is a new row with the same one."""

    kind: str
    key: str
    subject: str
    body: str
    channel: str
    delivered: bool
    error: str | None = None
    clients: list[str] = field(default_factory=list)
    run_id: str | None = None
    message_id: str = ""
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "key": self.key,
            "clients": list(self.clients),
            "channel": self.channel,
            "delivered": self.delivered,
            "error": self.error,
            "run_id": self.run_id,
            "subject": self.subject,
            "message_id": self.message_id,
        }
