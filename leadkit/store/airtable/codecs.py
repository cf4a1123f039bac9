"""Airtable values and records <-> leadkit models (clients, runs, client runs, events, failures): the one codec of
the Airtable store, used by all its modules.

Times: a dateTime field is written as `time_cell` writes it (UTC, milliseconds: what Airtable keeps) and compared in
formulas at that precision (`ms_precision`); a time inside a text or JSON cell (events, failures, alerts) is the
store's text form (`leadkit.store.codecs.ts`, microseconds); both read back through `parse_ts`. A record read back
goes through `..._from` (errors name the table and record, see `reading`); `..._of` is the same without that
wrapper, for callers that already hold one."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from pyairtable.formulas import AND, EQ, Field, Formula, to_formula_str

from leadkit.errors import DataError
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
)
from leadkit.store.codecs import failure_from_dict, failure_to_dict, parse_ts
from leadkit.store.schema import (
    MAX_LONG_TEXT,
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
# reading what people may have edited

TIME_ACCEPTED = "an ISO 8601 time such as 2026-12-07T10:00:00.000Z"


@contextmanager
def reading(table: str, record: Record) -> Iterator[None]:
    """Decode a record: a value leadkit cannot read (a hand-edited cell: blank where a value is needed, text
    where a number or a known option is, broken JSON) comes out as a DataError naming the table and the
    record, never as an assertion or a bare ValueError."""
    try:
        yield
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(
            f"record {record.get('id', '?')} of table {table!r} cannot be read: {exc}",
            hint=f"Open that record in Airtable and fix or clear the field named (times are {TIME_ACCEPTED}).",
            table=table,
            record_id=record.get("id"),
        ) from None


def time_field(table: str, record: Record, field: str, *, required: bool = False) -> datetime | None:
    """The time in `field`, None when blank (a DataError naming the record when `required`, or when it is not a
    time)."""
    value = record["fields"].get(field)
    try:
        parsed = parse_ts(value)
    except ValueError:
        parsed = None
    if parsed is None and (required or (value not in (None, ""))):
        what = "is blank" if value in (None, "") else f"holds {str(value)[:60]!r}, which is not a time"
        raise DataError(
            f"record {record.get('id', '?')} of table {table!r}: field {field!r} {what}; accepted: {TIME_ACCEPTED}",
            hint="Open that record in Airtable and set the field (or delete the record if it was made by hand).",
            table=table,
            record_id=record.get("id"),
            field=field,
        )
    return parsed


def required_time(table: str, record: Record, field: str) -> datetime:
    """The time in `field`; a DataError naming the record when it is blank or not a time."""
    parsed = time_field(table, record, field, required=True)
    if parsed is None:  # time_field raised already; this keeps the type exact
        raise DataError(f"record {record.get('id', '?')} of table {table!r}: field {field!r} is blank")
    return parsed


# ---------------------------------------------------------------------------------------------------------
# values


def time_cell(dt: datetime | None) -> str | None:
    """Airtable's time format: UTC, milliseconds (what a dateTime field keeps)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def int_cell(value: object, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(float(value))  # type: ignore[arg-type]


def opt_int(value: object) -> int | None:
    return None if value is None or value == "" else int_cell(value)


def opt_float(value: object) -> float | None:
    if value is None or value == "" or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def formula_of(*parts: Formula | None) -> str | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return to_formula_str(kept[0] if len(kept) == 1 else AND(*kept))


def eq(field: str, value: object) -> Formula:
    return EQ(Field(field), value)


def sortable_id() -> str:
    """A unique ID whose text order is creation order (tie-break when times are equal)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def created_time(record: Record) -> datetime:
    return parse_ts(record.get("createdTime")) or datetime.now(UTC)


# ---------------------------------------------------------------------------------------------------------
# record <-> model


def client_fields(client: Client) -> Fields:
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
        Clients.MAX_USD_PER_DAY: client.max_usd_per_day,
    }


def client_from(record: Record) -> Client:
    with reading(Clients.TABLE, record):
        return client_of(record)


def client_of(record: Record) -> Client:
    f = record["fields"]
    return Client(
        client_id=str(f.get(Clients.CLIENT_ID, "")),
        name=str(f.get(Clients.CLIENT_NAME, "")),
        status=str(f.get(Clients.STATUS, "")),
        service_level=parse_service_level(f.get(Clients.SERVICE_LEVEL)),
        post_access=f.get(Clients.POST_ACCESS) == YES,
        daily_target=int_cell(f.get(Clients.DAILY_TARGET), 0),
        batch_size=int_cell(f.get(Clients.BATCH_SIZE), 20),
        max_batches=int_cell(f.get(Clients.MAX_BATCHES), 10),
        stream=int_cell(f.get(Clients.STREAM), 1),
        base_id=f.get(Clients.BASE_ID) or None,
        max_usd_per_day=opt_float(f.get(Clients.MAX_USD_PER_DAY)),
    )


def run_fields(run: Run) -> Fields:
    """A Run's fields; `Dry Run` only for a dry run (a base provisioned before the field existed takes real
    runs, and a checkbox is never unchecked: a run is dry or not from its start)."""
    dry: Fields = {JobTracking.DRY_RUN: True} if run.dry_run else {}
    return {
        **dry,
        JobTracking.RUN_ID: run.run_id,
        JobTracking.STATUS: run.status.value,
        JobTracking.STREAM: run.stream,
        JobTracking.START_TIME: time_cell(run.started_at),
        JobTracking.END_TIME: time_cell(run.ended_at),
        JobTracking.STARTED_BY: run.started_by,
        JobTracking.CLIENTS_TOTAL: run.clients_total,
        JobTracking.CLIENTS_FAILED: run.clients_failed,
        JobTracking.SYSTEM_NOTES: clip(run.notes),
    }


def run_from(record: Record) -> Run:
    with reading(JobTracking.TABLE, record):
        return run_of(record)


def run_of(record: Record) -> Run:
    f = record["fields"]
    return Run(
        run_id=str(f.get(JobTracking.RUN_ID, "")),
        status=RunStatus(f.get(JobTracking.STATUS) or RunStatus.RUNNING.value),
        stream=int_cell(f.get(JobTracking.STREAM), 1),
        started_at=time_field(JobTracking.TABLE, record, JobTracking.START_TIME) or created_time(record),
        ended_at=time_field(JobTracking.TABLE, record, JobTracking.END_TIME),
        started_by=str(f.get(JobTracking.STARTED_BY, "")),
        clients_total=int_cell(f.get(JobTracking.CLIENTS_TOTAL)),
        clients_failed=int_cell(f.get(JobTracking.CLIENTS_FAILED)),
        notes=str(f.get(JobTracking.SYSTEM_NOTES, "")),
        dry_run=f.get(JobTracking.DRY_RUN) is True,  # unchecked, or a base without the field: a real run
    )


def event_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "stage": event.stage,
        "kind": event.kind.value,
        "message": event.message,
        "metrics": event.metrics,
        "at": time_cell(event.at),
    }


def event_line(event: RunEvent) -> str:
    metrics = " ".join(f"{k}={v:g}" for k, v in event.metrics.items())
    text = f"{time_cell(event.at)} {event.stage} {event.kind.value}"
    return " ".join(p for p in (text, event.message, metrics) if p)


def client_run_key(run_id: str, client_id: str) -> Fields:
    return {
        ClientRunResults.RUN_ID: f"{run_id}-{client_id}",
        ClientRunResults.CLIENT_ID: client_id,
        ClientRunResults.BASE_RUN_ID: run_id,
    }


def client_run_fields(rec: ClientRun) -> Fields:
    """Everything `save_client_run` writes (not the key, the source or the start time)."""
    fields: Fields = {
        ClientRunResults.CLIENT_NAME: rec.client_name,
        ClientRunResults.STATUS: rec.status.value,
        ClientRunResults.END_TIME: time_cell(rec.ended_at),
        ClientRunResults.HEARTBEAT: time_cell(rec.heartbeat_at),
        ClientRunResults.METRICS_JSON: json.dumps(rec.metrics, sort_keys=True),
        ClientRunResults.NOTEBOOK: rec.notebook,
        ClientRunResults.SYSTEM_NOTES: clip(rec.reason),
        ClientRunResults.FAILURE_JSON: failure_json(rec.failure) if rec.failure else None,
        ClientRunResults.ERROR_DETAILS: clip(
            f"[{rec.failure.category}] {rec.failure.message}\n{rec.failure.hint}" if rec.failure else None
        ),
    }
    for metric, field in METRIC_FIELDS.items():
        if metric in rec.metrics:
            fields[field] = rec.metrics[metric]
    return fields


#: What a list of ClientRuns reads: every field but the events, the two big cells (a field projection).
CLIENT_RUN_FIELDS: list[str] = [
    ClientRunResults.RUN_ID,
    ClientRunResults.CLIENT_ID,
    ClientRunResults.BASE_RUN_ID,
    ClientRunResults.CLIENT_NAME,
    ClientRunResults.SOURCE,
    ClientRunResults.STATUS,
    ClientRunResults.START_TIME,
    ClientRunResults.END_TIME,
    ClientRunResults.HEARTBEAT,
    ClientRunResults.METRICS_JSON,
    ClientRunResults.NOTEBOOK,
    ClientRunResults.SYSTEM_NOTES,
    ClientRunResults.FAILURE_JSON,
]

#: Starts a cell that was cut to fit; `{n}` is how many characters were cut.
CUT_MARKER = "[cut {n} characters: an Airtable cell holds at most 100,000]"


def clip(text: str | None, limit: int = MAX_LONG_TEXT) -> str | None:
    """`text` if it fits a long-text cell, else its start and a marker saying how much was cut."""
    if text is None or len(text) <= limit:
        return text
    keep = limit - 100
    return text[:keep] + "\n" + CUT_MARKER.format(n=len(text) - keep)


def posts_json(posts: list[Any], limit: int = MAX_LONG_TEXT) -> str:
    """A lead's posts as JSON that fits a cell. When all of them do not, the newest (by `postedAt`, then by
    place: later entries came later) keep every field and each older one keeps only its `postUrl` (marked
    `"trimmed": true`), so its dedupe key stays on the lead and the post is neither bought nor counted again;
    entries are kept in their order. Only when the URLs alone pass the limit are the oldest left out."""
    text = json.dumps(posts, separators=(",", ":"))
    if len(text) <= limit:
        return text

    def stub(entry: Any) -> dict[str, Any] | None:
        url = entry.get("postUrl") if isinstance(entry, dict) else None
        return {"postUrl": url, "trimmed": True} if isinstance(url, str) and url else None

    def age(index: int) -> tuple[str, int]:
        entry = posts[index]
        posted = entry.get("postedAt") if isinstance(entry, dict) else None
        return (str(posted) if posted else "", index)

    newest_first = sorted(range(len(posts)), key=age, reverse=True)
    kept: dict[int, Any] = {}
    sizes: dict[int, int] = {}
    for i in newest_first:
        small = stub(posts[i])
        if small is not None:
            kept[i] = small
            sizes[i] = len(json.dumps(small, separators=(",", ":"))) + 1
    total = 2 + sum(sizes.values())
    for i in reversed(newest_first):  # oldest first: URLs left out only when they alone do not fit
        if total <= limit:
            break
        if i in kept:
            total -= sizes.pop(i)
            del kept[i]
    for i in newest_first:  # then the newest posts whole, while they fit
        full = len(json.dumps(posts[i], separators=(",", ":"))) + 1
        grow = full - sizes.get(i, 0)
        if total + grow > limit:
            break
        kept[i], sizes[i] = posts[i], full
        total += grow
    text = json.dumps([kept[i] for i in sorted(kept)], separators=(",", ":"))
    assert len(text) <= limit, f"posts JSON of {len(text)} characters after fitting"
    return text


def newest_lines(text: str, limit: int = MAX_LONG_TEXT) -> str:
    """The newest whole lines of a log that fit a cell, after a marker line saying how many were left out."""
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    size = 0
    room = limit - 200  # the marker line
    for line in reversed(lines):
        if size + len(line) + 1 > room:
            break
        kept.append(line)
        size += len(line) + 1
    marker = (
        f"[{len(lines) - len(kept)} earlier lines not shown (Airtable keeps 100,000 characters a cell); "
        "every event is kept in Events JSON or the Run Events table]"
    )
    return "\n".join([marker, *reversed(kept)])


def failure_json(failure: Failure) -> str:
    """The failure as JSON that fits a cell: a long traceback keeps its end and a long message its start, each
    marked "[cut]"."""
    data = failure_to_dict(failure, stamp=time_cell)
    text = json.dumps(data)
    share = MAX_LONG_TEXT // 3
    for key, keep_end in (("traceback", True), ("message", False)):
        value = str(data.get(key) or "")
        if len(text) > MAX_LONG_TEXT and len(value) > share:
            data[key] = "[cut] " + value[-share:] if keep_end else value[:share] + " [cut]"
            text = json.dumps(data)
    while len(text) > MAX_LONG_TEXT and share > 100:  # escapes made it longer than it looked: cut more
        share //= 2
        for key in ("traceback", "message", "hint"):
            value = str(data.get(key) or "")
            if len(value) > share:
                data[key] = value[:share] + " [cut]"
        text = json.dumps(data)
    return text


def client_run_from(record: Record) -> ClientRun:
    with reading(ClientRunResults.TABLE, record):
        return client_run_of(record)


def client_run_of(record: Record) -> ClientRun:
    f = record["fields"]
    t = ClientRunResults.TABLE
    client_id = str(f.get(ClientRunResults.CLIENT_ID, ""))
    run_id = f.get(ClientRunResults.BASE_RUN_ID) or str(f.get(ClientRunResults.RUN_ID, "")).removesuffix(
        f"-{client_id}"
    )
    failure = f.get(ClientRunResults.FAILURE_JSON)
    started = time_field(t, record, ClientRunResults.START_TIME) or created_time(record)
    return ClientRun(
        run_id=str(run_id),
        client_id=client_id,
        source=Source(f.get(ClientRunResults.SOURCE) or Source.BATCH.value),
        client_name=str(f.get(ClientRunResults.CLIENT_NAME, "")),
        status=ClientRunStatus(f.get(ClientRunResults.STATUS) or ClientRunStatus.RUNNING.value),
        started_at=started,
        ended_at=time_field(t, record, ClientRunResults.END_TIME),
        heartbeat_at=time_field(t, record, ClientRunResults.HEARTBEAT) or started,
        metrics=json.loads(f.get(ClientRunResults.METRICS_JSON) or "{}"),
        notebook=f.get(ClientRunResults.NOTEBOOK) or None,
        reason=f.get(ClientRunResults.SYSTEM_NOTES) or None,
        failure=failure_from_dict(json.loads(failure)) if failure else None,
        record_id=record["id"],
    )


def event_key(event: RunEvent, seq: int | None = None) -> str:
    """An event's identity: its time as Airtable keeps it, then a digest of everything it says; the same event
    always gets the same key, whether read back from Events JSON or from Run Events. With `seq` (its place in
    one write), the Event ID it is stored under, which sorts events of the same millisecond in write order."""
    body = json.dumps(
        [event.run_id, event.client_id, event.stage, event.kind.value, event.message, event.metrics],
        sort_keys=True,
    )
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"{time_cell(event.at)}-{digest}" if seq is None else f"{time_cell(event.at)}-{seq:05d}-{digest}"


def events_of(record: Record) -> list[dict[str, Any]]:
    text = record["fields"].get(ClientRunResults.EVENTS_JSON)
    return list(json.loads(text)) if text else []


def without_blanks(fields: Fields) -> Fields:
    return {k: v for k, v in fields.items() if v is not None}


def ms_precision(dt: datetime) -> datetime:
    """The time as Airtable keeps it (milliseconds, UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def event_from_dict(data: Mapping[str, Any], run_id: str, client_id: str) -> RunEvent:
    return RunEvent(
        run_id=run_id,
        client_id=client_id,
        stage=str(data.get("stage", "")),
        kind=EventKind(data.get("kind", EventKind.INFO.value)),
        message=str(data.get("message", "")),
        metrics=dict(data.get("metrics") or {}),
        at=parse_ts(data.get("at")) or datetime.now(UTC),
    )
