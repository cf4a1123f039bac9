"""One read for every viewer: the dashboard server keeps one cached read per view and inputs (filters, page,
open run), shared by every browser session it serves, so the store is read at most once per interval however
many tabs are open.

A cached read is reused while it is younger than the interval (the refresh interval). Once older, the store's
change version is asked first, and the read is made again only when something changed: an idle dashboard reads
nothing but that version, and a run that ends while tabs are open is shown by the next refresh.
- SQLite (`ChangeVersions`): the database's data version, one query; it moves with a write by any process.
- Airtable: the views read the workspace's local mirror (`leadkit.store.mirror`), a SQLite store kept
  by a `MirrorKeeper` thread, and the version is the mirror's data version (one SQLite query, no request). The
  keeper reads only what changed: the tables this host's processes wrote (the usage tally's journal), by the
  next poll (~2 s), so a write made here shows within one refresh; the tables an open view reads, every
  `LEADKIT_DASHBOARD_SYNC` period (default 900 s), one request each when nothing changed, so a change made
  elsewhere shows within the sync interval. A view names the tables it reads (`read(..., tables=...)`).
Readers of the same key wait for the one read in flight instead of making their own.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadkit import MIRRORED_TABLES, AirtableMirror, ChangeVersions, ConfigError, MirrorKeeper, Workspace

#: How many cached reads a server keeps (the least recently used go first).
MAX_ENTRIES = 128
#: Default of LEADKIT_DASHBOARD_SYNC (seconds): how often an Airtable workspace is read again.
AIRTABLE_SYNC_S = 900.0
#: A read younger than this share of the interval is fresh (periodic refreshes of one tab come a little early
#: or late; without the margin one of them would find the read just too young and the view would skip a turn).
FRESH_SHARE = 0.9


def is_airtable(store: Any) -> bool:
    return str(getattr(store, "url", "")).startswith("airtable://")


def sync_interval(store: Any, refresh_s: float) -> float:
    """Seconds between reads of an unchanged view made for changes made elsewhere: on a store whose reads are
    paid in requests (Airtable) LEADKIT_DASHBOARD_SYNC (default 900 s), else the refresh interval."""
    if isinstance(store, ChangeVersions) or not is_airtable(store):
        return refresh_s
    text = os.environ.get("LEADKIT_DASHBOARD_SYNC", "").strip()
    if not text:
        return max(refresh_s, AIRTABLE_SYNC_S)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(
            f"LEADKIT_DASHBOARD_SYNC={text!r} is not a number of seconds above 0",
            hint="Set LEADKIT_DASHBOARD_SYNC to seconds between the dashboard's reads of Airtable, e.g. 900.",
        )
    return max(refresh_s, value)


@dataclass
class _Entry:
    value: Any
    at: float  # monotonic time the read started
    version: Any


class SharedReads:
    """The cached reads of one workspace, shared by every session of the server (thread-safe). `store` is what
    the views read (on Airtable: the mirror's store, kept by `keeper`); `sync_s`: the sync interval."""

    def __init__(self, store: Any, sync_s: float = AIRTABLE_SYNC_S, *, keeper: MirrorKeeper | None = None) -> None:
        self.store = store
        self.sync_s = sync_s
        self.keeper = keeper
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        #: Reads made (not served from the cache), by key: what the tests count.
        self.reads: dict[Hashable, int] = {}

    def _version(self) -> Any:
        if isinstance(self.store, ChangeVersions):
            return self.store.change_version()
        return None

    def prepare(self, tables: tuple[str, ...] = MIRRORED_TABLES, *, leads: bool = False) -> None:
        """Before a read of `tables` (and `leads`) on a mirrored workspace: see `MirrorKeeper.want`."""
        if self.keeper is not None:
            self.keeper.want(tables, leads=leads)

    def sync_now(self, tables: tuple[str, ...]) -> None:
        """A viewer's own action changed the store: read `tables` of a mirrored workspace again now."""
        if self.keeper is not None:
            self.keeper.mirror.sync_tables([t for t in tables if self.keeper.mirror.synced(t) is not None])

    def read(
        self,
        key: Hashable,
        interval_s: float,
        fetch: Callable[[], Any],
        *,
        fresh: bool = False,
        first: bool = False,
        tables: tuple[str, ...] = MIRRORED_TABLES,
        leads: bool = False,
    ) -> Any:
        """What `fetch()` returns for `key`, read at most once per `interval_s` and only when the store changed
        (when it can tell); `fresh` reads now whatever the cache holds (a viewer's own action); `first` (a page
        just opened or reloaded) skips the interval on a store that can tell what changed, so a reload shows what
        the store holds. Blocks while another thread reads the same key, then serves that read. An error is
        raised, not cached. On a mirrored workspace, `tables` (and `leads`: the clients' lead summaries) are what
        `fetch` reads: the keeper reads any of them not read within the sync interval first (`MirrorKeeper.want`)."""
        if fresh:
            self.sync_now(tables)
        self.prepare(tables, leads=leads)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            now = time.monotonic()
            with self._lock:
                entry = self._entries.get(key)
            versioned = isinstance(self.store, ChangeVersions)
            young = entry is not None and now - entry.at < interval_s * FRESH_SHARE
            if entry is not None and not fresh and young and not (first and versioned):
                return entry.value
            version = self._version()
            if entry is not None and not fresh and version is not None and version == entry.version:
                entry.at = now  # nothing was written since: the cached read is still what the store holds
                return entry.value
            value = fetch()
            with self._lock:
                self._entries[key] = _Entry(value, now, version)
                self._entries.move_to_end(key)
                self.reads[key] = self.reads.get(key, 0) + 1
                while len(self._entries) > MAX_ENTRIES:
                    old, _ = self._entries.popitem(last=False)
                    self._key_locks.pop(old, None)
            return value


_SHARED: weakref.WeakKeyDictionary[Any, SharedReads] = weakref.WeakKeyDictionary()
_READ_WS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_reads(ws: Any) -> SharedReads:
    """The shared reads of workspace `ws` (one per workspace object in this process). On Airtable this starts
    the workspace's mirror and its keeper (`read_workspace` is what the views read)."""
    with _SHARED_LOCK:
        shared = _SHARED.get(ws)
        if shared is None:
            sync_s = sync_interval(ws.store, 0.0)
            home = getattr(ws, "home", None)
            if is_airtable(ws.store) and home is not None:
                mirror = AirtableMirror(ws.store, Path(home))
                keeper = MirrorKeeper(mirror, Path(home), sync_s).start()
                weakref.finalize(ws, keeper.stop)
                _READ_WS[ws] = Workspace(ws.settings, mirror.store)
                shared = SharedReads(mirror.store, sync_s, keeper=keeper)
            else:
                shared = SharedReads(ws.store, sync_s)
            _SHARED[ws] = shared
        return shared


def read_workspace(ws: Any) -> Any:
    """The workspace the views read: on Airtable one over the local mirror (same settings and home), else `ws`.
    What a viewer does (an auth check, a re-run, a triage) goes to `ws` itself."""
    shared_reads(ws)
    with _SHARED_LOCK:
        return _READ_WS.get(ws, ws)
