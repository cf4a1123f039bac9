"""SQLite backend: `<home>/leadkit.sqlite` for the master records, `<home>/bases/<client id>.sqlite` for each
client's leads (a base per client, as in Airtable, so one client's code path cannot touch another's leads).

WAL mode and `BEGIN IMMEDIATE` write transactions make it safe for several processes at once (the batch and every
notebook kernel write here). The schema carries a version (`PRAGMA user_version`) and migrates forward on open.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadkit.errors import ConfigError, DataError, MissingRecordError, StoreUnusable
from leadkit.linkedin_urls import is_valid_profile_url, normalize_profile_url
from leadkit.models import (
    Alert,
    AuthCheck,
    Client,
    ClientRun,
    ClientRunStatus,
    DuePolicy,
    EventKind,
    Failure,
    FailureTriage,
    HarvestStatus,
    Lead,
    Lease,
    NewLead,
    Run,
    RunEvent,
    RunStatus,
    Source,
    TriageStatus,
)
from leadkit.store.base import (
    SUMMARY_DAYS,
    SUMMARY_TIMES,
    ClientRunCounts,
    EventTotal,
    ImportResult,
    LeadSummary,
    RunFilter,
)
from leadkit.store.codecs import failure_from_json, failure_to_json, parse_ts, ts

log = logging.getLogger("leadkit.store")

MASTER_FILE = "leadkit.sqlite"
BASES_DIR = "bases"

MASTER_MIGRATIONS: list[str] = [
    """
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, service_level INTEGER NOT NULL,
        post_access INTEGER NOT NULL, daily_target INTEGER NOT NULL, batch_size INTEGER NOT NULL,
        max_batches INTEGER NOT NULL, stream INTEGER NOT NULL, base_id TEXT
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, status TEXT NOT NULL, stream INTEGER NOT NULL, started_at TEXT NOT NULL,
        ended_at TEXT, started_by TEXT NOT NULL, clients_total INTEGER NOT NULL, clients_failed INTEGER NOT NULL,
        notes TEXT NOT NULL
    );
    CREATE INDEX runs_started ON runs(started_at);
    CREATE TABLE client_runs (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, client_id TEXT NOT NULL, client_name TEXT NOT NULL,
        source TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
        heartbeat_at TEXT NOT NULL, metrics TEXT NOT NULL, notebook TEXT, reason TEXT, failure TEXT,
        UNIQUE (run_id, client_id)
    );
    CREATE INDEX client_runs_client ON client_runs(client_id, started_at);
    CREATE INDEX client_runs_started ON client_runs(started_at);
    CREATE INDEX client_runs_status ON client_runs(status);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, client_id TEXT NOT NULL, stage TEXT NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL, metrics TEXT NOT NULL, at TEXT NOT NULL
    );
    CREATE INDEX events_run ON events(run_id, client_id);
    CREATE INDEX events_at ON events(at);
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY, run_id TEXT, client_id TEXT, stage TEXT, category TEXT NOT NULL,
        fingerprint TEXT NOT NULL, message TEXT NOT NULL, hint TEXT NOT NULL, at TEXT NOT NULL, notebook TEXT,
        cell INTEGER, traceback TEXT
    );
    CREATE INDEX failures_at ON failures(at);
    CREATE TABLE auth_checks (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, ok INTEGER NOT NULL, category TEXT, status INTEGER,
        latency_ms REAL NOT NULL, hint TEXT NOT NULL, checked_at TEXT NOT NULL, detail TEXT NOT NULL
    );
    CREATE INDEX auth_checks_at ON auth_checks(checked_at);
    CREATE TABLE leases (
        name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, run_id TEXT NOT NULL,
        acquired_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL, ttl_s REAL NOT NULL
    );
    """,
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
        clients TEXT NOT NULL, run_id TEXT, channel TEXT NOT NULL, delivered INTEGER NOT NULL, error TEXT,
        subject TEXT NOT NULL, body TEXT NOT NULL
    );
    CREATE INDEX alerts_at ON alerts(at);
    CREATE INDEX alerts_kind_key ON alerts(kind, key, at);
    CREATE TABLE failure_triage (
        fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, note TEXT NOT NULL, clients TEXT NOT NULL,
        category TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE clients ADD COLUMN max_usd_per_day REAL;
    """,
    # the lease holder's process start time: a reused PID is not the holder
    """
    ALTER TABLE leases ADD COLUMN process_started REAL NOT NULL DEFAULT 0;
    """,
    # a client's failures newest first without scanning all of them (health, the dashboard's client rows)
    """
    CREATE INDEX failures_client ON failures(client_id, at);
    """,
    # each client's lead summary (`LeadSummary`, JSON), written with its leads: Client health reads one table
    """
    CREATE TABLE lead_summaries (client_id TEXT PRIMARY KEY, summary TEXT NOT NULL, written_at TEXT NOT NULL);
    """,
    # a `batch --dry-run` is marked: left out of success rates and silence checks
    """
    ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    """,
]

BASE_MIGRATIONS: list[str] = [
    """
    CREATE TABLE leads (
        lead_id TEXT PRIMARY KEY, profile_url TEXT NOT NULL, url_key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        company TEXT NOT NULL, harvest_status TEXT, posts_found INTEGER, last_check_at TEXT, last_error TEXT,
        posts_actioned INTEGER, harvest_run_id TEXT, posts TEXT NOT NULL, created_at TEXT NOT NULL
    );
    CREATE INDEX leads_status ON leads(harvest_status);
    """,
    """
    ALTER TABLE leads ADD COLUMN next_check_at TEXT;
    CREATE INDEX leads_due ON leads(harvest_status, next_check_at);
    """,
]


#: How long opening a store waits for a lock held by another process before saying it is locked (a batch's
#: writes hold one for milliseconds; something holding it this long is not leadkit at work).
OPEN_BUSY_TIMEOUT_S = 10.0
#: How long a write waits for the lock (many kernels write at once during a batch).
WRITE_BUSY_TIMEOUT_S = 60.0

_HEADER = b"SQLite format 3\x00"
_RESTORE = "restore it from a backup (`leadkit backup` makes one; see the README's Backups section)"


def _unusable(path: Path, problem: str, fix: str = _RESTORE) -> StoreUnusable:
    return StoreUnusable(f"the store {path} {problem}; nothing was changed", hint=f"Fix: {fix}.", path=str(path))


def inspect_file(path: Path) -> str | None:
    """What is wrong with the SQLite file at `path` from its size and header alone (None: nothing seen), without
    opening it: a zero-byte file, a file that is not SQLite, a file shorter than its header says."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is empty (0 bytes): it was truncated or never written"
    if not header.startswith(_HEADER):
        start = header[:16].decode("utf-8", "replace").strip() or repr(header[:16])
        return f"is not a SQLite database (it starts with {start[:24]!r})"
    if len(header) < 100:
        return f"is truncated ({size} bytes, shorter than a SQLite header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return "is corrupt (its header holds no valid page size)"
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    if size % page_size or (header_valid and pages and size < pages * page_size):
        expected = f"{pages * page_size} bytes" if header_valid and pages else f"a multiple of {page_size} bytes"
        return f"is truncated ({size} bytes where its header says {expected})"
    return None


def file_error(path: Path, exc: sqlite3.Error) -> BaseException:
    """The StoreUnusable for an error about the file itself (locked, read-only, corrupt, unopenable); any other
    error (a constraint, a bug in a statement) is returned as it is."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return exc
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return _unusable(
            path,
            f"is locked by another process ({text})",
            "wait for the other process to finish (`fuser` or `lsof` names it), then run the command again",
        )
    if "readonly" in lowered or "read-only" in lowered:
        return _unusable(
            path,
            f"is read-only here ({text})",
            "run this command as a user who may write the workspace, or on a writable copy; reading commands "
            "(runs, show, clients, leads list, failures, health) work on a read-only workspace",
        )
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return _unusable(path, f"is corrupt ({text})")
    if "unable to open" in lowered or "disk i/o" in lowered:
        return _unusable(path, f"cannot be opened ({text})", "check the file's permissions and the disk")
    if "disk is full" in lowered or "database or disk is full" in lowered:
        return _unusable(path, f"cannot be written: {text}", "free disk space, then run the command again")
    return exc


def _writable(path: Path) -> bool:
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _create(path: Path, migrations: list[str]) -> None:
    """Create a new store file atomically: built under a temporary name, then linked into place, so no process
    ever sees a half-made (zero-byte) store."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        _migrate(conn, path, migrations)
    finally:
        conn.close()
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def _migrate(conn: sqlite3.Connection, path: Path, migrations: list[str]) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise _unusable(
            path, "is a SQLite database but not a leadkit store", "point LEADKIT_HOME at a leadkit workspace"
        )
    if version < len(migrations):
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(migrations)):
                for statement in migrations[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(migrations)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    elif version > len(migrations):
        raise ConfigError(
            f"{path} has schema version {version}, newer than this leadkit knows ({len(migrations)})",
            hint="Upgrade leadkit (make setup) or point LEADKIT_HOME at another workspace.",
        )


def _connect(path: Path, migrations: list[str], *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the store file at `path`, checked before use: a file that is empty, not SQLite,
    truncated, corrupt or locked is a StoreUnusable naming it, and nothing is written to it. A missing file is
    created (atomically) unless `read_only`. A read-only connection is used when asked for or when the file
    cannot be written here (a read-only workspace); it migrates nothing, except that an older schema is brought
    forward first when the file is writable."""
    if not path.exists():
        if read_only:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _migrate(conn, path, migrations)  # an empty store of the right shape: nothing there yet
            return conn
        if not _writable(path):
            raise _unusable(
                path, "does not exist and cannot be created here (read-only)", "make the workspace writable"
            )
        try:
            _create(path, migrations)
        except sqlite3.Error as exc:
            raise file_error(path, exc) from None
    problem = inspect_file(path)
    if problem is not None:
        raise _unusable(path, problem)
    writable = _writable(path)
    try:
        if not writable:
            conn = _open_read_only(path, migrations, writable)
        elif read_only:
            # a connection that may not write (query_only) but, unlike mode=ro, can tidy the -wal and -shm files
            # away when it closes, so a reading command leaves the workspace as it found it
            conn = sqlite3.connect(path, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            _migrate(conn, path, migrations)
            conn.execute("PRAGMA query_only = 1")
        else:
            conn = sqlite3.connect(path, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            _migrate(conn, path, migrations)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise file_error(path, exc) from None
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(WRITE_BUSY_TIMEOUT_S * 1000)}")
    return conn


def _open_read_only(path: Path, migrations: list[str], writable: bool) -> sqlite3.Connection:
    from urllib.parse import quote

    uri = f"file:{quote(str(path))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.OperationalError as exc:
        if writable or "unable to open" not in str(exc):
            conn.close()
            raise
        # a WAL store on a read-only file system without its -shm file: read it as an immutable file
        conn.close()
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < len(migrations) and writable:
        conn.close()
        upgrade = sqlite3.connect(path, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            _migrate(upgrade, path, migrations)
        finally:
            upgrade.close()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=OPEN_BUSY_TIMEOUT_S, isolation_level=None)
    elif version != len(migrations):
        _migrate(conn, path, migrations)  # raises for a foreign or newer file; an older one cannot be read here
    conn.close()
    return sqlite3.connect(
        f"{uri}?mode=ro" if writable or os.path.exists(f"{path}-shm") else f"{uri}?immutable=1",
        uri=True,
        timeout=OPEN_BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
    )


class _Db:
    """One connection with a lock and a write-transaction helper; SQLite errors come out as StoreUnusable
    naming the file. With a `pool`, the connection is opened on first use and may be closed by the pool when it
    has too many open; the next use opens it again."""

    def __init__(
        self, path: Path, migrations: list[str], pool: _Pool | None = None, *, read_only: bool = False
    ) -> None:
        self.path = path
        self.migrations = migrations
        self.read_only = read_only
        self.lock = threading.RLock()
        self.pool = pool
        self._conn: sqlite3.Connection | None = (
            None if pool is not None else _connect(path, migrations, read_only=read_only)
        )

    @property
    def conn(self) -> sqlite3.Connection:
        with self.lock:
            if self._conn is None:
                try:
                    self._conn = _connect(self.path, self.migrations, read_only=self.read_only)
                except sqlite3.Error as exc:
                    raise ConfigError(
                        f"cannot open the lead base {self.path}: {exc}",
                        hint="Restore the file from a backup, or move it away to start that client's leads afresh.",
                        path=str(self.path),
                    ) from exc
                opened = True
            else:
                opened = False
            conn = self._conn
        if self.pool is not None:
            self.pool.used(self, opened)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise file_error(self.path, exc) from None
            try:
                yield conn
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise file_error(self.path, exc) from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise file_error(self.path, exc) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise file_error(self.path, exc) from None

    def close(self) -> None:
        with self.lock:
            self._close()

    def try_close(self) -> bool:
        """Close unless another thread is using the connection (then False, and nothing changes)."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            self._close()
        finally:
            self.lock.release()
        return True

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: How many client lead bases keep an open connection at once (each holds up to 3 files: db, -wal, -shm).
LEAD_BASE_CONNECTIONS = 32


class _Pool:
    """The lead bases' open connections, least recently used closed first beyond `size`."""

    def __init__(self, size: int = LEAD_BASE_CONNECTIONS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._open: OrderedDict[Path, _Db] = OrderedDict()

    def used(self, db: _Db, opened: bool) -> None:
        with self._lock:
            if opened or db.path in self._open:
                self._open[db.path] = db
                self._open.move_to_end(db.path)
            victims = []
            while len(self._open) > self.size:
                victims.append(self._open.popitem(last=False)[1])
        busy = [v for v in victims if not v.try_close()]  # never wait for a base another thread is using
        if busy:
            with self._lock:
                for victim in busy:
                    self._open[victim.path] = victim
                    self._open.move_to_end(victim.path, last=False)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        with self._lock:
            victims = list(self._open.values())
            self._open.clear()
        for victim in victims:
            victim.close()


def _client_from_row(row: sqlite3.Row) -> Client:
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


def _run_from_row(row: sqlite3.Row) -> Run:
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


def _client_run_from_row(row: sqlite3.Row) -> ClientRun:
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


def _event_from_row(row: sqlite3.Row) -> RunEvent:
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


def _failure_from_row(row: sqlite3.Row) -> Failure:
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


def _lease_from_row(row: sqlite3.Row) -> Lease:
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


def _summary_to_json(summary: LeadSummary) -> str:
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


def _summary_from_json(client_id: str, text: str) -> LeadSummary:
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


class SQLiteLeadBase:
    """One client's leads in `<home>/bases/<client id>.sqlite`. After each write its `LeadSummary` is handed to
    `on_write` (the master store keeps it)."""

    def __init__(
        self,
        path: Path,
        client_id: str,
        pool: _Pool | None = None,
        *,
        read_only: bool = False,
        on_write: Callable[[LeadSummary], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._db = _Db(path, BASE_MIGRATIONS, pool if pool is not None else _Pool(), read_only=read_only)
        self._on_write = on_write

    def summary(self, now: datetime | None = None) -> LeadSummary:
        """The client's `LeadSummary` as its leads are now (one read of five columns of every lead)."""

        now = now or datetime.now(UTC)
        first_day = now.astimezone(UTC).date() - timedelta(days=SUMMARY_DAYS - 1)
        by_status: Counter[str] = Counter()
        posts: Counter[str] = Counter()
        due_now = 0
        next_checks: list[datetime] = []
        checked: dict[str, list[datetime]] = {"Done": [], "No Posts": [], "Processing": []}
        rows = self._db.query(
            "SELECT profile_url, harvest_status, posts_actioned, next_check_at, last_check_at, posts_found FROM leads"
        )
        for url, status, actioned, next_at, last_at, found in rows:
            by_status[status or ""] += 1
            last = parse_ts(last_at)
            if last is not None and found and last.astimezone(UTC).date() >= first_day:
                posts[last.astimezone(UTC).date().isoformat()] += int(found)
            if actioned or not is_valid_profile_url(url):
                continue
            nxt = parse_ts(next_at)
            if status in ("Done", "No Posts") and nxt is not None:
                next_checks.append(nxt)
            elif status in checked and last is not None:
                checked[status].append(last)
            else:  # blank, Pending, or never checked: due whatever the time
                due_now += 1
        lengths = {"next": len(next_checks), **{k: len(v) for k, v in checked.items()}}
        return LeadSummary(
            client_id=self.client_id,
            by_status=dict(by_status),
            due_now=due_now,
            next_checks=tuple(sorted(next_checks)[:SUMMARY_TIMES]),
            checked={k: tuple(sorted(v)[:SUMMARY_TIMES]) for k, v in checked.items()},
            lengths=lengths,
            posts_by_day=dict(posts),
            written_at=now,
        )

    def _written(self) -> None:
        if self._on_write is not None:
            self._on_write(self.summary())

    def close(self) -> None:
        self._db.close()

    def _lead(self, row: sqlite3.Row) -> Lead:
        status = row["harvest_status"]
        return Lead(
            lead_id=row["lead_id"],
            profile_url=row["profile_url"],
            name=row["name"],
            company=row["company"],
            harvest_status=HarvestStatus(status) if status else None,
            posts_found=row["posts_found"],
            last_check_at=parse_ts(row["last_check_at"]),
            last_error=row["last_error"],
            posts_actioned=row["posts_actioned"],
            harvest_run_id=row["harvest_run_id"],
            posts=json.loads(row["posts"]),
            created_at=parse_ts(row["created_at"]),
            next_check_at=parse_ts(row["next_check_at"]),
        )

    def due_leads(self, policy: DuePolicy, now: datetime, *, limit: int) -> list[Lead]:
        """Leads due for harvesting (`DuePolicy`), never checked or Pending first (newest first), then re-checks
        (longest due first); at most `limit`, read `limit` rows at a time (a lead whose URL is not a LinkedIn
        profile is passed over)."""

        if limit <= 0:
            return []
        sql = (
            "SELECT *, CASE WHEN harvest_status IS NULL OR harvest_status = ? THEN 0 ELSE 1 END AS rank, "
            "COALESCE(next_check_at, last_check_at, '') AS due FROM leads "
            "WHERE (posts_actioned IS NULL OR posts_actioned = 0) AND ("
            "harvest_status IS NULL OR harvest_status = ? "
            "OR (harvest_status = ? AND (last_check_at IS NULL OR last_check_at < ?)) "
            "OR (harvest_status = ? AND (next_check_at <= ? OR (next_check_at IS NULL AND "
            "(last_check_at IS NULL OR last_check_at <= ?)))) "
            "OR (harvest_status = ? AND (next_check_at <= ? OR (next_check_at IS NULL AND "
            "(last_check_at IS NULL OR last_check_at <= ?))))) "
            "ORDER BY rank, CASE WHEN rank = 0 THEN created_at END DESC, due, lead_id LIMIT ? OFFSET ?"
        )
        base = [
            HarvestStatus.PENDING.value,
            HarvestStatus.PENDING.value,
            HarvestStatus.PROCESSING.value,
            ts(now - policy.processing_stale_after),
            HarvestStatus.DONE.value,
            ts(now),
            ts(now - policy.refresh_after),
            HarvestStatus.NO_POSTS.value,
            ts(now),
            ts(now - policy.no_posts_recheck),
        ]
        out: list[Lead] = []
        offset = 0
        while len(out) < limit:
            rows = self._db.query(sql, [*base, limit, offset])
            out += [lead for lead in map(self._lead, rows) if is_valid_profile_url(lead.profile_url)]
            if len(rows) < limit:
                break
            offset += limit
        return out[:limit]

    def posts_found_since(self, since: datetime) -> int:
        """Posts Found summed over the leads last checked at or after `since`."""
        rows = self._db.query(
            "SELECT COALESCE(SUM(posts_found), 0) AS n FROM leads WHERE last_check_at >= ?", (ts(since),)
        )
        return int(rows[0]["n"])

    def list_leads(self, *, status: str | None = None, limit: int | None = None) -> list[Lead]:
        sql = "SELECT * FROM leads"
        params: list[Any] = []
        if status in ("", "blank"):
            sql += " WHERE harvest_status IS NULL"
        elif status is not None:
            sql += " WHERE harvest_status = ?"
            params.append(HarvestStatus(status).value)
        sql += " ORDER BY created_at DESC, lead_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._lead(r) for r in self._db.query(sql, params)]

    def count_leads_by_status(self) -> dict[str, int]:
        rows = self._db.query("SELECT harvest_status, COUNT(*) FROM leads GROUP BY harvest_status")
        return {str(r[0] or ""): int(r[1]) for r in rows}

    def get_lead(self, lead_id: str) -> Lead:
        rows = self._db.query("SELECT * FROM leads WHERE lead_id = ?", (lead_id,))
        if not rows:
            raise MissingRecordError(f"lead {lead_id!r} not found in the base of client {self.client_id!r}")
        return self._lead(rows[0])

    def import_leads(self, leads: Sequence[NewLead]) -> ImportResult:

        created = existing = 0
        now = datetime.now(UTC)
        with self._db.write() as conn:
            next_id = conn.execute("SELECT COUNT(*) FROM leads").fetchone()[0] + 1
            for lead in leads:
                key = normalize_profile_url(lead.profile_url)
                cur = conn.execute(
                    "INSERT INTO leads (lead_id, profile_url, url_key, name, company, posts, created_at) "
                    "VALUES (?, ?, ?, ?, ?, '[]', ?) ON CONFLICT(url_key) DO NOTHING",
                    (f"lead{next_id:06d}", lead.profile_url, key, lead.name, lead.company, ts(now)),
                )
                if cur.rowcount:
                    created += 1
                    next_id += 1
                else:
                    existing += 1
        if created:
            self._written()
        return ImportResult(created=created, existing=existing)

    _COLUMNS = {
        "harvest_status",
        "posts_found",
        "last_check_at",
        "last_error",
        "posts_actioned",
        "harvest_run_id",
        "posts",
        "name",
        "company",
        "next_check_at",
    }

    def update_leads(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        for fields in updates.values():
            unknown = set(fields) - self._COLUMNS
            if unknown:
                raise DataError(f"cannot update lead fields {sorted(unknown)}; accepted: {sorted(self._COLUMNS)}")
        with self._db.write() as conn:
            for lead_id, fields in updates.items():
                if not fields:
                    continue
                values: list[Any] = []
                for name, value in fields.items():
                    if name == "posts":
                        value = json.dumps(value)
                    elif name in ("last_check_at", "next_check_at"):
                        value = ts(value)
                    elif name == "harvest_status" and value is not None:
                        value = HarvestStatus(value).value
                    values.append(value)
                assignments = ", ".join(f"{name} = ?" for name in fields)
                cur = conn.execute(f"UPDATE leads SET {assignments} WHERE lead_id = ?", [*values, lead_id])
                if cur.rowcount == 0:
                    raise MissingRecordError(
                        f"lead {lead_id!r} not found in the base of client {self.client_id!r}; nothing was written"
                    )
        self._written()


class SQLiteStore:
    """The master store in `<home>/leadkit.sqlite`. `read_only` opens every file for reading only (what the
    reading commands do), so they also work on a read-only workspace."""

    def __init__(self, home: Path, *, read_only: bool = False) -> None:
        self.home = Path(home)
        self.read_only = read_only
        self.url = f"sqlite://{self.home}"
        self._db: _Db | None = None
        self._bases: dict[str, SQLiteLeadBase] = {}
        self._pool = _Pool()

    @property
    def db(self) -> _Db:
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
        self._db = _Db(master, MASTER_MIGRATIONS, read_only=self.read_only)

    def close(self) -> None:
        self._pool.close()
        self._bases.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    # clients ---------------------------------------------------------------------------------
    def list_clients(self) -> list[Client]:
        return [_client_from_row(r) for r in self.db.query("SELECT * FROM clients ORDER BY client_id")]

    def get_client(self, client_id: str) -> Client:
        rows = self.db.query("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        if not rows:
            raise MissingRecordError(
                f"no client {client_id!r} in {self.url}",
                hint="List the clients with `leadkit clients`; add one with `leadkit clients add`.",
            )
        return _client_from_row(rows[0])

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
                    (summary.client_id, _summary_to_json(summary), ts(summary.written_at)),
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
        return {r["client_id"]: _summary_from_json(r["client_id"], r["summary"]) for r in rows}

    def lead_base(self, client: Client) -> SQLiteLeadBase:
        from leadkit.runids import validate_client_id

        client_id = validate_client_id(client.client_id)
        base = self._bases.get(client_id)
        if base is None:
            self.init()
            path = self.home / BASES_DIR / f"{client_id}.sqlite"
            if not self.read_only and not path.parent.is_dir() and _writable(path.parent):
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
        return _run_from_row(rows[0]) if rows else None

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
        return [_run_from_row(r) for r in rows]

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
                results.append((_client_run_from_row(row), created))
            if opened is not None:
                self._insert_events(conn, [opened(record, created) for record, created in results])
        return results

    def write_left_save(self, run_id: str, client_id: str) -> bool:
        """Every save is written at once: nothing is ever left."""
        return False

    def get_client_run(self, run_id: str, client_id: str) -> ClientRun | None:
        rows = self.db.query("SELECT * FROM client_runs WHERE run_id = ? AND client_id = ?", (run_id, client_id))
        return _client_run_from_row(rows[0]) if rows else None

    def save_client_run(self, record: ClientRun, events: Sequence[RunEvent] = ()) -> None:
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
        return [_client_run_from_row(r) for r in self.db.query(sql, params)]

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
                out[row["client_id"]] = _client_run_from_row(row)
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
        return [_event_from_row(r) for r in self.db.query(f"SELECT * FROM events{where} ORDER BY at, id", params)]

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
        return [_failure_from_row(r) for r in self.db.query(sql, params)]

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
        return _lease_from_row(rows[0]) if rows else None

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            current = _lease_from_row(row) if row else None
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


def workspace_exists(home: Path) -> bool:
    return (Path(home) / MASTER_FILE).exists()


def is_workspace_or_empty(home: Path) -> bool:
    """A folder leadkit may fill: missing, empty, or already a leadkit workspace."""
    home = Path(home)
    if not home.exists():
        return True
    if not home.is_dir():
        return False
    entries = [e for e in os.listdir(home) if e not in ("README.md", ".gitkeep")]
    return not entries or workspace_exists(home)


def check_file(path: Path) -> None:
    """A StoreUnusable when the SQLite file at `path` is not sound: the header checks, then SQLite's
    `PRAGMA quick_check`, on a read-only connection (nothing is written)."""
    problem = inspect_file(path)
    if problem is not None:
        raise _unusable(path, problem)
    from urllib.parse import quote

    try:
        if _writable(path):
            conn = sqlite3.connect(path, timeout=OPEN_BUSY_TIMEOUT_S)
            conn.execute("PRAGMA query_only = 1")
        else:
            shm = os.path.exists(f"{path}-shm")
            conn = sqlite3.connect(
                f"file:{quote(str(path))}?{'mode=ro' if shm else 'immutable=1'}", uri=True, timeout=OPEN_BUSY_TIMEOUT_S
            )
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        error = file_error(path, exc)
        raise (error if isinstance(error, StoreUnusable) else _unusable(path, f"failed its check: {exc}")) from None
    if [tuple(r) for r in rows] != [("ok",)]:
        raise _unusable(path, f"is corrupt (SQLite's quick check: {'; '.join(str(r[0]) for r in rows[:3])})")
