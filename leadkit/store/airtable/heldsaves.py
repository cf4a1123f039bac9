"""Held progress saves of `AirtableStore` (mixed into it): a Running ClientRun's progress save waits up to
AIRTABLE_PROGRESS_SAVE_S for the next one, kept meanwhile in a file in the workspace (`held-saves/`), so a process
killed before writing it loses none of it: whoever settles its record writes it (`write_left_save`). Every held
save is written at exit."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pyairtable import Table

from leadkit.config import Settings
from leadkit.errors import (
    LeadkitError,
)
from leadkit.models import (
    ClientRun,
    ClientRunStatus,
    RunEvent,
)
from leadkit.store.airtable.codecs import (
    Fields,
    Record,
    client_run_fields,
    event_dict,
    event_from_dict,
)
from leadkit.store.schema import (
    ClientRunResults,
)

log = logging.getLogger(__name__)

#: Where a held progress save waits, under the workspace (LEADKIT_HOME): one file per ClientRun, gone once written.
HELD_DIR = "held-saves"
#: Stores that held a save at some point: written at exit.
_HOLDING: weakref.WeakSet[HeldSaves] = weakref.WeakSet()


@atexit.register
def _write_every_held_save() -> None:
    for store in list(_HOLDING):
        try:
            store.write_held()
        except LeadkitError as exc:
            log.warning("a held ClientRun save could not be written at exit: %s", exc.message)


class HeldSaves:
    """The held progress saves of `AirtableStore` (see the module docstring)."""

    settings: Settings
    base_id: str
    _table: Callable[[str], Table]
    _events: dict[str, list[dict[str, Any]]]
    _save_lock: threading.RLock
    _held: dict[tuple[str, str], tuple[ClientRun, list[RunEvent]]]
    _held_timer: threading.Timer | None
    _client_run_record: Callable[[str, str], Record | None]
    _write_client_run: Callable[[ClientRun, Sequence[RunEvent]], None]
    _append_events: Callable[[str, Sequence[RunEvent], Fields], list[RunEvent]]
    _add_table_events: Callable[[Sequence[RunEvent]], None]

    def _write_at_exit(self) -> None:
        """Write this store's held saves when the process exits (if nothing wrote them before)."""
        _HOLDING.add(self)

    def _spool_path(self, run_id: str, client_id: str) -> Path:
        name = f"{quote(run_id, safe='')}--{quote(client_id, safe='')}.json"
        return Path(self.settings.leadkit_home) / HELD_DIR / self.base_id / name

    def _spool(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Keep a held save in the workspace until it is written (a file replaced whole, never half-written).
        A workspace folder that does not exist is not created for it: the save is then held in memory only."""
        path = self._spool_path(record.run_id, record.client_id)
        data = {
            "record_id": record.record_id,
            "fields": client_run_fields(record),
            "events": [event_dict(e) for e in events],
        }
        if not Path(self.settings.leadkit_home).is_dir():
            log.debug(
                "no workspace folder: the held save of %s-%s is kept in memory only", record.run_id, record.client_id
            )
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # the save is still held in memory and written by the timer
            log.warning("cannot keep the held save of %s-%s in %s: %s", record.run_id, record.client_id, path, exc)

    def _unspool(self, key: tuple[str, str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._spool_path(*key).unlink()

    def write_left_save(self, run_id: str, client_id: str) -> bool:
        """Write the progress save that a process killed before writing it left in the workspace for this
        ClientRun (see `save_client_run`), when the record is still Running; events it already wrote are not
        added twice. True when something was written. Call it only for a record whose writer is gone."""
        key = (run_id, client_id)
        if key in self._held:
            self.write_held()
        path = self._spool_path(run_id, client_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("the held save in %s cannot be read (%s); it is left there", path, exc)
            return False
        stored = self._client_run_record(run_id, client_id)
        if stored is None or stored["fields"].get(ClientRunResults.STATUS) != ClientRunStatus.RUNNING.value:
            path.unlink(missing_ok=True)  # nothing to add to: the record ended (its end has everything)
            return False
        known = self._events.get(stored["id"], [])
        fresh = [e for e in data.get("events") or [] if e not in known]
        fields: Fields = dict(data.get("fields") or {})
        fields[ClientRunResults.STATUS] = ClientRunStatus.RUNNING.value
        spill = self._append_events(stored["id"], [event_from_dict(e, run_id, client_id) for e in fresh], fields)
        self._table(ClientRunResults.TABLE).update(stored["id"], fields)
        if ClientRunResults.EVENTS_JSON in fields:
            self._events[stored["id"]] = json.loads(fields[ClientRunResults.EVENTS_JSON])
        if spill:
            self._add_table_events(spill)
        path.unlink(missing_ok=True)
        log.info("wrote the progress of ClientRun %s-%s that its killed process held", run_id, client_id)
        return True

    def write_held(self) -> None:
        """Write the progress saves this store is holding (see `save_client_run`)."""
        with self._save_lock:
            if self._held_timer is not None:
                self._held_timer.cancel()
                self._held_timer = None
            held, self._held = self._held, {}
            try:
                while held:
                    key, (record, events) = next(iter(held.items()))
                    self._write_client_run(record, events)
                    del held[key]
                    self._unspool(key)
            finally:
                for key, value in held.items():  # not written: kept for the next save or read
                    self._held.setdefault(key, value)

    def _write_held_quietly(self) -> None:
        with self._save_lock:
            self._held_timer = None
        try:
            self.write_held()
        except LeadkitError as exc:
            log.warning("a held ClientRun save failed (%s); it is written with the next save", exc.message)
