"""One read for every viewer: the dashboard server keeps one cached read per view and inputs (filters, page,
open run), shared by every browser session it serves, so the store is read at most once per interval however
many tabs are open.

A cached read is reused while it is younger than the interval (the refresh interval). Once older, the store's
change version is asked first, and the read is made again only when something changed: an idle dashboard reads
nothing but that version, and a run that ends while tabs are open is shown by the next refresh.
- SQLite (`ChangeVersions`): the database's data version, one query; it moves with a write by any process.
- Airtable: no request at all. The version is the workspace's local change journal (the usage tally's count of
  write requests this host's processes sent, `leadkit.store.airtable.usage.local_writes`) and the number of
  `LEADKIT_DASHBOARD_SYNC` periods (default 900 s) passed: a write made on this host shows within one refresh,
  one made elsewhere (another host, a hand edit in Airtable) within the sync interval.
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

from leadkit.errors import ConfigError
from leadkit.store.airtable.usage import local_writes
from leadkit.store.base import ChangeVersions

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
    """The cached reads of one workspace, shared by every session of the server (thread-safe). `home`: the
    workspace's folder (an Airtable store's change journal is there); `sync_s`: its sync interval."""

    def __init__(self, store: Any, home: Path | None = None, sync_s: float = AIRTABLE_SYNC_S) -> None:
        self.store = store
        self.home = home
        self.sync_s = sync_s
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        #: Reads made (not served from the cache), by key: what the tests count.
        self.reads: dict[Hashable, int] = {}

    def _version(self) -> Any:
        if isinstance(self.store, ChangeVersions):
            return self.store.change_version()
        if self.home is not None and is_airtable(self.store):
            return local_writes(self.home), int(time.time() // self.sync_s)
        return None

    def read(
        self, key: Hashable, interval_s: float, fetch: Callable[[], Any], *, fresh: bool = False, first: bool = False
    ) -> Any:
        """What `fetch()` returns for `key`, read at most once per `interval_s` and only when the store changed
        (when it can tell); `fresh` reads now whatever the cache holds (a viewer's own action); `first` (a page
        just opened or reloaded) skips the interval on a store that can tell what changed, so a reload shows what
        the store holds. Blocks while another thread reads the same key, then serves that read. An error is
        raised, not cached."""
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
_SHARED_LOCK = threading.Lock()


def shared_reads(ws: Any) -> SharedReads:
    """The shared reads of workspace `ws` (one per workspace object in this process)."""
    with _SHARED_LOCK:
        shared = _SHARED.get(ws)
        if shared is None:
            home = Path(ws.home) if getattr(ws, "home", None) is not None else None
            shared = _SHARED[ws] = SharedReads(ws.store, home, sync_interval(ws.store, 0.0))
        return shared
