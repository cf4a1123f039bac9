"""The dashboard's local mirror of an Airtable workspace: the master base's tables and each client's leads, kept
in a SQLite store in the workspace (`<LEADKIT_HOME>/dashboard-mirror/`, private: the folder 0700, its files 0600),
read again from Airtable only where something changed.

Why a mirror: the dashboard's views are aggregates (counts of a week of runs, each client's newest run, lead
counts and next-due times per client). Airtable has no aggregate query, so answering them from Airtable means
downloading the records every time; the mirror is a `leadkit.store.sqlite.SQLiteStore`, so the views run the
SQLite store's aggregate queries (and Client health its per-workspace lead summaries) on this host.

How it is kept (`MirrorKeeper`):
- A table is read in full once; after that each read of it asks only for the records whose
  `LAST_MODIFIED_TIME()` is at or after the previous read's start less `SKEW_S` (Airtable's clock and this
  host's may differ): one request per table when nothing changed. A record is applied by replacing the rows it
  gave last time (`mirror_rows` maps each Airtable record to its rows), so a record read twice is kept once.
- What this host's processes write reaches the mirror by the next poll (`POLL_S`): the usage tally counts each
  write request by base and table (`usage.local_journal`), and a table whose count moved is read again
  (incrementally) after `SETTLE_S`. A write still in flight at that read is caught by the table's next read
  (its window starts before this read did).
- Changes made elsewhere (another host, a hand edit in Airtable) are read every sync interval
  (LEADKIT_DASHBOARD_SYNC), for the tables an open view read within the last two intervals (`want`); a table a
  view wants that was not read within the interval is read before that view's read.
- A client's leads are read (incrementally, from its own base) when its base was written here, when its
  ClientRun or client record changed, when the mirror has none of them yet, and in full every `LEAD_PASS_S`
  (a hand edit of a lead base made elsewhere waits for that pass, or for the client's next run).
- Deletions: a DELETE sent from this host to the Clients table makes the next poll list the table's record IDs
  (a client removed), and so does a pass every `CLIENT_LISTING_S` (a client removed elsewhere). Other tables
  lose records only to `leadkit airtable archive` (which keeps them locally: the mirror keeps them too) and to
  a lost creation race (the duplicate has the same key as its winner, which the mirror keeps).

Nothing secret is mirrored: the master tables and the leads hold no credential (the tokens are in the
environment), and the mirror holds what the store's own readers decode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadkit.errors import LeadkitError
from leadkit.models import Client
from leadkit.requesters import DASHBOARD, requests_for
from leadkit.store.airtable.codecs import client_from, client_run_from, event_from_dict, events_of, run_from
from leadkit.store.airtable.leads import lead_from
from leadkit.store.airtable.store import AirtableStore
from leadkit.store.airtable.usage import Journal, local_journal
from leadkit.store.codecs import failure_to_json, ts
from leadkit.store.schema import (
    Alerts,
    AuthChecks,
    ClientRunResults,
    Clients,
    Failures,
    FailureTriage,
    JobTracking,
    Leads,
    RunEvents,
)
from leadkit.store.sqlite import BASES_DIR, MASTER_FILE, SQLiteStore

log = logging.getLogger(__name__)

#: The mirror's folder in the workspace.
MIRROR_DIR = "dashboard-mirror"
#: How far before the previous read's start an incremental read reaches back (clocks of Airtable and this host).
SKEW_S = 120.0
#: How often the keeper looks at the workspace's change journal (a file read, no request).
POLL_S = 1.0
#: How long after the journal moved the written tables are read (the writes' answers arrive meanwhile).
SETTLE_S = 1.0
#: How late past the sync interval a view waits before it reads a wanted table itself (the keeper's turn).
STALE_MARGIN_S = 3 * POLL_S + SETTLE_S
#: A client's leads are read in full this often (a lead base edited by hand elsewhere shows by then).
LEAD_PASS_S = 7 * 86400.0
#: The Clients table's record IDs are listed this often (a client removed elsewhere goes by then).
CLIENT_LISTING_S = 86400.0
#: The master tables mirrored, in the order a sync reads them.
MIRRORED_TABLES = (
    Clients.TABLE,
    JobTracking.TABLE,
    ClientRunResults.TABLE,
    RunEvents.TABLE,
    AuthChecks.TABLE,
    Failures.TABLE,
    Alerts.TABLE,
    FailureTriage.TABLE,
)
#: The lead fields Client health and the client page use (Posts Content, the large one, is not mirrored).
LEAD_FIELDS = [
    Leads.PROFILE_URL,
    Leads.FIRST_NAME,
    Leads.LAST_NAME,
    Leads.COMPANY,
    Leads.HARVEST_STATUS,
    Leads.POSTS_FOUND,
    Leads.LAST_CHECK_AT,
    Leads.HARVEST_ERROR,
    Leads.POSTS_ACTIONED,
    Leads.HARVEST_RUN_ID,
    Leads.DATE_CREATED,
    Leads.NEXT_CHECK_AT,
]

_STATE_SQL = """
CREATE TABLE IF NOT EXISTS mirror_synced (tbl TEXT PRIMARY KEY, since TEXT NOT NULL, full_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mirror_rows (
    tbl TEXT NOT NULL, record_id TEXT NOT NULL, sql_table TEXT NOT NULL, row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mirror_rows_record ON mirror_rows(tbl, record_id);
CREATE TABLE IF NOT EXISTS mirror_digests (
    tbl TEXT NOT NULL, record_id TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (tbl, record_id)
);
"""

Record = dict[str, Any]
Row = tuple[str, dict[str, Any]]


def _private_files(folder: Path) -> None:
    """Make every file in `folder` (and its subfolders) 0600: the mirror's folder is 0700 from the start, so
    no other user could open one meanwhile either."""
    for path in folder.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o600)


def _since_formula(since: datetime) -> str:
    return f"LAST_MODIFIED_TIME()>=DATETIME_PARSE('{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.000Z')}')"


class _Given:
    """An Airtable API stand-in that answers every read of a table with the records given for it: the store's
    own readers decode mirrored records through it (it sends nothing anywhere)."""

    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = {}

    def table(self, _base: str, name: str) -> _Given.Table:
        return _Given.Table(self.records.get(name, []))

    class Table:
        def __init__(self, records: list[Record]) -> None:
            self._records = records

        def all(self, **_: Any) -> list[Record]:
            return list(self._records)

        def iterate(self, **_: Any) -> Iterable[list[Record]]:
            yield list(self._records)

        def first(self, **_: Any) -> Record | None:
            return self._records[0] if self._records else None


class AirtableMirror:
    """The mirror of `source`'s workspace in `<home>/dashboard-mirror`: `store` is what the dashboard reads.
    `sync_tables` and `sync_leads` read Airtable (as the dashboard's requests); thread-safe (one sync at a time)."""

    def __init__(self, source: AirtableStore, home: Path) -> None:
        self.source = source
        self.dir = Path(home) / MIRROR_DIR
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / BASES_DIR).mkdir(mode=0o700, exist_ok=True)
        self.store = SQLiteStore(self.dir)
        self.store.init()
        self._conn = sqlite3.connect(
            self.dir / MASTER_FILE, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._conn.executescript(_STATE_SQL)
        _private_files(self.dir)
        self._lock = threading.RLock()
        self._given = _Given()
        decoder_settings = source.settings.model_copy(update={"leadkit_home": self.dir / "no-archive"})
        self._decoder = AirtableStore(source.base_id, decoder_settings, api=self._given)  # type: ignore[arg-type]
        #: Requests this mirror sent, by table (what the tests and the bench read).
        self.requests: dict[str, int] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self.store.close()

    # state ---------------------------------------------------------------------------------------------------
    def synced(self, key: str) -> tuple[datetime, datetime] | None:
        """(start of the last read, start of the last full read) of a table or `Leads@<client>`; None: never."""
        with self._lock:
            row = self._conn.execute("SELECT since, full_at FROM mirror_synced WHERE tbl = ?", (key,)).fetchone()
        if row is None:
            return None
        return datetime.fromisoformat(row[0]), datetime.fromisoformat(row[1])

    def _mark(self, key: str, started: datetime, full: bool) -> None:
        before = self.synced(key)
        full_at = started if full or before is None else before[1]
        self._conn.execute(
            "INSERT INTO mirror_synced (tbl, since, full_at) VALUES (?, ?, ?) ON CONFLICT(tbl) DO UPDATE SET "
            "since = excluded.since, full_at = excluded.full_at",
            (key, started.isoformat(), full_at.isoformat()),
        )

    def _count(self, key: str, pages: int) -> None:
        self.requests[key] = self.requests.get(key, 0) + max(1, pages)

    # reading Airtable -----------------------------------------------------------------------------------------
    def _read(self, base: str, table: str, since: datetime | None, fields: list[str] | None = None) -> list[Record]:
        options: dict[str, Any] = {}
        if since is not None:
            options["formula"] = _since_formula(since - timedelta(seconds=SKEW_S))
        if fields is not None:
            options["fields"] = fields
        records: list[Record] = []
        pages = 0
        with requests_for(DASHBOARD):
            for page in self.source.api.table(base, table).iterate(**options):
                pages += 1
                records.extend(dict(r) for r in page)
        self._count(table, pages)
        return records

    def sync_tables(self, tables: Iterable[str], *, full: bool = False) -> set[str]:
        """Read each of `tables` (incrementally unless `full` or never read) and apply what changed; the client
        IDs whose ClientRun or client record changed."""
        touched: set[str] = set()
        with self._lock:
            for table in tables:
                started = datetime.now(UTC)
                last = self.synced(table)
                records = self._read(self.source.base_id, table, None if full or last is None else last[0])
                touched |= self._apply(table, records, started, full=full or last is None)
        return touched

    def list_client_ids(self) -> None:
        """List the Clients table's record IDs and drop the mirrored clients that are gone (removed)."""
        with self._lock:
            ids = {r["id"] for r in self._read(self.source.base_id, Clients.TABLE, None, [Clients.CLIENT_ID])}
            gone = [
                r[0]
                for r in self._conn.execute(
                    "SELECT DISTINCT record_id FROM mirror_rows WHERE tbl = ?", (Clients.TABLE,)
                )
                if r[0] not in ids
            ]
            if gone:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for record_id in gone:
                        self._drop(Clients.TABLE, record_id)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            self._mark("Clients@ids", datetime.now(UTC), True)

    # applying ----------------------------------------------------------------------------------------------
    def _drop(self, table: str, record_id: str) -> None:
        for sql_table, row in self._conn.execute(
            "SELECT sql_table, row FROM mirror_rows WHERE tbl = ? AND record_id = ?", (table, record_id)
        ).fetchall():
            self._conn.execute(f"DELETE FROM {sql_table} WHERE rowid = ?", (row,))
        self._conn.execute("DELETE FROM mirror_rows WHERE tbl = ? AND record_id = ?", (table, record_id))
        self._conn.execute("DELETE FROM mirror_digests WHERE tbl = ? AND record_id = ?", (table, record_id))

    def _apply(self, table: str, records: Sequence[Record], started: datetime, *, full: bool) -> set[str]:
        """Replace the rows of each record (in one transaction with the table's new read time). The earliest
        created record of a key is applied last, so it wins a duplicate left by a creation race."""
        touched: set[str] = set()
        ordered = sorted(records, key=lambda r: str(r.get("createdTime", "")), reverse=True)
        decoded: list[tuple[str, str, list[Row]]] = []
        with self._lock:
            known = dict(
                self._conn.execute("SELECT record_id, digest FROM mirror_digests WHERE tbl = ?", (table,)).fetchall()
            )
        for record in ordered:
            digest = hashlib.sha256(json.dumps(record.get("fields", {}), sort_keys=True).encode()).hexdigest()
            if known.get(record["id"]) == digest:
                continue  # read again (the skew margin), unchanged
            try:
                rows = self._decode(table, record)
            except (LeadkitError, ValueError, KeyError, TypeError) as exc:
                log.warning("mirror: record %s of %s cannot be read (%s); skipped", record.get("id"), table, exc)
                continue
            decoded.append((record["id"], digest, rows))
            for sql_table, row in rows:
                if sql_table in ("client_runs", "clients") and row.get("client_id"):
                    touched.add(str(row["client_id"]))
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for record_id, digest, rows in decoded:
                self._drop(table, record_id)
                self._conn.execute(
                    "INSERT OR REPLACE INTO mirror_digests (tbl, record_id, digest) VALUES (?, ?, ?)",
                    (table, record_id, digest),
                )
                for sql_table, row in rows:
                    cols = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    cur = self._conn.execute(
                        f"INSERT OR REPLACE INTO {sql_table} ({cols}) VALUES ({marks})", list(row.values())
                    )
                    self._conn.execute(
                        "INSERT INTO mirror_rows (tbl, record_id, sql_table, row) VALUES (?, ?, ?, ?)",
                        (table, record_id, sql_table, cur.lastrowid),
                    )
            self._mark(table, started, full)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return touched

    def _decode(self, table: str, record: Record) -> list[Row]:
        """The mirror rows of one Airtable record, decoded by the Airtable store's own readers."""
        if table == Clients.TABLE:
            return [("clients", _client_row(client_from(record)))]
        if table == JobTracking.TABLE:
            run = run_from(record)
            return [
                (
                    "runs",
                    {
                        "run_id": run.run_id,
                        "status": run.status.value,
                        "stream": run.stream,
                        "started_at": ts(run.started_at),
                        "ended_at": ts(run.ended_at),
                        "started_by": run.started_by,
                        "clients_total": run.clients_total,
                        "clients_failed": run.clients_failed,
                        "notes": run.notes,
                        "dry_run": int(run.dry_run),
                    },
                )
            ]
        if table == ClientRunResults.TABLE:
            rec = client_run_from(record)
            rows: list[Row] = [
                (
                    "client_runs",
                    {
                        "run_id": rec.run_id,
                        "client_id": rec.client_id,
                        "client_name": rec.client_name,
                        "source": rec.source.value,
                        "status": rec.status.value,
                        "started_at": ts(rec.started_at),
                        "ended_at": ts(rec.ended_at),
                        "heartbeat_at": ts(rec.heartbeat_at),
                        "metrics": json.dumps(rec.metrics),
                        "notebook": rec.notebook,
                        "reason": rec.reason,
                        "failure": failure_to_json(rec.failure),
                    },
                )
            ]
            events = [event_from_dict(d, rec.run_id, rec.client_id) for d in events_of(record)]
            return rows + [_event_row(e) for e in events]
        self._given.records = {table: [record]}
        try:
            if table == RunEvents.TABLE:
                return [_event_row(e) for e in self._decoder.list_events()]
            if table == Failures.TABLE:
                return [
                    (
                        "failures",
                        {
                            "run_id": f.run_id,
                            "client_id": f.client_id,
                            "stage": f.stage,
                            "category": f.category,
                            "fingerprint": f.fingerprint,
                            "message": f.message,
                            "hint": f.hint,
                            "at": ts(f.at),
                            "notebook": f.notebook,
                            "cell": f.cell,
                            "traceback": f.traceback,
                        },
                    )
                    for f in self._decoder.list_failures()
                ]
            if table == AuthChecks.TABLE:
                return [
                    (
                        "auth_checks",
                        {
                            "name": c.name,
                            "ok": int(c.ok),
                            "category": c.category,
                            "status": c.status,
                            "latency_ms": c.latency_ms,
                            "hint": c.hint,
                            "checked_at": ts(c.checked_at),
                            "detail": c.detail,
                        },
                    )
                    for c in self._decoder.list_auth_checks()
                ]
            if table == Alerts.TABLE:
                return [
                    (
                        "alerts",
                        {
                            "message_id": a.message_id,
                            "at": ts(a.at),
                            "kind": a.kind,
                            "key": a.key,
                            "clients": json.dumps(a.clients),
                            "run_id": a.run_id,
                            "channel": a.channel,
                            "delivered": int(a.delivered),
                            "error": a.error,
                            "subject": a.subject,
                            "body": a.body,
                        },
                    )
                    for a in self._decoder.list_alerts()
                ]
            if table == FailureTriage.TABLE:
                return [
                    (
                        "failure_triage",
                        {
                            "fingerprint": t.fingerprint,
                            "status": t.status.value,
                            "note": t.note,
                            "clients": json.dumps(t.clients),
                            "category": t.category,
                            "updated_at": ts(t.updated_at),
                        },
                    )
                    for t in self._decoder.list_triage()
                ]
        finally:
            self._given.records = {}
        raise ValueError(f"table {table!r} is not mirrored")

    # leads --------------------------------------------------------------------------------------------------
    def sync_leads(self, client: Client) -> None:
        """Read `client`'s leads from its base (only those changed since the last read, or all every
        `LEAD_PASS_S`) into the mirror's lead base of the client, and keep its lead summary."""
        if not client.base_id:
            return
        key = f"Leads@{client.client_id}"
        with self._lock:
            started = datetime.now(UTC)
            last = self.synced(key)
            full = last is None or (started - last[1]).total_seconds() >= LEAD_PASS_S
            records = self._read(client.base_id, Leads.TABLE, None if full else last[0], LEAD_FIELDS)  # type: ignore[index]
            base = self.store.lead_base(client)
            base.count_leads_by_status()  # the lead base's file and tables exist from here on
            path = self.dir / BASES_DIR / f"{client.client_id}.sqlite"
            conn = sqlite3.connect(path, timeout=60.0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if full:
                        conn.execute("DELETE FROM leads")
                    for record in records:
                        try:
                            lead = lead_from(record)
                        except LeadkitError as exc:
                            log.warning("mirror: lead %s of %s cannot be read (%s)", record.get("id"), key, exc)
                            continue
                        conn.execute(
                            "INSERT OR REPLACE INTO leads (lead_id, profile_url, url_key, name, company, "
                            "harvest_status, posts_found, last_check_at, last_error, posts_actioned, harvest_run_id, "
                            "posts, created_at, next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?)",
                            (
                                lead.lead_id,
                                lead.profile_url,
                                lead.lead_id,
                                lead.name,
                                lead.company,
                                lead.harvest_status.value if lead.harvest_status else None,
                                lead.posts_found,
                                ts(lead.last_check_at),
                                lead.last_error,
                                lead.posts_actioned,
                                lead.harvest_run_id,
                                ts(lead.created_at) or ts(started),
                                ts(lead.next_check_at),
                            ),
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()
            self.store.save_lead_summary(base.summary())
            self._mark(key, started, full)
            _private_files(self.dir / BASES_DIR)

    def mirrored_clients(self) -> list[Client]:
        return self.store.list_clients()


def _client_row(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "status": client.status,
        "service_level": client.service_level,
        "post_access": int(client.post_access),
        "daily_target": client.daily_target,
        "batch_size": client.batch_size,
        "max_batches": client.max_batches,
        "stream": client.stream,
        "base_id": client.base_id,
        "max_usd_per_day": client.max_usd_per_day,
    }


def _event_row(event: Any) -> Row:
    return (
        "events",
        {
            "run_id": event.run_id,
            "client_id": event.client_id,
            "stage": event.stage,
            "kind": event.kind.value,
            "message": event.message,
            "metrics": json.dumps(event.metrics),
            "at": ts(event.at),
        },
    )


class MirrorKeeper:
    """Keeps an `AirtableMirror` current for the dashboard (see the module docstring): a daemon thread polls the
    workspace's change journal every `POLL_S` and reads the wanted tables again every `sync_s`; views call `want`
    before they read the mirror. `stop()` ends the thread."""

    def __init__(self, mirror: AirtableMirror, home: Path, sync_s: float) -> None:
        self.mirror = mirror
        self.home = Path(home)
        self.sync_s = sync_s
        self._wanted: dict[str, float] = {}  # table -> monotonic time a view last wanted it
        self._leads_wanted = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._journal: Journal = local_journal(self.home)
        self._period = int(time.time() // sync_s)
        self._thread: threading.Thread | None = None

    def start(self) -> MirrorKeeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leadkit-dashboard-mirror", daemon=True)
            self._thread.start()
        return self

    def stop(self, wait_s: float = 0.0) -> None:
        """End the thread (after its current turn); `wait_s`: how long to wait for it."""
        self._stop.set()
        if wait_s and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    # what the views need --------------------------------------------------------------------------------------
    def want(self, tables: Iterable[str], *, leads: bool = False) -> None:
        """A view is about to read `tables` (and, `leads`, the clients' lead summaries): a table not read within
        the sync interval is read now (in the caller's thread: the view's read waits for it); from now on the
        keeper reads them every interval while views keep asking."""
        now = time.monotonic()
        with self._lock:
            for table in tables:
                self._wanted[table] = now
            if leads:
                self._leads_wanted = now
        stale = [t for t in tables if self._stale(t)]
        if stale:
            touched = self.mirror.sync_tables(stale)
            if leads:
                self._sync_leads(touched)
        if leads:
            self._sync_leads(set(), missing_only=True)

    def _stale(self, table: str) -> bool:
        synced = self.mirror.synced(table)
        if synced is None:
            return True
        # the keeper reads a wanted table at each period's start: a view reads it only when the keeper is behind
        return (datetime.now(UTC) - synced[0]).total_seconds() >= self.sync_s + STALE_MARGIN_S

    def _wanted_tables(self) -> list[str]:
        horizon = time.monotonic() - 2 * self.sync_s
        with self._lock:
            return [t for t in MIRRORED_TABLES if self._wanted.get(t, -1e18) >= horizon]

    def _sync_leads(self, touched: set[str], *, missing_only: bool = False, written: set[str] | None = None) -> None:
        """Read the leads of the clients `touched`, of those whose base was `written` here, and of those with
        no mirrored leads yet (or due for their full pass)."""
        have = set(self.mirror.store.lead_summaries())
        now = datetime.now(UTC)
        for client in self.mirror.mirrored_clients():
            if not client.base_id:
                continue
            synced = self.mirror.synced(f"Leads@{client.client_id}")
            due = synced is None or client.client_id not in have or (now - synced[1]).total_seconds() >= LEAD_PASS_S
            if not missing_only:
                due = due or client.client_id in touched or client.base_id in (written or set())
            if due:
                try:
                    self.mirror.sync_leads(client)
                except LeadkitError as exc:
                    log.warning("mirror: the leads of %s cannot be read: %s", client.client_id, exc.message)

    # the thread -----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except LeadkitError as exc:
                log.warning("mirror: Airtable could not be read (%s); trying again", exc.message)
            except (sqlite3.Error, OSError) as exc:
                log.warning("mirror: %s", exc)

    def poll(self) -> None:
        """One turn: the tables written here (journal) and, once per sync period, the wanted tables."""
        journal = local_journal(self.home)
        if journal != self._journal:
            self._stop.wait(SETTLE_S)  # the writes' answers arrive
            journal = local_journal(self.home)
            self._apply_journal(self._journal, journal)
            self._journal = journal
        period = int(time.time() // self.sync_s)
        if period != self._period:
            self._period = period
            tables = self._wanted_tables()
            touched = self.mirror.sync_tables(tables) if tables else set()
            if self._leads_wanted >= time.monotonic() - 2 * self.sync_s:
                self._sync_leads(touched)
            listed = self.mirror.synced("Clients@ids")
            if Clients.TABLE in tables and (
                listed is None or (datetime.now(UTC) - listed[0]).total_seconds() >= CLIENT_LISTING_S
            ):
                self.mirror.list_client_ids()

    def _apply_journal(self, before: Journal, after: Journal) -> None:
        master = self.mirror.source.base_id
        moved = {key for key, n in after.writes.items() if before.writes.get(key) != n}
        tables = [t for t in MIRRORED_TABLES if (master, t) in moved and self.mirror.synced(t) is not None]
        touched = self.mirror.sync_tables(tables) if tables else set()
        deleted = {key for key, n in after.deletes.items() if before.deletes.get(key) != n}
        if (master, Clients.TABLE) in deleted and self.mirror.synced(Clients.TABLE) is not None:
            self.mirror.list_client_ids()
        written = {base for base, table in moved if table == Leads.TABLE}
        if (touched or written) and self._leads_wanted:
            self._sync_leads(touched, written=written)
