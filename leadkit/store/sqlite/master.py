"""The master store on SQLite: clients, runs, client runs, events, failures, auth checks, leases, alerts and triage,
and each client's lead summary, in `<home>/leadkit.sqlite`. WAL mode and `BEGIN IMMEDIATE` write transactions make it
safe for several processes at once (the batch and every notebook kernel write here)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from leadkit.errors import ConfigError, MissingRecordError, StoreUnusable
from leadkit.models import (
    Alert,
    AuthCheck,
    Client,
    ClientRun,
    ClientRunStatus,
    Failure,
    FailureTriage,
    Lease,
    Run,
    RunEvent,
    TriageStatus,
)
from leadkit.store.base import (
    ClientRunCounts,
    EventTotal,
    LeadSummary,
    RunFilter,
)
from leadkit.store.codecs import failure_to_json, parse_ts, ts
from leadkit.store.sqlite.files import BASES_DIR, MASTER_FILE, Db, Pool, can_write
from leadkit.store.sqlite.leads import SQLiteLeadBase
from leadkit.store.sqlite.migrations import MASTER_MIGRATIONS
from leadkit.store.sqlite.rows import (
    client_from_row,
    client_run_from_row,
    event_from_row,
    failure_from_row,
    lease_from_row,
    run_from_row,
    summary_from_json,
    summary_to_json,
)

log = logging.getLogger("leadkit.store")


class SQLiteStore:
    """The master store in `<home>/leadkit.sqlite`. `read_only` opens every file for reading only (what the
    reading commands do), so they also work on a read-only workspace."""

    def __init__(self, home: Path, *, read_only: bool = False) -> None:
        self.home = Path(home)
        self.read_only = read_only
        self.url = f"sqlite://{self.home}"
        self._db: Db | None = None
        self._bases: dict[str, SQLiteLeadBase] = {}
        self._pool = Pool()

    @property
    def db(self) -> Db:
        if self._db is None:
            self.init()
        assert self._db is not None
        return self._db

    def init(self) -> None:
        if self._db is not None:
            return
        master = self.home / MASTER_FILE
        if not master.exists() and not self.read_only:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the workspace {self.home}: {exc.strerror}") from exc
        self._db = Db(master, MASTER_MIGRATIONS, read_only=self.read_only)

    def close(self) -> None:
        self._pool.close()
        self._bases.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    # clients ---------------------------------------------------------------------------------
    def list_clients(self) -> list[Client]:
        return [client_from_row(r) for r in self.db.query("SELECT * FROM clients ORDER BY client_id")]

    def get_client(self, client_id: str) -> Client:
        rows = self.db.query("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        if not rows:
            raise MissingRecordError(
                f"no client {client_id!r} in {self.url}",
                hint="List the clients with `leadkit clients`; add one with `leadkit clients add`.",
            )
        return client_from_row(rows[0])

    def save_client(self, client: Client) -> Client:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO clients (client_id, name, status, service_level, post_access, daily_target, "
                "batch_size, max_batches, stream, base_id, max_usd_per_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(client_id) DO UPDATE SET "
                "name=excluded.name, status=excluded.status, service_level=excluded.service_level, "
                "post_access=excluded.post_access, daily_target=excluded.daily_target, "
                "batch_size=excluded.batch_size, max_batches=excluded.max_batches, stream=excluded.stream, "
                "base_id=excluded.base_id, max_usd_per_day=excluded.max_usd_per_day",
                (
                    client.client_id,
                    client.name,
                    client.status,
                    client.service_level,
                    int(client.post_access),
                    client.daily_target,
                    client.batch_size,
                    client.max_batches,
                    client.stream,
                    client.base_id,
                    client.max_usd_per_day,
                ),
            )
        return client

    def remove_client(self, client_id: str) -> None:
        from leadkit.runids import validate_client_id

        validate_client_id(client_id)
        with self.db.write() as conn:
            if conn.execute("DELETE FROM clients WHERE client_id = ?", (client_id,)).rowcount == 0:
                raise MissingRecordError(f"no client {client_id!r} in {self.url}")
        base = self._bases.pop(client_id, None)
        if base is not None:
            base.close()
        path = self.home / BASES_DIR / f"{client_id}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def change_version(self) -> tuple[int, int]:
        """A value that changes whenever the master file changes: SQLite's `data_version` (bumped by any other
        connection's commit, another process's too) and this connection's own change count. One cheap query."""
        version = int(self.db.query("PRAGMA data_version")[0][0])
        return version, self.db.conn.total_changes

    def save_lead_summary(self, summary: LeadSummary) -> None:
        """Keep `summary` as its client's lead summary (what its base's writes call, after the leads were
        written). When it cannot be written the client's old summary is dropped if it can be (health then reads
        that client's base), and a warning logged: the leads are written, so the write is not reported failed."""
        try:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO lead_summaries (client_id, summary, written_at) VALUES (?, ?, ?) ON CONFLICT"
                    "(client_id) DO UPDATE SET summary = excluded.summary, written_at = excluded.written_at",
                    (summary.client_id, summary_to_json(summary), ts(summary.written_at)),
                )
        except StoreUnusable as exc:
            log.warning("the lead summary of %s could not be kept: %s", summary.client_id, exc.message)
            try:
                with self.db.write() as conn:
                    conn.execute("DELETE FROM lead_summaries WHERE client_id = ?", (summary.client_id,))
            except StoreUnusable:
                log.warning("the old lead summary of %s could not be dropped either", summary.client_id)

    def lead_summaries(self) -> dict[str, LeadSummary]:
        """Every kept lead summary by client ID (one query; clients removed since are left out)."""
        if not self.db.query("SELECT 1 FROM sqlite_master WHERE name = 'lead_summaries'"):
            return {}  # a read-only store over a master made before the summaries existed
        rows = self.db.query(
            "SELECT s.client_id, s.summary FROM lead_summaries s JOIN clients c ON c.client_id = s.client_id"
        )
        return {r["client_id"]: summary_from_json(r["client_id"], r["summary"]) for r in rows}

    def lead_base(self, client: Client) -> SQLiteLeadBase:
        from leadkit.runids import validate_client_id

        client_id = validate_client_id(client.client_id)
        base = self._bases.get(client_id)
        if base is None:
            self.init()
            path = self.home / BASES_DIR / f"{client_id}.sqlite"
            if not self.read_only and not path.parent.is_dir() and can_write(path.parent):
                path.parent.mkdir(exist_ok=True)
            base = SQLiteLeadBase(
                path, client_id, self._pool, read_only=self.read_only, on_write=self.save_lead_summary
            )
            self._bases[client_id] = base
        return base

    # runs ------------------------------------------------------------------------------------
    def insert_run(self, run: Run) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (run_id, status, stream, started_at, ended_at, started_by, clients_total, "
                "clients_failed, notes, dry_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO NOTHING",
                (
                    run.run_id,
                    run.status.value,
                    run.stream,
                    ts(run.started_at),
                    ts(run.ended_at),
                    run.started_by,
                    run.clients_total,
                    run.clients_failed,
                    run.notes,
                    int(run.dry_run),
                ),
            )
            return cur.rowcount == 1

    def get_run(self, run_id: str) -> Run | None:
        rows = self.db.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def update_run(self, run: Run) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status=?, stream=?, ended_at=?, started_by=?, clients_total=?, clients_failed=?, "
                "notes=? WHERE run_id=?",
                (
                    run.status.value,
                    run.stream,
                    ts(run.ended_at),
                    run.started_by,
                    run.clients_total,
                    run.clients_failed,
                    run.notes,
                    run.run_id,
                ),
            )
            if cur.rowcount == 0:
                raise MissingRecordError(f"no run {run.run_id!r} in {self.url}")

    @staticmethod
    def _run_where(filt: RunFilter | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if filt is not None:
            if filt.status:
                clauses.append("status = ?")
                params.append(filt.status)
            if filt.client_id:
                clauses.append("run_id IN (SELECT run_id FROM client_runs WHERE client_id = ?)")
                params.append(filt.client_id)
            if filt.since:
                clauses.append("started_at >= ?")
                params.append(ts(filt.since))
            if filt.until:
                clauses.append("started_at < ?")
                params.append(ts(filt.until))
            if filt.has_failures:
                clauses.append("run_id IN (SELECT run_id FROM client_runs WHERE status IN ('Failed', 'Stale'))")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def list_runs(self, filt: RunFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[Run]:
        where, params = self._run_where(filt)
        rows = self.db.query(
            f"SELECT * FROM runs{where} ORDER BY started_at DESC, run_id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [run_from_row(r) for r in rows]

    def count_runs(self, filt: RunFilter | None = None) -> int:
        where, params = self._run_where(filt)
        return int(self.db.query(f"SELECT COUNT(*) FROM runs{where}", params)[0][0])

    # client runs -----------------------------------------------------------------------------
    def open_client_runs(
        self,
        records: Sequence[ClientRun],
        *,
        opened: Callable[[ClientRun, bool], RunEvent] | None = None,
        new: bool = False,
    ) -> list[tuple[ClientRun, bool]]:
        """One transaction: insert the missing records, read each back, add the `opened` events (`new` changes
        nothing here: an insert that finds the record leaves it alone either way)."""
        results: list[tuple[ClientRun, bool]] = []
        with self.db.write() as conn:
            for rec in records:
                cur = conn.execute(
                    "INSERT INTO client_runs (run_id, client_id, client_name, source, status, started_at, ended_at, "
                    "heartbeat_at, metrics, notebook, reason, failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(run_id, client_id) DO NOTHING",
                    (
                        rec.run_id,
                        rec.client_id,
                        rec.client_name,
                        rec.source.value,
                        rec.status.value,
                        ts(rec.started_at),
                        ts(rec.ended_at),
                        ts(rec.heartbeat_at),
                        json.dumps(rec.metrics),
                        rec.notebook,
                        rec.reason,
                        failure_to_json(rec.failure),
                    ),
                )
                created = cur.rowcount == 1
                row = conn.execute(
                    "SELECT * FROM client_runs WHERE run_id = ? AND client_id = ?", (rec.run_id, rec.client_id)
                ).fetchone()
                results.append((client_run_from_row(row), created))
            if opened is not None:
                self._insert_events(conn, [opened(record, created) for record, created in results])
        return results

    def write_left_save(self, run_id: str, client_id: str) -> bool:
        """Every save is written at once: nothing is ever left."""
        return False

    def get_client_run(self, run_id: str, client_id: str) -> ClientRun | None:
        rows = self.db.query("SELECT * FROM client_runs WHERE run_id = ? AND client_id = ?", (run_id, client_id))
        return client_run_from_row(rows[0]) if rows else None

    def save_client_run(self, record: ClientRun, events: Sequence[RunEvent] = (), *, hand_over: bool = False) -> None:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE client_runs SET client_name=?, status=?, ended_at=?, heartbeat_at=?, metrics=?, notebook=?, "
                "reason=?, failure=? WHERE run_id=? AND client_id=?",
                (
                    record.client_name,
                    record.status.value,
                    ts(record.ended_at),
                    ts(record.heartbeat_at),
                    json.dumps(record.metrics),
                    record.notebook,
                    record.reason,
                    failure_to_json(record.failure),
                    record.run_id,
                    record.client_id,
                ),
            )
            if cur.rowcount == 0:
                raise MissingRecordError(
                    f"no ClientRun for run {record.run_id!r} and client {record.client_id!r}; nothing was written",
                    hint="A ClientRun comes to exist only through RunRecordService.open.",
                )
            self._insert_events(conn, events)

    def touch_client_run(self, record: ClientRun, at: datetime) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE client_runs SET heartbeat_at=? WHERE run_id=? AND client_id=? AND status=?",
                (ts(at), record.run_id, record.client_id, ClientRunStatus.RUNNING.value),
            )
            return cur.rowcount > 0

    def adopt_client_run(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Nothing to cache: every write is a transaction on the file."""

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
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("client_id", client_id), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(ts(since))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        sql = f"SELECT * FROM client_runs{where} ORDER BY started_at DESC, id DESC"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [limit if limit is not None else -1, offset]
        return [client_run_from_row(r) for r in self.db.query(sql, params)]

    def count_client_runs(
        self, *, since: datetime | None = None, until: datetime | None = None, client_id: str | None = None
    ) -> ClientRunCounts:
        clauses: list[str] = []
        params: list[Any] = []
        if client_id is not None:
            clauses.append("client_id = ?")
            params.append(client_id)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(ts(since))
        if until is not None:
            clauses.append("started_at < ?")
            params.append(ts(until))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self.db.query(f"SELECT status, COUNT(*) FROM client_runs{where} GROUP BY status", params)
        return ClientRunCounts({str(r[0]): int(r[1]) for r in rows})

    def latest_client_runs(self, client_ids: Sequence[str], *, status: str | None = None) -> dict[str, ClientRun]:
        out: dict[str, ClientRun] = {}
        wanted = list(dict.fromkeys(client_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.db.query(
                "SELECT cr.* FROM (SELECT value AS client_id FROM json_each(?)) AS w JOIN client_runs AS cr ON cr.id = "
                "(SELECT id FROM client_runs WHERE client_id = w.client_id AND (? IS NULL OR status = ?) "
                "ORDER BY started_at DESC, id DESC LIMIT 1)",
                (json.dumps(chunk), status, status),
            )
            for row in rows:
                out[row["client_id"]] = client_run_from_row(row)
        return out

    @staticmethod
    def _insert_events(conn: sqlite3.Connection, events: Sequence[RunEvent]) -> None:
        conn.executemany(
            "INSERT INTO events (run_id, client_id, stage, kind, message, metrics, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e.run_id, e.client_id, e.stage, e.kind.value, e.message, json.dumps(e.metrics), ts(e.at))
                for e in events
            ],
        )

    def add_events(self, events: Sequence[RunEvent]) -> None:
        with self.db.write() as conn:
            self._insert_events(conn, events)

    def list_events(
        self, *, run_id: str | None = None, client_id: str | None = None, since: datetime | None = None
    ) -> list[RunEvent]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("run_id", run_id), ("client_id", client_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("at >= ?")
            params.append(ts(since))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return [event_from_row(r) for r in self.db.query(f"SELECT * FROM events{where} ORDER BY at, id", params)]

    def event_totals(self, *, since: datetime | None = None) -> dict[str, EventTotal]:
        where, params = (" WHERE at >= ?", [ts(since)]) if since is not None else ("", [])
        counts = self.db.query(f"SELECT kind, COUNT(*) FROM events{where} GROUP BY kind", params)
        sums = self.db.query(
            f"SELECT kind, m.key, SUM(m.value) FROM events, json_each(events.metrics) AS m{where} GROUP BY kind, m.key",
            params,
        )
        metrics: dict[str, dict[str, float]] = {}
        for kind, key, total in sums:
            metrics.setdefault(str(kind), {})[str(key)] = float(total or 0)
        return {str(kind): EventTotal(int(n), metrics.get(str(kind), {})) for kind, n in counts}

    # diagnostics -----------------------------------------------------------------------------
    def add_failure(self, failure: Failure) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO failures (run_id, client_id, stage, category, fingerprint, message, hint, at, notebook, "
                "cell, traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    failure.run_id,
                    failure.client_id,
                    failure.stage,
                    failure.category,
                    failure.fingerprint,
                    failure.message,
                    failure.hint,
                    ts(failure.at),
                    failure.notebook,
                    failure.cell,
                    failure.traceback,
                ),
            )

    def list_failures(
        self, *, since: datetime | None = None, limit: int | None = None, client_id: str | None = None
    ) -> list[Failure]:
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            params.append(ts(since))
        if client_id is not None:
            clauses.append("client_id = ?")
            params.append(client_id)
        sql = "SELECT * FROM failures" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [failure_from_row(r) for r in self.db.query(sql, params)]

    def add_auth_checks(self, checks: Sequence[AuthCheck]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO auth_checks (name, ok, category, status, latency_ms, hint, checked_at, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (c.name, int(c.ok), c.category, c.status, c.latency_ms, c.hint, ts(c.checked_at), c.detail)
                    for c in checks
                ],
            )

    def list_auth_checks(self, *, since: datetime | None = None, limit: int | None = None) -> list[AuthCheck]:
        sql = "SELECT * FROM auth_checks"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE checked_at >= ?"
            params.append(ts(since))
        sql += " ORDER BY checked_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        out = []
        for r in self.db.query(sql, params):
            checked = parse_ts(r["checked_at"])
            assert checked is not None
            out.append(
                AuthCheck(
                    name=r["name"],
                    ok=bool(r["ok"]),
                    category=r["category"],
                    status=r["status"],
                    latency_ms=r["latency_ms"],
                    hint=r["hint"],
                    checked_at=checked,
                    detail=r["detail"],
                )
            )
        return out

    # lease -----------------------------------------------------------------------------------
    def get_lease(self, name: str) -> Lease | None:
        rows = self.db.query("SELECT * FROM leases WHERE name = ?", (name,))
        return lease_from_row(rows[0]) if rows else None

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            current = lease_from_row(row) if row else None
            if current != expected:
                return False
            conn.execute("DELETE FROM leases WHERE name = ?", (name,))
            if new is not None:
                conn.execute(
                    "INSERT INTO leases (name, host, pid, run_id, acquired_at, heartbeat_at, ttl_s, process_started) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        new.host,
                        new.pid,
                        new.run_id,
                        ts(new.acquired_at),
                        ts(new.heartbeat_at),
                        new.ttl_s,
                        new.process_started,
                    ),
                )
            return True

    # alerts ----------------------------------------------------------------------------------
    def add_alerts(self, alerts: Sequence[Alert]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO alerts (message_id, at, kind, key, clients, run_id, channel, delivered, error, subject, "
                "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        a.message_id,
                        ts(a.at),
                        a.kind,
                        a.key,
                        json.dumps(a.clients),
                        a.run_id,
                        a.channel,
                        int(a.delivered),
                        a.error,
                        a.subject,
                        a.body,
                    )
                    for a in alerts
                ],
            )

    def list_alerts(
        self,
        *,
        since: datetime | None = None,
        kind: str | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        where, params = [], []
        for column, value in (("kind", kind), ("key", key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(ts(since) or "")
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(str(limit))
        out = []
        for r in self.db.query(sql, params):
            at = parse_ts(r["at"])
            assert at is not None
            out.append(
                Alert(
                    kind=r["kind"],
                    key=r["key"],
                    subject=r["subject"],
                    body=r["body"],
                    channel=r["channel"],
                    delivered=bool(r["delivered"]),
                    error=r["error"],
                    clients=json.loads(r["clients"]),
                    run_id=r["run_id"],
                    message_id=r["message_id"],
                    at=at,
                )
            )
        return out

    def save_triage(self, triage: FailureTriage) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO failure_triage VALUES (?, ?, ?, ?, ?, ?)",
                (
                    triage.fingerprint,
                    triage.status.value,
                    triage.note,
                    json.dumps(triage.clients),
                    triage.category,
                    ts(triage.updated_at),
                ),
            )

    def list_triage(self) -> list[FailureTriage]:
        out = []
        for r in self.db.query("SELECT * FROM failure_triage ORDER BY fingerprint"):
            updated = parse_ts(r["updated_at"])
            assert updated is not None
            out.append(
                FailureTriage(
                    fingerprint=r["fingerprint"],
                    status=TriageStatus(r["status"]),
                    note=r["note"],
                    clients=json.loads(r["clients"]),
                    category=r["category"],
                    updated_at=updated,
                )
            )
        return out
