"""The store protocol on the Master Clients base (see the package docstring for the request policy)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pyairtable import Api, Table
from pyairtable.formulas import GTE, LT, OR, Field, to_formula_str

from leadkit.config import Settings
from leadkit.errors import (
    ConfigError,
    DataError,
    LeadkitError,
    MissingRecordError,
    SchemaError,
)
from leadkit.models import (
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Lease,
    Run,
    RunEvent,
)
from leadkit.store.airtable.alerts import AirtableAlerts
from leadkit.store.airtable.api import AirtableApi, make_api, validate_base_id
from leadkit.store.airtable.archive import ARCHIVE_FILE, Archive
from leadkit.store.airtable.codecs import (
    CLIENT_RUN_FIELDS,
    Fields,
    Record,
    client_fields,
    client_from,
    client_run_fields,
    client_run_from,
    client_run_key,
    eq,
    event_dict,
    events_of,
    formula_of,
    ms_precision,
    run_fields,
    run_from,
    time_cell,
    without_blanks,
)
from leadkit.store.airtable.events import AirtableEvents
from leadkit.store.airtable.heldsaves import HeldSaves
from leadkit.store.airtable.leads import AirtableLeadBase
from leadkit.store.airtable.lease import AirtableLeases
from leadkit.store.airtable.reports import AirtableReports
from leadkit.store.airtable.writes import after_tie, create_marked, first_created, new_nonce, oldest
from leadkit.store.base import ClientRunCounts, RunFilter
from leadkit.store.schema import (
    MAX_RECORDS_PER_REQUEST,
    RECORD_ID_RE,
    ClientRunResults,
    Clients,
    JobTracking,
)

log = logging.getLogger(__name__)


def _key_of(record: Record) -> tuple[str, str]:
    """A ClientRun record's (Run ID, Client ID) fields as stored."""
    f = record["fields"]
    return str(f.get(ClientRunResults.RUN_ID, "")), str(f.get(ClientRunResults.CLIENT_ID, ""))


#: Rounds of an open whose records other processes kept creating at the same time.
OPEN_ATTEMPTS = 4

#: How long a passed schema check of the master base is trusted (see `AirtableStore.init`).
SCHEMA_CHECK_TTL_S = 600.0


class AirtableStore(HeldSaves, AirtableEvents, AirtableReports, AirtableLeases, AirtableAlerts):
    """The store protocol on the Master Clients base `master_base_id`."""

    def __init__(self, master_base_id: str, settings: Settings, *, api: Api | None = None) -> None:
        self.base_id = validate_base_id(master_base_id, what="LEADKIT_STORE=airtable://<master base id>")
        self.settings = settings
        self.url = f"airtable://{self.base_id}"
        self.api: Api = api if api is not None else make_api(settings)
        self._bases: dict[str, AirtableLeadBase] = {}
        # Events JSON of the ClientRun records this process has read or written, by record ID, so saving a
        # record with its events needs no read first.
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._record_ids: dict[tuple[str, str], str] = {}
        # Lease heads (holder, generation) this process last read or wrote, and the lease records it wrote.
        self._lease_heads: dict[str, tuple[Lease | None, int]] = {}
        self._lease_records: dict[str, list[str]] = {}
        self._lease_unknown: dict[str, tuple[Lease | None, Lease | None]] = {}
        # Job Tracking record IDs by run ID, of the runs this process inserted or read: updating one needs no
        # read first.
        self._run_record_ids: dict[str, str] = {}
        self._archive: Archive | None = None
        # Progress saves held for a moment (`save_client_run`), by (run ID, client ID).
        # never longer than a heartbeat interval (a third of the stale TTL): a held heartbeat cannot go Stale
        self.save_coalesce_s = min(settings.airtable_progress_save_s, settings.leadkit_stale_after_s / 3)
        self._save_lock = threading.RLock()
        self._held: dict[tuple[str, str], tuple[ClientRun, list[RunEvent]]] = {}
        self._held_timer: threading.Timer | None = None

    def _table(self, name: str) -> Table:
        return self.api.table(self.base_id, name)

    @property
    def archive(self) -> Archive | None:
        """The workspace's archive of old records (`leadkit airtable archive`), when there is one."""
        if self._archive is None:
            path = Path(self.settings.leadkit_home) / ARCHIVE_FILE
            if path.is_file():
                self._archive = Archive(path)
        return self._archive

    def init(self) -> None:
        """Check the master base has every table, field and select option leadkit writes.

        A check that passed is remembered for `SCHEMA_CHECK_TTL_S` in the workspace (LEADKIT_HOME), so the
        kernels of a batch do not each repeat it; a field removed meanwhile still comes out as a SchemaError
        naming it on the first write."""
        from leadkit.store.provision import check_schema

        marker = Path(self.settings.leadkit_home) / f".airtable-schema-{self.base_id}.ok"
        try:
            if time.time() - marker.stat().st_mtime < SCHEMA_CHECK_TTL_S:
                return
        except OSError:
            pass
        problems = check_schema(self.api, self.base_id, "master")
        if problems:
            listed = "; ".join(p.describe() for p in problems[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            raise SchemaError(
                f"the master base {self.base_id} lacks what leadkit writes: {listed}{more}",
                hint=f"Run `leadkit airtable provision --base {self.base_id}` to create them.",
                problems=[p.describe() for p in problems],
            )
        if marker.parent.is_dir():
            try:
                marker.touch()
            except OSError:
                log.debug("cannot write %s; the schema will be checked again next time", marker)

    def close(self) -> None:
        self.write_held()
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        self._bases.clear()
        self._events.clear()
        self._record_ids.clear()
        self._lease_heads.clear()
        self._run_record_ids.clear()

    def _remember(self, record: Record) -> None:
        """Keep a ClientRun record's ID and events, so appending events to it needs no read first."""
        f = record["fields"]
        key = (str(f.get(ClientRunResults.BASE_RUN_ID, "")), str(f.get(ClientRunResults.CLIENT_ID, "")))
        self._record_ids[key] = record["id"]
        self._events[record["id"]] = events_of(record)

    def count_records(self) -> dict[str, int]:
        """Records in each table of the master base (Airtable's cap counts them all): reads one field of every
        record, 100 a request."""
        from leadkit.store.schema import MASTER_TABLES

        return {
            spec.name: sum(len(page) for page in self._table(spec.name).iterate(fields=[spec.fields[0].name]))
            for spec in MASTER_TABLES
        }

    # clients -------------------------------------------------------------------------------------------
    def list_clients(self) -> list[Client]:
        clients = [client_from(r) for r in self._table(Clients.TABLE).all()]
        return sorted(clients, key=lambda c: c.client_id)

    def get_client(self, client_id: str) -> Client:
        record = self._table(Clients.TABLE).first(formula=formula_of(eq(Clients.CLIENT_ID, client_id)))
        if record is None:
            raise MissingRecordError(
                f"no client {client_id!r} in {self.url}",
                hint="List the clients with `leadkit clients`; add one with `leadkit clients add`.",
            )
        return client_from(record)

    def save_client(self, client: Client) -> Client:
        if client.base_id:
            validate_base_id(client.base_id, what=f"Airtable Base ID of client {client.client_id!r}")
        self._table(Clients.TABLE).batch_upsert([{"fields": client_fields(client)}], key_fields=[Clients.CLIENT_ID])
        return client

    def save_clients(self, clients: Sequence[Client]) -> None:
        """Create or update many clients, 10 a request: an upsert on Client ID carrying every setting, so a
        request repeated after a lost answer (or the same import run again after a failure part way) writes the
        same values and creates nothing twice. Every base ID is checked before anything is sent. A failure part
        way says how many were written; running the same import again finishes it."""
        for client in clients:
            if client.base_id:
                validate_base_id(client.base_id, what=f"Airtable Base ID of client {client.client_id!r}")
        table = self._table(Clients.TABLE)
        done = 0
        for start in range(0, len(clients), MAX_RECORDS_PER_REQUEST):
            chunk = clients[start : start + MAX_RECORDS_PER_REQUEST]
            try:
                table.batch_upsert([{"fields": client_fields(c)} for c in chunk], key_fields=[Clients.CLIENT_ID])
            except LeadkitError as exc:
                exc.message = (
                    f"{exc.message} (after {done} of {len(clients)} clients were written; "
                    f"{', '.join(c.client_id for c in chunk)} may or may not be)"
                )
                exc.args = (exc.message,)
                exc.hint = f"{exc.hint} Run the same import again: it writes each client's settings as given, once."
                raise
            done += len(chunk)

    def remove_client(self, client_id: str) -> None:
        """Delete the client's record in the Clients table; its own base (the agency's) is left alone."""
        table = self._table(Clients.TABLE)
        records = table.all(formula=formula_of(eq(Clients.CLIENT_ID, client_id)))
        if not records:
            raise MissingRecordError(f"no client {client_id!r} in {self.url}")
        table.batch_delete([r["id"] for r in records])
        self._bases.pop(client_id, None)

    def lead_base(self, client: Client) -> AirtableLeadBase:
        from leadkit.runids import validate_client_id

        client_id = validate_client_id(client.client_id)
        if not client.base_id:
            raise ConfigError(
                f"client {client_id!r} has no Airtable Base ID, so leadkit cannot reach its leads; record it with "
                f"`leadkit clients add {client_id} ... --base <base id>`",
                hint=f"Record the client's own base: `leadkit clients add {client_id} ... --base <base id>` "
                "(or fill `Airtable Base ID` in the Clients table).",
            )
        base_id = validate_base_id(client.base_id, what=f"Airtable Base ID of client {client_id!r}")
        base = self._bases.get(client_id)
        if base is None or base.base_id != base_id:
            base = AirtableLeadBase(self.api, base_id, client_id)
            self._bases[client_id] = base
        return base

    # runs ----------------------------------------------------------------------------------------------
    def insert_run(self, run: Run) -> bool:
        """Create the Run with one POST marked by its writer and start time (`Started By`, `Start Time`), then
        read the run ID back: the run is this one's when its record is the first created with that ID; a later
        duplicate (another batch took the ID at the same time) is removed and False returned. A create whose answer
        was lost is resolved by that mark, never by sending it again: the Run is this batch's, or not there."""
        table = self._table(JobTracking.TABLE)
        fields = without_blanks(run_fields(run))
        mark = (fields.get(JobTracking.STARTED_BY), fields.get(JobTracking.START_TIME))

        def read_back() -> list[Record]:
            return [dict(r) for r in table.all(formula=formula_of(eq(JobTracking.RUN_ID, run.run_id)))]

        def is_mine(record: Record, _: int) -> bool:
            f = record["fields"]
            return (f.get(JobTracking.STARTED_BY), f.get(JobTracking.START_TIME)) == mark

        record = create_marked(table, [fields], read_back, is_mine)[0]
        try:
            same_id = read_back()
        except LeadkitError:  # cannot tell whether another batch took the ID: the Run is removed, not left over
            with contextlib.suppress(LeadkitError):
                table.delete(record["id"])
            raise
        winner = first_created(same_id) if same_id else record
        if winner is None or winner["id"] != record["id"]:
            try:
                table.delete(record["id"])
            except MissingRecordError:
                pass
            return False
        self._run_record_ids[run.run_id] = record["id"]
        return True

    def _run_record(self, run_id: str) -> Record | None:
        record = self._table(JobTracking.TABLE).first(formula=formula_of(eq(JobTracking.RUN_ID, run_id)))
        if record is not None:
            self._run_record_ids[run_id] = record["id"]
        return record

    def get_run(self, run_id: str) -> Run | None:
        record = self._run_record(run_id)
        return run_from(record) if record else None

    def update_run(self, run: Run) -> None:
        missing = MissingRecordError(f"no run {run.run_id!r} in {self.url}")
        record_id = self._run_record_ids.get(run.run_id)
        if record_id is None:
            record = self._run_record(run.run_id)
            if record is None:
                raise missing
            record_id = record["id"]
        fields = run_fields(run)
        del fields[JobTracking.START_TIME]
        try:
            self._table(JobTracking.TABLE).update(record_id, fields)
        except MissingRecordError:
            self._run_record_ids.pop(run.run_id, None)
            raise missing from None

    def _runs(self, filt: RunFilter | None, *, max_records: int | None, fields: list[str] | None = None) -> list[Run]:
        filt = filt or RunFilter()
        formula = formula_of(
            eq(JobTracking.STATUS, filt.status) if filt.status else None,
            GTE(Field(JobTracking.START_TIME), ms_precision(filt.since)) if filt.since else None,
            LT(Field(JobTracking.START_TIME), ms_precision(filt.until)) if filt.until else None,
        )
        options: dict[str, Any] = {"sort": [f"-{JobTracking.START_TIME}", f"-{JobTracking.RUN_ID}"]}
        if formula:
            options["formula"] = formula
        if fields:
            options["fields"] = fields
        runs_of_client: set[str] | None = None
        if filt.client_id:
            runs_of_client = {
                str(r["fields"].get(ClientRunResults.BASE_RUN_ID, ""))
                for r in self._table(ClientRunResults.TABLE).all(
                    formula=formula_of(eq(ClientRunResults.CLIENT_ID, filt.client_id)),
                    fields=[ClientRunResults.BASE_RUN_ID],
                )
            }
            if not runs_of_client:
                return []
        if filt.has_failures:  # any client Failed or Stale, whatever the run's status
            failing = OR(eq(ClientRunResults.STATUS, "Failed"), eq(ClientRunResults.STATUS, "Stale"))
            with_failures = {
                str(r["fields"].get(ClientRunResults.BASE_RUN_ID, ""))
                for r in self._table(ClientRunResults.TABLE).all(
                    formula=to_formula_str(failing), fields=[ClientRunResults.BASE_RUN_ID]
                )
            }
            runs_of_client = with_failures if runs_of_client is None else runs_of_client & with_failures
            if not runs_of_client:
                return []
        if runs_of_client is None and max_records is not None:
            options["max_records"] = max_records
        runs = [run_from(r) for r in self._table(JobTracking.TABLE).all(**options)]
        if runs_of_client is not None:
            runs = [r for r in runs if r.run_id in runs_of_client]
        return runs

    def list_runs(self, filt: RunFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[Run]:
        if limit <= 0:
            return []
        return self._runs(filt, max_records=offset + limit)[offset : offset + limit]

    def count_runs(self, filt: RunFilter | None = None) -> int:
        return len(self._runs(filt, max_records=None, fields=[JobTracking.RUN_ID, JobTracking.START_TIME]))

    # client runs ---------------------------------------------------------------------------------------
    def open_client_runs(
        self,
        records: Sequence[ClientRun],
        *,
        opened: Callable[[ClientRun, bool], RunEvent] | None = None,
        new: bool = False,
    ) -> list[tuple[ClientRun, bool]]:
        """Two requests per 10 records: an upsert of the key fields alone (an existing record is not touched),
        then the creation fields of the records it created and the `opened` events of all. With `new`, one:
        the upsert carries every field and event, which a repeat after a lost answer writes again unchanged;
        a record that existed after all is overwritten (logged): `new` is for a caller that knows."""
        if not records:
            return []
        keys = {(r.run_id, r.client_id) for r in records}
        if len(keys) != len(records):
            raise DataError("open_client_runs was given the same (run, client) twice; each must be opened once")
        table = self._table(ClientRunResults.TABLE)
        key_fields = [ClientRunResults.RUN_ID, ClientRunResults.CLIENT_ID]
        if new:
            rows = []
            for rec in records:
                row: Fields = {**client_run_key(rec.run_id, rec.client_id), **self._creation_fields(rec)}
                if opened is not None:
                    self._put_events([], [opened(rec, True)], row)
                rows.append({"fields": without_blanks(row)})
            result = table.batch_upsert(rows, key_fields=key_fields)  # type: ignore[arg-type]
            created_ids = set(result["createdRecords"])
            by_key = {_key_of(r): r for r in result["records"]}
            out = []
            for rec in records:
                stored = by_key[(f"{rec.run_id}-{rec.client_id}", rec.client_id)]
                if stored["id"] not in created_ids:
                    log.warning(
                        "ClientRun %s-%s existed before a first open; it was opened again", rec.run_id, rec.client_id
                    )
                self._remember(stored)
                out.append((client_run_from(stored), stored["id"] in created_ids))
            if isinstance(self.api, AirtableApi):
                self.api.usage.client_runs(self.base_id, len(created_ids))
            return out
        out_by_key: dict[tuple[str, str], tuple[ClientRun, bool]] = {}
        created_count = 0
        spill: list[RunEvent] = []
        for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
            chunk = records[start : start + MAX_RECORDS_PER_REQUEST]
            for rec, opened_record, created in self._open_chunk(chunk, opened, spill):
                out_by_key[(rec.run_id, rec.client_id)] = (client_run_from(opened_record), created)
                created_count += created
        if spill:
            self._add_table_events(spill)
        if isinstance(self.api, AirtableApi):
            self.api.usage.client_runs(self.base_id, created_count)
        return [out_by_key[(r.run_id, r.client_id)] for r in records]

    def _read_client_runs(self, records: Sequence[ClientRun]) -> dict[tuple[str, str], list[Record]]:
        """Every stored record of these (run, client) keys, duplicates included, in one request."""
        found: dict[tuple[str, str], list[Record]] = {}
        formula = to_formula_str(OR(*(eq(ClientRunResults.RUN_ID, f"{r.run_id}-{r.client_id}") for r in records)))
        for record in self._table(ClientRunResults.TABLE).all(formula=formula):
            run_key, client_id = _key_of(record)
            found.setdefault((run_key, client_id), []).append(dict(record))
        return found

    def _create_client_runs(
        self, missing: Sequence[ClientRun], opened: Callable[[ClientRun, bool], RunEvent] | None
    ) -> list[Record]:
        """Create these ClientRuns (at most 10) with one POST, each marked by a nonce on its first event (by its
        start time and heartbeat when it has no event); a lost answer is resolved by those marks."""
        nonces = [new_nonce() for _ in missing]
        rows: list[Fields] = []
        for rec, nonce in zip(missing, nonces, strict=True):
            row: Fields = {**client_run_key(rec.run_id, rec.client_id), **self._creation_fields(rec)}
            if opened is not None:
                self._put_events([], [opened(rec, True)], row)
            events = json.loads(row.get(ClientRunResults.EVENTS_JSON) or "[]")
            if events:  # the mark rides on the first event (readers ignore the key)
                events[0]["nonce"] = nonce
                row[ClientRunResults.EVENTS_JSON] = json.dumps(events, separators=(",", ":"))
            rows.append(without_blanks(row))
        time_fields = (ClientRunResults.START_TIME, ClientRunResults.HEARTBEAT)
        marks = [tuple(row.get(f) for f in time_fields) for row in rows]

        keys = [(f"{r.run_id}-{r.client_id}", r.client_id) for r in missing]

        def is_mine(record: Record, index: int) -> bool:
            if _key_of(record) != keys[index]:
                return False
            first_event = events_of(record)[:1]
            if first_event:
                return bool(first_event[0].get("nonce") == nonces[index])
            return tuple(record["fields"].get(f) for f in time_fields) == marks[index]

        def read_back() -> list[Record]:
            return [r for group in self._read_client_runs(missing).values() for r in group]

        return create_marked(self._table(ClientRunResults.TABLE), rows, read_back, is_mine)

    def _open_chunk(
        self,
        chunk: Sequence[ClientRun],
        opened: Callable[[ClientRun, bool], RunEvent] | None,
        spill: list[RunEvent],
    ) -> list[tuple[ClientRun, Record, bool]]:
        """Open up to 10 ClientRuns: read which exist; create the missing ones with one POST, each marked with a
        nonce in its first event; read them back, keep each key's first-created record and remove a later
        duplicate this open made (another process opened the same key at the same time); then append the
        `opened` events to the records that existed. A create whose answer was lost is resolved by its nonces."""
        table = self._table(ClientRunResults.TABLE)
        result: dict[tuple[str, str], tuple[Record, bool]] = {}
        todo = list(chunk)
        for _attempt in range(OPEN_ATTEMPTS):
            stored = self._read_client_runs(todo)
            missing = [r for r in todo if (f"{r.run_id}-{r.client_id}", r.client_id) not in stored]
            existing = [r for r in todo if (f"{r.run_id}-{r.client_id}", r.client_id) in stored]
            for rec in existing:
                first = oldest(stored[(f"{rec.run_id}-{rec.client_id}", rec.client_id)])
                assert first is not None
                result[(rec.run_id, rec.client_id)] = (first, False)
            if not missing:
                break
            mine = self._create_client_runs(missing, opened)
            after = self._read_client_runs(missing)
            lost: list[str] = []
            retry: list[ClientRun] = []
            for rec, record in zip(missing, mine, strict=True):
                group = after.get((f"{rec.run_id}-{rec.client_id}", rec.client_id), [record])
                winner = first_created(group)
                if winner is not None and winner["id"] == record["id"]:
                    result[(rec.run_id, rec.client_id)] = (record, True)
                    continue
                lost.append(record["id"])
                log.warning(
                    "ClientRun %s-%s was opened by another process at the same time; this open's record is removed",
                    rec.run_id,
                    rec.client_id,
                )
                retry.append(rec)
            if lost:
                table.batch_delete(lost)
            todo = retry
            if todo:
                after_tie()  # another process opened them too: let one of us go first next time
            if not todo:
                break
        else:
            raise DataError(
                f"could not open the ClientRuns of {', '.join(r.client_id for r in todo)}: other processes kept "
                f"opening them at the same time ({OPEN_ATTEMPTS} attempts)"
            )
        out: list[tuple[ClientRun, Record, bool]] = []
        updates: list[dict[str, Any]] = []
        for rec in chunk:
            record, created = result[(rec.run_id, rec.client_id)]
            if not created and opened is not None:
                fields: Fields = {}
                spill += self._put_events(events_of(record), [opened(rec, False)], fields)
                if fields:
                    updates.append({"id": record["id"], "fields": fields})
                    record = {**record, "fields": {**record["fields"], **fields}}
            self._remember(record)
            out.append((rec, record, created))
        if updates:
            table.batch_update(updates)  # type: ignore[arg-type]
        return out

    @staticmethod
    def _creation_fields(rec: ClientRun) -> Fields:
        return {
            **client_run_fields(rec),
            ClientRunResults.SOURCE: rec.source.value,
            ClientRunResults.START_TIME: time_cell(rec.started_at),
        }

    def _client_run_record(self, run_id: str, client_id: str) -> Record | None:
        record = self._table(ClientRunResults.TABLE).first(
            formula=formula_of(
                eq(ClientRunResults.RUN_ID, f"{run_id}-{client_id}"), eq(ClientRunResults.CLIENT_ID, client_id)
            )
        )
        if record is not None:
            self._remember(record)
        return record

    def get_client_run(self, run_id: str, client_id: str) -> ClientRun | None:
        self.write_held()
        record = self._client_run_record(run_id, client_id)
        if record is None and self.archive is not None:
            old = self.archive.records(self.base_id, ClientRunResults.TABLE, run_id=run_id, client_id=client_id)
            record = old[-1] if old else None
        return client_run_from(record) if record else None

    def save_client_run(self, record: ClientRun, events: Sequence[RunEvent] = (), *, hand_over: bool = False) -> None:
        """Write the record and append its events. A progress save (status Running) of a record this process
        knows is held for up to AIRTABLE_PROGRESS_SAVE_S (`save_coalesce_s`), so the progress of a stage's
        batches and the stage's end go out in one request: a timer writes it if nothing follows in time, every
        read of ClientRuns or events by this store writes it first, and so does the exit of the process. Until
        written it is also kept in a file in the workspace, so a process killed meanwhile (SIGKILL, out of
        memory) loses none of it: `write_left_save`, called by whoever settles the dead process's record, writes
        it. Other saves, and a save `hand_over` (the record goes to another process next), are written at once, with
        whatever was held."""
        key = (record.run_id, record.client_id)
        with self._save_lock:
            held = self._held.pop(key, None)
            events = [*held[1], *events] if held is not None else list(events)
            known = bool(record.record_id) and record.record_id in self._events
            if record.status is ClientRunStatus.RUNNING and known and self.save_coalesce_s > 0 and not hand_over:
                kept = dataclasses.replace(record, metrics=dict(record.metrics))
                self._held[key] = (kept, events)
                self._spool(kept, events)
                if self._held_timer is None:
                    self._held_timer = threading.Timer(self.save_coalesce_s, self._write_held_quietly)
                    self._held_timer.daemon = True
                    self._held_timer.start()
                self._write_at_exit()
                return
            self._write_client_run(record, events)
            if held is not None:
                self._unspool(key)

    def _write_client_run(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Write the record with its events after those it has. A sweep's write (status Stale with a SWEPT event)
        compares first: it reads the record and writes only if it is still Running with the heartbeat the sweep
        judged (else a live process or another sweep got there first, and nothing is written); its SWEPT event
        also goes to the Run Events table, which no later save of the record rewrites, so a process that saves
        the record afterwards from what it knew cannot erase it."""
        swept = [e for e in events if e.kind is EventKind.SWEPT]
        if swept and record.status is ClientRunStatus.STALE:
            stored = self._client_run_record(record.run_id, record.client_id)
            f = stored["fields"] if stored is not None else {}
            if (
                stored is None
                or f.get(ClientRunResults.STATUS) != ClientRunStatus.RUNNING.value
                or f.get(ClientRunResults.HEARTBEAT) != time_cell(record.heartbeat_at)
            ):
                log.warning(
                    "ClientRun %s-%s changed since the sweep read it (now %s, heartbeat %s): not swept",
                    record.run_id,
                    record.client_id,
                    f.get(ClientRunResults.STATUS, "gone"),
                    f.get(ClientRunResults.HEARTBEAT, "-"),
                )
                return
            record = dataclasses.replace(record, record_id=stored["id"])
        record_id = record.record_id if record.record_id and RECORD_ID_RE.fullmatch(record.record_id) else None
        if record_id is None or record_id not in self._events:
            stored = self._client_run_record(record.run_id, record.client_id)
            if stored is None:
                raise MissingRecordError(
                    f"no ClientRun for run {record.run_id!r} and client {record.client_id!r}; nothing was written",
                    hint="A ClientRun comes to exist only through RunRecordService.open.",
                )
            record_id = stored["id"]
        fields = client_run_fields(record)
        spill = self._append_events(record_id, events, fields)
        self._table(ClientRunResults.TABLE).update(record_id, fields)
        if ClientRunResults.EVENTS_JSON in fields:
            self._events[record_id] = json.loads(fields[ClientRunResults.EVENTS_JSON])
        spill += [e for e in swept if e not in spill]
        if spill:
            self._add_table_events(spill)

    def touch_client_run(self, record: ClientRun, at: datetime) -> bool:
        """Refresh the heartbeat of a Running ClientRun only (one field: no other write is undone). The record
        this process opened or was handed is touched in one request (its answer says whether it is still
        Running; if it ended meanwhile, the heartbeat on an ended record changes nothing); another is read
        first. A progress save of it that is held (`save_client_run`) goes out in that request instead, with
        the new heartbeat."""
        key = (record.run_id, record.client_id)
        with self._save_lock:
            held = self._held.pop(key, None)
            if held is not None:
                kept, events = held
                try:
                    self._write_client_run(dataclasses.replace(kept, heartbeat_at=at), events)
                except BaseException:
                    self._held.setdefault(key, held)  # kept for the next save, read or beat
                    raise
                self._unspool(key)
                return True
        record_id = self._record_ids.get(key)
        if record_id is None:
            stored = self._client_run_record(record.run_id, record.client_id)
            if stored is None or stored["fields"].get(ClientRunResults.STATUS) != ClientRunStatus.RUNNING.value:
                return False
            record_id = stored["id"]
        answer = self._table(ClientRunResults.TABLE).update(record_id, {ClientRunResults.HEARTBEAT: time_cell(at)})
        return bool(answer["fields"].get(ClientRunResults.STATUS) == ClientRunStatus.RUNNING.value)

    def adopt_client_run(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Remember a handed-over ClientRun's record ID and events, so saving it needs no read first."""
        if record.record_id and RECORD_ID_RE.fullmatch(record.record_id):
            self._record_ids[(record.run_id, record.client_id)] = record.record_id
            self._events[record.record_id] = [event_dict(e) for e in events]

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
        self.write_held()
        options = self._client_run_query(run_id, client_id, status, since)
        options["fields"] = CLIENT_RUN_FIELDS
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = offset + limit
        records = [client_run_from(r) for r in self._table(ClientRunResults.TABLE).all(**options)]
        archive = self.archive
        if archive is not None:
            old = archive.records(self.base_id, ClientRunResults.TABLE, run_id=run_id, client_id=client_id, since=since)
            if old:
                records += [r for r in map(client_run_from, old) if status is None or r.status.value == status]
                records.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
        end = None if limit is None else offset + limit
        return records[offset:end]

    @staticmethod
    def _client_run_query(
        run_id: str | None, client_id: str | None, status: str | None, since: datetime | None
    ) -> dict[str, Any]:
        formula = formula_of(
            eq(ClientRunResults.BASE_RUN_ID, run_id) if run_id is not None else None,
            eq(ClientRunResults.CLIENT_ID, client_id) if client_id is not None else None,
            eq(ClientRunResults.STATUS, status) if status is not None else None,
            GTE(Field(ClientRunResults.START_TIME), ms_precision(since)) if since is not None else None,
        )
        options: dict[str, Any] = {"sort": [f"-{ClientRunResults.START_TIME}", f"-{ClientRunResults.RUN_ID}"]}
        if formula:
            options["formula"] = formula
        return options

    def count_client_runs(
        self, *, since: datetime | None = None, until: datetime | None = None, client_id: str | None = None
    ) -> ClientRunCounts:
        """Airtable cannot count: this reads the Status field alone of the ClientRuns in the window (100 a
        request)."""
        self.write_held()
        formula = formula_of(
            eq(ClientRunResults.CLIENT_ID, client_id) if client_id is not None else None,
            GTE(Field(ClientRunResults.START_TIME), ms_precision(since)) if since is not None else None,
            LT(Field(ClientRunResults.START_TIME), ms_precision(until)) if until is not None else None,
        )
        options: dict[str, Any] = {"fields": [ClientRunResults.STATUS]}
        if formula:
            options["formula"] = formula
        counts: Counter[str] = Counter()
        for page in self._table(ClientRunResults.TABLE).iterate(**options):
            counts.update(str(r["fields"].get(ClientRunResults.STATUS) or "Running") for r in page)
        return ClientRunCounts(dict(counts))

    def latest_client_runs(self, client_ids: Sequence[str], *, status: str | None = None) -> dict[str, ClientRun]:
        """Reads the newest ClientRuns first (without their events) and stops once every client is found; the
        clients not among them are then looked for together, 50 to a formula."""
        self.write_held()
        wanted = set(client_ids)
        out: dict[str, ClientRun] = {}
        table = self._table(ClientRunResults.TABLE)
        sort = [f"-{ClientRunResults.START_TIME}", f"-{ClientRunResults.RUN_ID}"]

        def scan(pages: Any) -> None:
            for page in pages:
                for record in page:
                    client = str(record["fields"].get(ClientRunResults.CLIENT_ID, ""))
                    if client in wanted and client not in out:
                        out[client] = client_run_from(record)
                if wanted <= out.keys():
                    return

        if not wanted:
            return out
        of_status = eq(ClientRunResults.STATUS, status) if status is not None else None
        newest: dict[str, Any] = {"fields": CLIENT_RUN_FIELDS, "sort": sort, "max_records": 2 * len(wanted)}
        if of_status is not None:
            newest["formula"] = to_formula_str(of_status)
        scan(table.iterate(**newest))
        missing = sorted(wanted - out.keys())
        for start in range(0, len(missing), 50):
            chunk = missing[start : start + 50]
            formula = formula_of(OR(*(eq(ClientRunResults.CLIENT_ID, c) for c in chunk)), of_status)
            scan(table.iterate(fields=CLIENT_RUN_FIELDS, sort=sort, formula=formula))
        return out
