"""Old Airtable records moved into a local SQLite archive (`<LEADKIT_HOME>/airtable-archive.sqlite`).

`archive_old` moves Client Run Results, Run Events, Auth Checks and Alerts older
than a cutoff, one page of up to 100 records at a time: the page is written to the archive, read back and
compared field by field, and only then deleted from Airtable, 10 to a request. Nothing is lost if it stops
anywhere: a record deleted from Airtable is already in the archive, and a run after an interruption lists
what is still in Airtable and finishes the job (copying a record again replaces the same row).

The store reads the archive too (`Archive.records`), so the dashboard and `leadkit show` still see archived
ClientRuns, their events and auth checks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pyairtable import Api
from pyairtable.formulas import LT, Field, to_formula_str

from leadkit.errors import DataError
from leadkit.store.airtable.codecs import ms_precision, time_cell
from leadkit.store.schema import Alerts, AuthChecks, ClientRunResults, RunEvents

ARCHIVE_FILE = "airtable-archive.sqlite"
PAGE = 100

Record = dict[str, Any]


class MasterBase(Protocol):
    """What archiving needs of the master store: its pyairtable Api and base (an AirtableStore is one)."""

    @property
    def api(self) -> Api: ...

    @property
    def base_id(self) -> str: ...


@dataclass(frozen=True)
class ArchivedTable:
    """A table whose old records are archived: the time that says how old a record is, and the fields the
    archive indexes for the store's reads."""

    table: str
    at_field: str
    run_field: str | None = None
    client_field: str | None = None


def archived_tables() -> list[ArchivedTable]:
    return [
        ArchivedTable(
            ClientRunResults.TABLE,
            ClientRunResults.START_TIME,
            ClientRunResults.BASE_RUN_ID,
            ClientRunResults.CLIENT_ID,
        ),
        ArchivedTable(RunEvents.TABLE, RunEvents.AT, RunEvents.RUN_ID, RunEvents.CLIENT_ID),
        ArchivedTable(AuthChecks.TABLE, AuthChecks.CHECKED_AT),
        ArchivedTable(Alerts.TABLE, Alerts.AT, Alerts.RUN_ID),
    ]


class Archive:
    """The local archive: one row per archived Airtable record (its fields as JSON), keyed by base, table and
    record ID."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS records (base TEXT NOT NULL, tbl TEXT NOT NULL, record_id TEXT NOT NULL, "
            "run_id TEXT, client_id TEXT, at TEXT, created_time TEXT, fields TEXT NOT NULL, archived_at TEXT NOT "
            "NULL, deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (base, tbl, record_id))"
        )
        self._conn.execute("CREATE INDEX IF NOT EXISTS records_run ON records(base, tbl, run_id, client_id)")
        self._conn.execute("CREATE INDEX IF NOT EXISTS records_at ON records(base, tbl, at)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def put(self, base: str, spec: ArchivedTable, records: Sequence[Record]) -> None:
        now = datetime.now(UTC).isoformat()
        rows = [
            (
                base,
                spec.table,
                r["id"],
                _field(r, spec.run_field),
                _field(r, spec.client_field),
                _field(r, spec.at_field),
                r.get("createdTime"),
                json.dumps(r["fields"], sort_keys=True),
                now,
            )
            for r in records
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO records (base, tbl, record_id, run_id, client_id, at, created_time, fields, "
                    "archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (base, tbl, record_id) DO UPDATE "
                    "SET run_id = excluded.run_id, client_id = excluded.client_id, at = excluded.at, "
                    "fields = excluded.fields, archived_at = excluded.archived_at",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def verify(self, base: str, spec: ArchivedTable, records: Sequence[Record]) -> list[str]:
        """The IDs of `records` whose archived copy is missing or differs (read back from the file)."""
        ids = [r["id"] for r in records]
        with self._lock:
            stored = dict(
                self._conn.execute(
                    "SELECT record_id, fields FROM records WHERE base = ? AND tbl = ? AND record_id IN "
                    "(SELECT value FROM json_each(?))",
                    (base, spec.table, json.dumps(ids)),
                ).fetchall()
            )
        return [r["id"] for r in records if r["id"] not in stored or json.loads(stored[r["id"]]) != r["fields"]]

    def mark_deleted(self, base: str, spec: ArchivedTable, ids: Sequence[str]) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE records SET deleted = 1 WHERE base = ? AND tbl = ? AND record_id IN "
                "(SELECT value FROM json_each(?))",
                (base, spec.table, json.dumps(list(ids))),
            )

    def records(
        self,
        base: str,
        table: str,
        *,
        run_id: str | None = None,
        client_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Record]:
        """Archived records of a table as Airtable lists them (id, createdTime, fields), oldest first."""
        clauses = ["base = ?", "tbl = ?"]
        params: list[Any] = [base, table]
        for column, value in (("run_id", run_id), ("client_id", client_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("at >= ?")
            params.append(time_cell(since))
        if until is not None:
            clauses.append("at < ?")
            params.append(time_cell(until))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT record_id, created_time, fields FROM records WHERE {' AND '.join(clauses)} ORDER BY at, "
                "record_id",
                params,
            ).fetchall()
        return [{"id": rid, "createdTime": created, "fields": json.loads(fields)} for rid, created, fields in rows]

    def counts(self, base: str) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT tbl, COUNT(*) FROM records WHERE base = ? GROUP BY tbl", (base,))
            return {str(t): int(n) for t, n in rows.fetchall()}


def _field(record: Mapping[str, Any], name: str | None) -> str | None:
    if name is None:
        return None
    value = record["fields"].get(name)
    return None if value is None else str(value)


def archive_old(
    store: MasterBase,
    archive: Archive,
    older_than: timedelta,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, int]]:
    """Move the records older than `older_than` of every archived table into `archive`; per table, how many
    were archived and deleted (with `dry_run`, how many would be, and nothing changes)."""
    cutoff = ms_precision((now or datetime.now(UTC)) - older_than)
    result: dict[str, dict[str, int]] = {}
    for spec in archived_tables():
        table = store.api.table(store.base_id, spec.table)
        formula = to_formula_str(LT(Field(spec.at_field), cutoff))
        moved = 0
        gone: set[str] = set()
        if dry_run:
            found = sum(len(page) for page in table.iterate(formula=formula, fields=[spec.at_field]))
            result[spec.table] = {"archived": found, "deleted": 0}
            continue
        while True:
            page = table.all(formula=formula, max_records=PAGE)
            if not page:
                break
            records: list[Record] = [dict(r) for r in page]
            if gone.intersection(r["id"] for r in records):
                raise DataError(f"Airtable still lists {spec.table} records this run deleted; stopping the archive")
            archive.put(store.base_id, spec, records)
            bad = archive.verify(store.base_id, spec, records)
            if bad:
                raise DataError(
                    f"the archive copy of {len(bad)} {spec.table} record(s) does not match Airtable "
                    f"(e.g. {bad[0]}); nothing of this page was deleted",
                    hint=f"Check {archive.path} (disk full?) and run the archive again.",
                )
            ids = [str(r["id"]) for r in records]
            table.batch_delete(ids)
            archive.mark_deleted(store.base_id, spec, ids)
            gone.update(ids)
            moved += len(ids)
            if progress is not None:
                progress(spec.table, moved)
        result[spec.table] = {"archived": moved, "deleted": moved}
    return result
