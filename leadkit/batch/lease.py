"""The batch lease: one batch per stream, a lease row in the store with a heartbeat.

A holder is a process: host, PID and the process's start time (psutil), so a PID that the system reused for
another process (a container restart reuses low PIDs) is not the holder. A lease is taken over when its heartbeat
is older than its TTL, and on this host also at once when its process is gone or is another process. Otherwise it
is held: `LeaseHeld` (exit 3) always names a live holder with a fresh heartbeat: which batch (host, process,
run), since when it holds the lease and its last heartbeat. A turn-away is never silent for long: when the holder
has kept the stream for longer than LEADKIT_LEASE_HELD_ALERT_AFTER (default 2h), so that every batch of the
stream since has been turned away, an alert (kind `lease_held`) is recorded and the batch exits 2
(`LeaseHeldTooLong`), which a scheduler counts as a failure.

A batch takes the lease of every stream its clients belong to, in stream order (`StreamLeases`), so two batches
that share a stream never both run and no two wait on each other. A batch whose heartbeat swap fails has lost
its lease: `lost` says to whom, and the batch starts no further client.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

import psutil
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadkit.alerts.engine import Notice, alert_settings, fresh, records_of, send
from leadkit.alerts.rules import lease_lost, safely
from leadkit.durations import format_duration, parse_duration
from leadkit.errors import LeaseHeld
from leadkit.models import Lease, utcnow
from leadkit.streams import lease_name
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")

DEFAULT_TTL_S = 120.0
#: Two reads of one process's start time agree far better than this; a reused PID differs by much more.
START_TIME_TOLERANCE_S = 0.5


class LeaseSettings(BaseSettings):
    """The lease's settings from the environment (and `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    leadkit_lease_held_alert_after: str = Field(
        "2h",
        description="How long one batch may hold a stream's lease, turning the stream's other batches away, "
        "before a turned-away batch records an alert and exits 2 instead of 3.",
    )

    @field_validator("leadkit_lease_held_alert_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def held_alert_after(self) -> timedelta:
        return parse_duration(self.leadkit_lease_held_alert_after)


class LeaseHeldTooLong(LeaseHeld):
    """Turned away by a batch that has held the stream for longer than the alert threshold: exit 2."""

    exit_code = 2


def process_started(pid: int) -> float | None:
    """The start time of process `pid` (epoch seconds), or None when there is no such process."""
    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return 0.0  # it exists, but we may not look at it


def holder_gone(lease: Lease) -> str | None:
    """Why the holder of `lease` (on this host) is not alive, or None when it is."""
    started = process_started(lease.pid)
    if started is None:
        return f"process {lease.pid} no longer exists"
    if lease.process_started and started and abs(started - lease.process_started) > START_TIME_TOLERANCE_S:
        return (
            f"PID {lease.pid} is now another process (started {time.strftime('%H:%M:%S', time.gmtime(started))} UTC, "
            f"the holder started {time.strftime('%H:%M:%S', time.gmtime(lease.process_started))} UTC)"
        )
    return None


class BatchLease:
    """One stream's lease, held with a heartbeat thread."""

    def __init__(self, ws: Workspace, stream: int, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ws = ws
        self.stream = stream
        self.name = lease_name(stream)
        self.ttl_s = ttl_s
        self.current: Lease | None = None
        self.takeover_note: str | None = None
        #: Set when the heartbeat found the lease in other hands (or could not renew it within its TTL).
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: The run to name on the lease from the next heartbeat on (`set_run`).
        self._run_id = ""

    def _takeover_note(self, held: Lease, host: str) -> str | None:
        """Why `held` may be taken over, or None when its holder is alive and fresh."""
        age = (utcnow() - held.heartbeat_at).total_seconds()
        where = f"from {held.host} process {held.pid} (held since {held.acquired_at.isoformat(timespec='seconds')})"
        if age > held.ttl_s:
            return (
                f"took over the lease of stream {self.stream} {where}: its heartbeat is {age:.0f} s old, "
                f"past its TTL of {held.ttl_s:g} s"
            )
        if held.host == host:
            gone = holder_gone(held)
            if gone:
                return f"took over the lease of stream {self.stream} {where}: {gone}"
        return None

    def acquire(self, run_id: str = "") -> None:
        store = self.ws.store
        self._run_id = run_id
        host = socket.gethostname()
        started = process_started(os.getpid()) or 0.0
        for _ in range(5):
            now = utcnow()
            mine = Lease(self.name, host, os.getpid(), run_id, now, now, self.ttl_s, started)
            held = store.get_lease(self.name)
            note: str | None = None
            if held is not None:
                note = self._takeover_note(held, host)
                if note is None:
                    raise self._turned_away(held)
            if store.swap_lease(self.name, held, mine):
                self.current, self.takeover_note = mine, note
                if note:
                    log.warning(note)
                break
        else:
            raise LeaseHeld(f"could not take the lease {self.name}: it kept changing hands")
        self._thread = threading.Thread(target=self._beat, name=f"leadkit-lease-{self.stream}", daemon=True)
        self._thread.start()

    def _turned_away(self, held: Lease) -> LeaseHeld:
        """The error of a batch turned away by a live holder; past the threshold, an alert is recorded first."""
        now = utcnow()
        age = (now - held.heartbeat_at).total_seconds()
        held_for = max(timedelta(0), now - held.acquired_at)
        message = (
            f"another batch of stream {self.stream} is running: held by {held.host} process "
            f"{held.pid} since {held.acquired_at.isoformat(timespec='seconds')}"
            + (f" (run {held.run_id})" if held.run_id else "")
            + f", heartbeat {age:.0f} s ago (TTL {held.ttl_s:g} s); "
            f"batches of this stream have been turned away for up to {format_duration(held_for)}"
        )
        details = {
            "holder": f"{held.host}:{held.pid}",
            "since": held.acquired_at.isoformat(timespec="seconds"),
            "heartbeat_at": held.heartbeat_at.isoformat(timespec="seconds"),
            "run_id": held.run_id or None,
        }
        threshold = LeaseSettings().held_alert_after
        if held_for <= threshold:
            return LeaseHeld(message, **details)

        def alert() -> None:
            conf = alert_settings()
            line = f"  batch {socket.gethostname()} process {os.getpid()} was turned away: {message}"
            notice = Notice("lease_held", self.name, [line], [], held.run_id or None)
            left = fresh(records_of(self.ws.store), [notice], conf)
            subject = f"leadkit: stream {self.stream} held by one batch for {format_duration(held_for)}"
            send(self.ws.store, subject, left, conf)

        safely("lease held", alert, None)
        log.error("%s (more than %s: alerted)", message, format_duration(threshold))
        return LeaseHeldTooLong(
            message + f", more than LEADKIT_LEASE_HELD_ALERT_AFTER={format_duration(threshold)}",
            hint=f"Check that batch: if it is stuck, stop it (on {held.host}, process {held.pid}); the next batch "
            "takes the lease over once its heartbeat is older than its TTL, or at once on the same host.",
            **details,
        )

    def set_run(self, run_id: str) -> None:
        """Name the run this batch runs on its lease. It goes out with the next heartbeat (within a third of
        the TTL), not in a write of its own: the run ID only informs whoever finds the lease held."""
        with self._lock:
            self._run_id = run_id

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                if self.current is None:
                    return
                new = Lease(**{**self.current.__dict__, "heartbeat_at": utcnow()})
                if self._run_id:
                    new = Lease(**{**new.__dict__, "run_id": self._run_id})
                try:
                    swapped = self.ws.store.swap_lease(self.name, self.current, new)
                except Exception as exc:  # a failed heartbeat is retried next beat, while the TTL lasts
                    log.warning("lease heartbeat of stream %s failed: %s", self.stream, exc)
                    if time.monotonic() - renewed > self.ttl_s:
                        self._lose(f"its heartbeat could not be renewed for {self.ttl_s:g} s (last error: {exc})")
                        return
                    continue
                if swapped:
                    self.current, renewed = new, time.monotonic()
                    continue
                try:
                    holder = self.ws.store.get_lease(self.name)
                except Exception:
                    holder = None
                whom = (
                    f"{holder.host} process {holder.pid} (run {holder.run_id or '-'})"
                    if holder is not None
                    else "nobody (it was released)"
                )
                self._lose(f"it is now held by {whom}", now=whom)
                return

    def _lose(self, why: str, *, now: str = "unknown") -> None:
        self.lost = f"the batch lost the lease of stream {self.stream}: {why}"
        mine, self.current = self.current, None
        log.error(self.lost)
        detail = f"batch {socket.gethostname()} process {os.getpid()}: {self.lost}; now: {now}"
        lease_lost(self.ws, self.name, detail, run_id=mine.run_id if mine and mine.run_id else None)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.current is not None:
                self.ws.store.swap_lease(self.name, self.current, None)
                self.current = None


class StreamLeases:
    """The leases of several streams, taken in stream order and released together: all or none."""

    def __init__(self, ws: Workspace, streams: Iterable[int], *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.streams = sorted(set(streams))
        self.leases = [BatchLease(ws, s, ttl_s=ttl_s) for s in self.streams]

    def acquire(self) -> None:
        taken: list[BatchLease] = []
        try:
            for lease in self.leases:
                lease.acquire()
                taken.append(lease)
        except BaseException:
            for lease in reversed(taken):
                lease.release()
            raise

    @property
    def takeover_notes(self) -> list[str]:
        return [lease.takeover_note for lease in self.leases if lease.takeover_note]

    @property
    def lost(self) -> str | None:
        return next((lease.lost for lease in self.leases if lease.lost), None)

    def set_run(self, run_id: str) -> None:
        for lease in self.leases:
            lease.set_run(run_id)

    def release(self) -> None:
        for lease in reversed(self.leases):
            lease.release()
