"""Rows of the SQLite master file to models and back (the lead summary as JSON)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

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
)
from leadkit.store.base import (
    LeadSummary,
)
from leadkit.store.codecs import failure_from_json, parse_ts, ts


def client_from_row(row: sqlite3.Row) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        status=row["status"],
        service_level=row["service_level"],
        post_access=bool(row["post_access"]),
        daily_target=row["daily_target"],
        batch_size=row["batch_size"],
        max_batches=row["max_batches"],
        stream=row["stream"],
        base_id=row["base_id"],
        max_usd_per_day=row["max_usd_per_day"],
    )


def run_from_row(row: sqlite3.Row) -> Run:
    started = parse_ts(row["started_at"])
    assert started is not None
    return Run(
        run_id=row["run_id"],
        status=RunStatus(row["status"]),
        stream=row["stream"],
        started_at=started,
        ended_at=parse_ts(row["ended_at"]),
        started_by=row["started_by"],
        clients_total=row["clients_total"],
        clients_failed=row["clients_failed"],
        notes=row["notes"],
        dry_run=bool(row["dry_run"]) if "dry_run" in row.keys() else False,  # an old file: not marked
    )


def client_run_from_row(row: sqlite3.Row) -> ClientRun:
    started = parse_ts(row["started_at"])
    heartbeat = parse_ts(row["heartbeat_at"])
    assert started is not None and heartbeat is not None
    return ClientRun(
        run_id=row["run_id"],
        client_id=row["client_id"],
        source=Source(row["source"]),
        client_name=row["client_name"],
        status=ClientRunStatus(row["status"]),
        started_at=started,
        ended_at=parse_ts(row["ended_at"]),
        heartbeat_at=heartbeat,
        metrics=json.loads(row["metrics"]),
        notebook=row["notebook"],
        reason=row["reason"],
        failure=failure_from_json(row["failure"]),
        record_id=str(row["id"]),
    )


def event_from_row(row: sqlite3.Row) -> RunEvent:
    at = parse_ts(row["at"])
    assert at is not None
    return RunEvent(
        run_id=row["run_id"],
        client_id=row["client_id"],
        stage=row["stage"],
        kind=EventKind(row["kind"]),
        message=row["message"],
        metrics=json.loads(row["metrics"]),
        at=at,
    )


def failure_from_row(row: sqlite3.Row) -> Failure:
    at = parse_ts(row["at"])
    assert at is not None
    return Failure(
        category=row["category"],
        fingerprint=row["fingerprint"],
        message=row["message"],
        hint=row["hint"],
        run_id=row["run_id"],
        client_id=row["client_id"],
        stage=row["stage"],
        at=at,
        notebook=row["notebook"],
        cell=row["cell"],
        traceback=row["traceback"],
    )


def lease_from_row(row: sqlite3.Row) -> Lease:
    acquired = parse_ts(row["acquired_at"])
    heartbeat = parse_ts(row["heartbeat_at"])
    assert acquired is not None and heartbeat is not None
    return Lease(
        name=row["name"],
        host=row["host"],
        pid=row["pid"],
        run_id=row["run_id"],
        acquired_at=acquired,
        heartbeat_at=heartbeat,
        ttl_s=row["ttl_s"],
        process_started=row["process_started"],
    )


def summary_to_json(summary: LeadSummary) -> str:
    return json.dumps(
        {
            "by_status": summary.by_status,
            "due_now": summary.due_now,
            "next": [ts(t) for t in summary.next_checks],
            "checked": {k: [ts(t) for t in v] for k, v in summary.checked.items()},
            "lengths": summary.lengths,
            "posts_by_day": summary.posts_by_day,
            "written_at": ts(summary.written_at),
        }
    )


def _times(values: Sequence[str]) -> tuple[datetime, ...]:
    return tuple(t for t in map(parse_ts, values) if t is not None)


def summary_from_json(client_id: str, text: str) -> LeadSummary:
    raw = json.loads(text)
    written = parse_ts(raw["written_at"])
    assert written is not None
    return LeadSummary(
        client_id=client_id,
        by_status=raw["by_status"],
        due_now=int(raw["due_now"]),
        next_checks=_times(raw["next"]),
        checked={k: _times(v) for k, v in raw["checked"].items()},
        lengths=raw["lengths"],
        posts_by_day=raw["posts_by_day"],
        written_at=written,
    )
