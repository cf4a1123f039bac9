"""Run events of `AirtableStore` (mixed into it): a ClientRun's events live in its record's `Events JSON` cell
(and `Progress Log` for people) up to Airtable's 100,000 characters; events with no ClientRun, or no room left, go
to the `Run Events` table, upserted on a key made from the event, so a repeated save adds nothing."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pyairtable import Table
from pyairtable.formulas import GTE, OR, Field, to_formula_str

from leadkit.models import (
    EventKind,
    RunEvent,
)
from leadkit.store.airtable.archive import Archive
from leadkit.store.airtable.codecs import (
    Fields,
    Record,
    clip,
    eq,
    event_dict,
    event_from_dict,
    event_key,
    event_line,
    events_of,
    formula_of,
    ms_precision,
    newest_lines,
    reading,
    required_time,
    time_cell,
)
from leadkit.store.base import EventTotal
from leadkit.store.schema import (
    MAX_LONG_TEXT,
    ClientRunResults,
    RunEvents,
)

log = logging.getLogger(__name__)


class AirtableEvents:
    """The run events of `AirtableStore` (see the module docstring)."""

    base_id: str
    _table: Callable[[str], Table]
    _events: dict[str, list[dict[str, Any]]]
    write_held: Callable[[], None]
    _record_ids: dict[tuple[str, str], str]
    _remember: Callable[[Record], None]

    @property
    def archive(self) -> Archive | None:
        raise NotImplementedError  # AirtableStore's

    def _append_events(self, record_id: str, events: Sequence[RunEvent], fields: Fields) -> list[RunEvent]:
        """`_put_events` after the events this process knows the record `record_id` has."""
        return self._put_events(self._events.get(record_id, []), events, fields)

    @staticmethod
    def _put_events(known: list[dict[str, Any]], events: Sequence[RunEvent], fields: Fields) -> list[RunEvent]:
        """Put `events` after `known` into `fields` (Events JSON, Progress Log and Last Event At of the record);
        return those that do not fit the Events JSON cell, for the Run Events table. The Progress Log keeps its
        newest lines (with a marker line when older ones were left out), so no cell ever passes Airtable's
        100,000 characters."""
        if not events:
            return []
        new = [event_dict(e) for e in events]
        size = len(json.dumps(known, separators=(",", ":")))
        fit = 0  # how many of the new events still fit the Events JSON cell
        for data in new:
            size += len(json.dumps(data, separators=(",", ":"))) + 1
            if size > MAX_LONG_TEXT:
                break
            fit += 1
        spill = list(events[fit:])
        if fit:
            fields[ClientRunResults.EVENTS_JSON] = json.dumps(known + new[:fit], separators=(",", ":"))
        lines = [event_line(event_from_dict(e, "", "")) for e in known + new]
        fields[ClientRunResults.PROGRESS_LOG] = newest_lines("\n".join(lines))
        fields[ClientRunResults.LAST_EVENT_AT] = max(str(e.get("at") or "") for e in known + new) or None
        return spill

    def add_events(self, events: Sequence[RunEvent]) -> None:
        """Append events to their ClientRun records (10 records a request); events without a ClientRun
        go to the Run Events table."""
        if not events:
            return
        self.write_held()
        groups: dict[tuple[str, str], list[RunEvent]] = {}
        for event in events:
            groups.setdefault((event.run_id, event.client_id), []).append(event)
        table = self._table(ClientRunResults.TABLE)
        unknown = [k for k in groups if self._record_ids.get(k) not in self._events]
        if unknown:
            for record in table.all(
                formula=to_formula_str(OR(*(eq(ClientRunResults.RUN_ID, f"{run}-{client}") for run, client in unknown)))
            ):
                self._remember(record)
        updates: list[dict[str, Any]] = []
        spill: list[RunEvent] = []
        for key, group in groups.items():
            record_id = self._record_ids.get(key)
            if record_id is None:
                spill.extend(group)
                continue
            fields: Fields = {}
            spill.extend(self._append_events(record_id, group, fields))
            if fields:
                updates.append({"id": record_id, "fields": fields})
                if ClientRunResults.EVENTS_JSON in fields:
                    self._events[record_id] = json.loads(fields[ClientRunResults.EVENTS_JSON])
        if updates:
            table.batch_update(updates)  # type: ignore[arg-type]
        if spill:
            self._add_table_events(spill)

    def _add_table_events(self, events: Sequence[RunEvent]) -> None:
        """Write events to the Run Events table, upserted on an Event ID made from the event itself (its time, its
        place in this write, a digest of what it says), so the same save repeated after a lost answer adds nothing;
        and reads drop an event that a differently split repeat stored twice."""
        self._table(RunEvents.TABLE).batch_upsert(
            [
                {
                    "fields": {
                        RunEvents.EVENT_ID: event_key(e, seq),
                        RunEvents.RUN_ID: e.run_id,
                        RunEvents.CLIENT_ID: e.client_id,
                        RunEvents.STAGE: e.stage,
                        RunEvents.KIND: e.kind.value,
                        RunEvents.MESSAGE: clip(e.message),
                        RunEvents.METRICS_JSON: json.dumps(e.metrics),
                        RunEvents.AT: time_cell(e.at),
                    }
                }
                for seq, e in enumerate(events)
            ],
            key_fields=[RunEvents.EVENT_ID],
        )

    def list_events(
        self, *, run_id: str | None = None, client_id: str | None = None, since: datetime | None = None
    ) -> list[RunEvent]:
        self.write_held()
        events: list[RunEvent] = []
        crr_formula = formula_of(
            eq(ClientRunResults.BASE_RUN_ID, run_id) if run_id is not None else None,
            eq(ClientRunResults.CLIENT_ID, client_id) if client_id is not None else None,
            OR(
                GTE(Field(ClientRunResults.LAST_EVENT_AT), ms_precision(since)),
                GTE(Field(ClientRunResults.HEARTBEAT), ms_precision(since)),
            )
            if since is not None
            else None,
        )
        crr_options: dict[str, Any] = {
            "fields": [ClientRunResults.BASE_RUN_ID, ClientRunResults.CLIENT_ID, ClientRunResults.EVENTS_JSON],
            "sort": [ClientRunResults.START_TIME],
        }
        if crr_formula:
            crr_options["formula"] = crr_formula
        crr_records: list[Record] = list(self._table(ClientRunResults.TABLE).all(**crr_options))
        table_records: list[Record] = []
        if self.archive is not None:  # an archived ClientRun's events came within a day of its start
            early = since - timedelta(days=1) if since is not None else None
            crr_records += self.archive.records(
                self.base_id, ClientRunResults.TABLE, run_id=run_id, client_id=client_id, since=early
            )
            table_records += self.archive.records(
                self.base_id, RunEvents.TABLE, run_id=run_id, client_id=client_id, since=since
            )
        for record in crr_records:
            f = record["fields"]
            for data in events_of(record):
                events.append(
                    event_from_dict(
                        data, str(f.get(ClientRunResults.BASE_RUN_ID, "")), str(f.get(ClientRunResults.CLIENT_ID, ""))
                    )
                )
        table_formula = formula_of(
            eq(RunEvents.RUN_ID, run_id) if run_id is not None else None,
            eq(RunEvents.CLIENT_ID, client_id) if client_id is not None else None,
            GTE(Field(RunEvents.AT), ms_precision(since)) if since is not None else None,
        )
        table_options: dict[str, Any] = {"sort": [RunEvents.AT, RunEvents.EVENT_ID]}
        if table_formula:
            table_options["formula"] = table_formula
        run_events: list[Record] = [*self._table(RunEvents.TABLE).all(**table_options), *table_records]
        for record in run_events:
            f = record["fields"]
            with reading(RunEvents.TABLE, record):
                at = required_time(RunEvents.TABLE, record, RunEvents.AT)
                events.append(
                    RunEvent(
                        run_id=str(f.get(RunEvents.RUN_ID, "")),
                        client_id=str(f.get(RunEvents.CLIENT_ID, "")),
                        stage=str(f.get(RunEvents.STAGE, "")),
                        kind=EventKind(str(f.get(RunEvents.KIND, EventKind.INFO.value))),
                        message=str(f.get(RunEvents.MESSAGE, "")),
                        metrics=json.loads(f.get(RunEvents.METRICS_JSON) or "{}"),
                        at=at,
                    )
                )
        if since is not None:
            cutoff = ms_precision(since)
            events = [e for e in events if e.at >= cutoff]
        unique = {event_key(e): e for e in reversed(events)}  # a save repeated after a lost answer: once
        return sorted(reversed(unique.values()), key=lambda e: e.at)

    def event_totals(self, *, since: datetime | None = None) -> dict[str, EventTotal]:
        """Counted here from `list_events(since=...)`: Airtable has no aggregates, but the formula keeps the
        download to the records whose events may fall in the window."""
        counts: Counter[str] = Counter()
        sums: dict[str, dict[str, float]] = {}
        for event in self.list_events(since=since):
            kind = event.kind.value
            counts[kind] += 1
            bucket = sums.setdefault(kind, {})
            for name, value in event.metrics.items():
                bucket[name] = bucket.get(name, 0.0) + float(value)
        return {kind: EventTotal(n, dict(sums.get(kind, {}))) for kind, n in counts.items()}

    # diagnostics ---------------------------------------------------------------------------------------
