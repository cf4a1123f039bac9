"""The batch lease: one batch per stream, a lease row in the store with a heartbeat."""

from __future__ import annotations

import logging
import os
import socket
import threading

from leadkit.batch.kernels import _pid_alive
from leadkit.errors import LeaseHeld
from leadkit.models import Lease, utcnow
from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.batch")


def lease_name(stream: int) -> str:
    return f"batch-stream-{stream}"


class BatchLease:
    """One batch per stream: a lease in the store with a heartbeat. A holder that is gone (dead process on this
    host at once; from another host, once its heartbeat is older than its TTL) is taken over."""

    def __init__(self, ws: Workspace, stream: int, *, ttl_s: float = 120.0) -> None:
        self.ws = ws
        self.stream = stream
        self.name = lease_name(stream)
        self.ttl_s = ttl_s
        self.current: Lease | None = None
        self.takeover_note: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def acquire(self, run_id: str = "") -> None:
        store = self.ws.store
        host = socket.gethostname()
        for _ in range(5):
            now = utcnow()
            mine = Lease(self.name, host, os.getpid(), run_id, now, now, self.ttl_s)
            held = store.get_lease(self.name)
            note: str | None = None
            if held is not None:
                age = (now - held.heartbeat_at).total_seconds()
                since = held.acquired_at.isoformat(timespec="seconds")
                if held.host == host and not _pid_alive(held.pid):
                    note = (
                        f"took over the lease of stream {self.stream} from {held.host} process {held.pid} "
                        f"(held since {since}): that process no longer exists"
                    )
                elif held.host != host and age > held.ttl_s:
                    note = (
                        f"took over the lease of stream {self.stream} from {held.host} process {held.pid} "
                        f"(held since {since}): its heartbeat is {age:.0f} s old, past its TTL of {held.ttl_s:g} s"
                    )
                else:
                    raise LeaseHeld(
                        f"another batch of stream {self.stream} is running: held by {held.host} process "
                        f"{held.pid} since {since}" + (f" (run {held.run_id})" if held.run_id else ""),
                        holder=f"{held.host}:{held.pid}",
                        since=since,
                    )
            if store.swap_lease(self.name, held, mine):
                self.current, self.takeover_note = mine, note
                if note:
                    log.warning(note)
                break
        else:
            raise LeaseHeld(f"could not take the lease {self.name}: it kept changing hands")
        self._thread = threading.Thread(target=self._beat, name="leadkit-lease", daemon=True)
        self._thread.start()

    def set_run(self, run_id: str) -> None:
        with self._lock:
            if self.current is None:
                return
            new = Lease(**{**self.current.__dict__, "run_id": run_id, "heartbeat_at": utcnow()})
            if self.ws.store.swap_lease(self.name, self.current, new):
                self.current = new

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            with self._lock:
                if self.current is None:
                    return
                new = Lease(**{**self.current.__dict__, "heartbeat_at": utcnow()})
                try:
                    if self.ws.store.swap_lease(self.name, self.current, new):
                        self.current = new
                    else:  # another process holds it now: tell the operator, stop beating for a lease not ours
                        self._lost()
                        return
                except Exception:  # a failed heartbeat is retried next beat; the batch goes on
                    log.exception("lease heartbeat failed")

    def _lost(self) -> None:
        from leadkit.alerts import lease_lost

        held = self.ws.store.get_lease(self.name)
        holder = f"{held.host} process {held.pid} (run {held.run_id or '-'})" if held else "nobody"
        mine = self.current
        detail = (
            f"batch {socket.gethostname()} process {os.getpid()} lost the lease of stream {self.stream}; now: {holder}"
        )
        log.error(detail)
        lease_lost(self.ws, self.name, detail, run_id=mine.run_id if mine and mine.run_id else None)
        self.current = None

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self.current is not None:
                self.ws.store.swap_lease(self.name, self.current, None)
                self.current = None
