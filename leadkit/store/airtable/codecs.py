"""Airtable values and records <-> leadkit models (clients, runs, client runs, events, failures)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pyairtable.formulas import AND, EQ, Field, Formula, to_formula_str

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
from leadkit.store.codecs import failure_from_dict, failure_to_dict, parse_ts
from leadkit.store.schema import (
    METRIC_FIELDS,
    NO,
    YES,
    ClientRunResults,
    Clients,
    JobTracking,
    parse_service_level,
    service_level_option,
)

Fields = dict[str, Any]
Record = Mapping[str, Any]

# ---------------------------------------------------------------------------------------------------------
# values


def _ts(dt: datetime | None) -> str | None:
    """Airtable's time format: UTC, milliseconds (what a dateTime field keeps)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _int(value: object, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(float(value))  # type: ignore[arg-type]


def _opt_int(value: object) -> int | None:
    return None if value is None or value == "" else _int(value)


def _formula(*parts: Formula | None) -> str | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return to_formula_str(kept[0] if len(kept) == 1 else AND(*kept))


def _eq(field: str, value: object) -> Formula:
    return EQ(Field(field), value)


def _sortable_id() -> str:
    """A unique ID whose text order is creation order (tie-break when times are equal)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _created(record: Record) -> datetime:
    return parse_ts(record.get("createdTime")) or datetime.now(UTC)


# ---------------------------------------------------------------------------------------------------------
# record <-> model


def _client_fields(client: Client) -> Fields:
    return {
        Clients.CLIENT_ID: client.client_id,
        Clients.CLIENT_NAME: client.name,
        Clients.STATUS: client.status or None,
        Clients.SERVICE_LEVEL: service_level_option(client.service_level),
        Clients.POST_ACCESS: YES if client.post_access else NO,
        Clients.DAILY_TARGET: client.daily_target,
        Clients.BATCH_SIZE: client.batch_size,
        Clients.MAX_BATCHES: client.max_batches,
        Clients.STREAM: client.stream,
        Clients.BASE_ID: client.base_id or None,
    }


def _client(record: Record) -> Client:
    f = record["fields"]
    return Client(
        client_id=str(f.get(Clients.CLIENT_ID, "")),
        name=str(f.get(Clients.CLIENT_NAME, "")),
        status=str(f.get(Clients.STATUS, "")),
        service_level=parse_service_level(f.get(Clients.SERVICE_LEVEL)),
        post_access=f.get(Clients.POST_ACCESS) == YES,
        daily_target=_int(f.get(Clients.DAILY_TARGET), 0),
        batch_size=_int(f.get(Clients.BATCH_SIZE), 20),
        max_batches=_int(f.get(Clients.MAX_BATCHES), 10),
        stream=_int(f.get(Clients.STREAM), 1),
        base_id=f.get(Clients.BASE_ID) or None,
    )


def _run_fields(run: Run) -> Fields:
    return {
        JobTracking.RUN_ID: run.run_id,
        JobTracking.STATUS: run.status.value,
        JobTracking.STREAM: run.stream,
        JobTracking.START_TIME: _ts(run.started_at),
        JobTracking.END_TIME: _ts(run.ended_at),
        JobTracking.STARTED_BY: run.started_by,
        JobTracking.CLIENTS_TOTAL: run.clients_total,
        JobTracking.CLIENTS_FAILED: run.clients_failed,
        JobTracking.SYSTEM_NOTES: run.notes,
    }


def _run(record: Record) -> Run:
    f = record["fields"]
    return Run(
        run_id=str(f.get(JobTracking.RUN_ID, "")),
        status=RunStatus(f.get(JobTracking.STATUS) or RunStatus.RUNNING.value),
        stream=_int(f.get(JobTracking.STREAM), 1),
        started_at=parse_ts(f.get(JobTracking.START_TIME)) or _created(record),
        ended_at=parse_ts(f.get(JobTracking.END_TIME)),
        started_by=str(f.get(JobTracking.STARTED_BY, "")),
        clients_total=_int(f.get(JobTracking.CLIENTS_TOTAL)),
        clients_failed=_int(f.get(JobTracking.CLIENTS_FAILED)),
        notes=str(f.get(JobTracking.SYSTEM_NOTES, "")),
    )


def _event_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "stage": event.stage,
        "kind": event.kind.value,
        "message": event.message,
        "metrics": event.metrics,
        "at": _ts(event.at),
    }


def _event_line(event: RunEvent) -> str:
    metrics = " ".join(f"{k}={v:g}" for k, v in event.metrics.items())
    text = f"{_ts(event.at)} {event.stage} {event.kind.value}"
    return " ".join(p for p in (text, event.message, metrics) if p)


def _client_run_key(run_id: str, client_id: str) -> Fields:
    return {
        ClientRunResults.RUN_ID: f"{run_id}-{client_id}",
        ClientRunResults.CLIENT_ID: client_id,
        ClientRunResults.BASE_RUN_ID: run_id,
    }


def _client_run_fields(rec: ClientRun) -> Fields:
    """Everything `save_client_run` writes (not the key, the source or the start time)."""
    fields: Fields = {
        ClientRunResults.CLIENT_NAME: rec.client_name,
        ClientRunResults.STATUS: rec.status.value,
        ClientRunResults.END_TIME: _ts(rec.ended_at),
        ClientRunResults.HEARTBEAT: _ts(rec.heartbeat_at),
        ClientRunResults.METRICS_JSON: json.dumps(rec.metrics, sort_keys=True),
        ClientRunResults.NOTEBOOK: rec.notebook,
        ClientRunResults.SYSTEM_NOTES: rec.reason,
        ClientRunResults.FAILURE_JSON: json.dumps(failure_to_dict(rec.failure, stamp=_ts)) if rec.failure else None,
        ClientRunResults.ERROR_DETAILS: (
            f"[{rec.failure.category}] {rec.failure.message}\n{rec.failure.hint}" if rec.failure else None
        ),
    }
    for metric, field in METRIC_FIELDS.items():
        if metric in rec.metrics:
            fields[field] = rec.metrics[metric]
    return fields


def _client_run(record: Record) -> ClientRun:
    f = record["fields"]
    client_id = str(f.get(ClientRunResults.CLIENT_ID, ""))
    run_id = f.get(ClientRunResults.BASE_RUN_ID) or str(f.get(ClientRunResults.RUN_ID, "")).removesuffix(
        f"-{client_id}"
    )
    failure = f.get(ClientRunResults.FAILURE_JSON)
    started = parse_ts(f.get(ClientRunResults.START_TIME)) or _created(record)
    return ClientRun(
        run_id=str(run_id),
        client_id=client_id,
        source=Source(f.get(ClientRunResults.SOURCE) or Source.BATCH.value),
        client_name=str(f.get(ClientRunResults.CLIENT_NAME, "")),
        status=ClientRunStatus(f.get(ClientRunResults.STATUS) or ClientRunStatus.RUNNING.value),
        started_at=started,
        ended_at=parse_ts(f.get(ClientRunResults.END_TIME)),
        heartbeat_at=parse_ts(f.get(ClientRunResults.HEARTBEAT)) or started,
        metrics=json.loads(f.get(ClientRunResults.METRICS_JSON) or "{}"),
        notebook=f.get(ClientRunResults.NOTEBOOK) or None,
        reason=f.get(ClientRunResults.SYSTEM_NOTES) or None,
        failure=failure_from_dict(json.loads(failure)) if failure else None,
        record_id=record["id"],
    )


def _events_of(record: Record) -> list[dict[str, Any]]:
    text = record["fields"].get(ClientRunResults.EVENTS_JSON)
    return list(json.loads(text)) if text else []


def _without_blanks(fields: Fields) -> Fields:
    return {k: v for k, v in fields.items() if v is not None}


def _ms(dt: datetime) -> datetime:
    """The time as Airtable keeps it (milliseconds, UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _event_from_dict(data: Mapping[str, Any], run_id: str, client_id: str) -> RunEvent:
    return RunEvent(
        run_id=run_id,
        client_id=client_id,
        stage=str(data.get("stage", "")),
        kind=EventKind(data.get("kind", EventKind.INFO.value)),
        message=str(data.get("message", "")),
        metrics=dict(data.get("metrics") or {}),
        at=parse_ts(data.get("at")) or datetime.now(UTC),
    )
