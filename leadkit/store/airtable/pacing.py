"""Request pacing shared by every process on the machine (one schedule file per endpoint and base)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

from leadkit.errors import ConfigError

log = logging.getLogger(__name__)

#: Added to the pacing window: a request may reach Airtable a little later than it left, so the next window's
#: requests must not start the very moment the previous window ends.
PACE_MARGIN_S = 0.05
#: Bookings further ahead than this were left by a clock that jumped back; they are dropped.
PACE_HORIZON_S = 600.0
#: Schedule files untouched for this long (bases no longer used, test sandboxes) are removed.
PACE_FILE_TTL_S = 86400.0
_pruned: set[Path] = set()


def default_pace_dir() -> Path:
    """Where the schedules live: one folder per user in the system's temporary folder, the same for every
    working directory and workspace, so every process of this user on this machine shares them."""
    return Path(tempfile.gettempdir()) / f"leadkit-airtable-pace-{os.getuid()}"


class _Schedule(TypedDict):
    blocked_until: float
    booked: list[float]


def _empty_schedule() -> _Schedule:
    return {"blocked_until": 0.0, "booked": []}


def _parse_schedule(data: bytes) -> _Schedule:
    """The schedule kept in a pace file; an empty, torn or foreign file counts as empty."""
    try:
        raw = json.loads(data) if data.strip() else {}
        blocked = float(raw.get("blocked_until", 0.0))
        booked = sorted(float(t) for t in raw.get("booked", []))
    except (ValueError, TypeError, AttributeError):
        return _empty_schedule()
    return {"blocked_until": blocked, "booked": booked}


class RequestPacer:
    """At most `rate` requests a second to each Airtable base, counted over every process that shares the
    pace folder (by default every process of this user on this machine, whatever its working directory).

    Each (endpoint, base) has a schedule file: the send times booked lately and the end of a 429 penalty, if
    one is on. A request takes the file's lock (`fcntl.flock`), books the first time at which no more than
    `burst` requests fall in any `window_s`, releases the lock and sleeps until then; so short bursts (a CLI
    command's three reads) go at once and sustained traffic keeps the pace. `burst` is the rate rounded down
    (at least 1) and `window_s` is one second (1/rate for rates under 1) plus `PACE_MARGIN_S`.

    If the folder cannot be used, the pace is kept in this process only, with a warning."""

    def __init__(
        self,
        rate: float,
        *,
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ConfigError(
                f"AIRTABLE_MAX_REQUESTS_PER_S: {rate!r} is not accepted; give a number of requests per second "
                "above 0 (Airtable allows 5 per base)"
            )
        self.rate = rate
        self.burst = max(1, math.floor(rate))
        self.window_s = self.burst / rate if rate < 1 else 1.0
        self.window_s += PACE_MARGIN_S
        self.directory = directory if directory is not None else default_pace_dir()
        self._clock = clock
        self._sleep = sleep
        self._local: dict[str, _Schedule] = {}
        self._local_lock = threading.Lock()
        self._shared = True
        self.waits = 0
        self.waited_s = 0.0
        if self.directory not in _pruned:
            _pruned.add(self.directory)
            self.prune()

    def prune(self) -> int:
        """Remove the schedule files nobody used for `PACE_FILE_TTL_S`; how many. Each is locked and looked
        at again before it goes, so a file in use is kept."""
        removed = 0
        cutoff = self._clock() - PACE_FILE_TTL_S
        try:
            paths = [p for p in self.directory.iterdir() if p.stat().st_mtime < cutoff]
        except OSError:
            return 0
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    if os.fstat(handle.fileno()).st_mtime < cutoff:
                        path.unlink()
                        removed += 1
            except OSError:
                continue
        return removed

    def path(self, endpoint: str, base: str) -> Path:
        key = f"{endpoint.rstrip('/')}\n{base}".encode()
        return self.directory / hashlib.sha256(key).hexdigest()[:32]

    def wait(self, endpoint: str, base: str) -> float:
        """Book the next free time for a request to `base` and sleep until it; the seconds slept."""
        with self._schedule(endpoint, base) as schedule:
            now = self._clock()
            at = self._book(schedule, now)
        delay = at - now
        if delay > 0:
            self.waits += 1
            self.waited_s += delay
            if delay > 5:
                log.info("Airtable pace: waiting %.1f s for base %s", delay, base or "-")
            self._sleep(delay)
        return max(0.0, delay)

    def block(self, endpoint: str, base: str, seconds: float) -> None:
        """Airtable answered 429: no process sends to `base` for `seconds`."""
        with self._schedule(endpoint, base) as schedule:
            until = self._clock() + seconds
            schedule["blocked_until"] = max(schedule["blocked_until"], until)

    def _book(self, schedule: _Schedule, now: float) -> float:
        blocked = schedule["blocked_until"]
        if blocked > now + PACE_HORIZON_S:
            blocked = 0.0
        booked = [t for t in schedule["booked"] if now - self.window_s < t <= now + PACE_HORIZON_S]
        at = max(now, blocked, booked[-1] if booked else now)
        if len(booked) >= self.burst:
            at = max(at, booked[-self.burst] + self.window_s)
        booked.append(at)
        schedule["booked"] = booked[-self.burst :]
        schedule["blocked_until"] = blocked if blocked > now else 0.0
        return at

    @contextmanager
    def _schedule(self, endpoint: str, base: str) -> Iterator[_Schedule]:
        if self._shared:
            try:
                handle = self._open(self.path(endpoint, base))
            except OSError as exc:
                self._shared = False
                log.warning(
                    "cannot keep the Airtable pace in %s (%s); pacing this process only",
                    self.directory,
                    type(exc).__name__,
                )
            else:
                with handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
                    schedule = _parse_schedule(handle.read())
                    yield schedule
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(schedule).encode())
                return
        with self._local_lock:
            yield self._local.setdefault(f"{endpoint.rstrip('/')}\n{base}", _empty_schedule())

    def _open(self, path: Path) -> Any:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.parent.stat().st_uid != os.getuid():
            raise PermissionError(f"{path.parent} belongs to another user")
        return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
