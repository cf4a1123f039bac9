"""The SQLite files of a workspace: `<home>/leadkit.sqlite` (the master records) and `<home>/bases/<client id>.sqlite`
(each client's leads). Opening (WAL mode, forward migrations, read-only opens), a file's soundness check, one
connection with its lock and write transactions (`Db`), and the pool that bounds the lead bases' open connections."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leadkit.errors import ConfigError, StoreUnusable

MASTER_FILE = "leadkit.sqlite"
BASES_DIR = "bases"

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


def can_write(path: Path) -> bool:
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
        if not can_write(path):
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
    writable = can_write(path)
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


class Db:
    """One connection with a lock and a write-transaction helper; SQLite errors come out as StoreUnusable
    naming the file. With a `pool`, the connection is opened on first use and may be closed by the pool when it
    has too many open; the next use opens it again."""

    def __init__(self, path: Path, migrations: list[str], pool: Pool | None = None, *, read_only: bool = False) -> None:
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


class Pool:
    """The lead bases' open connections, least recently used closed first beyond `size`."""

    def __init__(self, size: int = LEAD_BASE_CONNECTIONS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._open: OrderedDict[Path, Db] = OrderedDict()

    def used(self, db: Db, opened: bool) -> None:
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
        if can_write(path):
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
