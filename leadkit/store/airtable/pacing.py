"""Request pacing shared by every process on the machine (one schedule file per endpoint and base, and one per
token across its bases), or by every process of a dask cluster (one schedule kept by the scheduler): the dask
workers themselves and the notebook kernels they start, which find the scheduler in the batch's Apify slot spec
(`leadkit.capacity.SLOTS_ENV`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, overload

from leadkit.capacity import dask_scheduler_from_env, scheduler_client
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


#: The schedule key of a token's traffic across all its bases (the base key is the base ID).
TOKEN_KEY_PREFIX = "token:"


def _in_dask_worker() -> bool:
    """Inside a task on a dask worker (checked without importing dask when it is not loaded)."""
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


@contextmanager
def _dask_schedule(key: str, client: Any) -> Iterator[_Schedule]:
    """A schedule kept in the dask scheduler's metadata under a cluster-wide lock: one for every process of
    the cluster (workers and their kernels), on whatever host."""
    from distributed import Lock

    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    with Lock(f"leadkit-airtable-pace-{name}", scheduler_rpc=client.scheduler, loop=client.loop):
        raw = client.get_metadata(["leadkit-airtable-pace", name], default="")
        schedule = _parse_schedule(str(raw).encode())
        yield schedule
        client.set_metadata(["leadkit-airtable-pace", name], json.dumps(schedule))


#: The scheduler this whole process paces through while it coordinates a dask batch (`share_through`).
_coordinating: list[str] = []
#: Schedulers this process could not reach: it paces on the host's files instead (warned once).
_unreachable: set[str] = set()


@contextmanager
def share_through(scheduler: str) -> Iterator[None]:
    """While the block runs, every pacer of this process (made before or inside it) books its requests on
    `scheduler`, with the kernels of the dask batch this process coordinates, instead of the host's files: the
    coordinator's own requests (lease, ClientRun opens and settles) then count against the same pace."""
    _coordinating.append(scheduler)
    try:
        yield
    finally:
        _coordinating.remove(scheduler)


def _worker_client() -> Any:
    from distributed import get_client

    return get_client()


class RequestPacer:
    """At most `rate` requests a second to each Airtable base and `token_rate` a second for the token across
    all bases, counted over every process that shares the pace folder (by default every process of this user
    on this machine, whatever its working directory) or, on dask, over every process of the cluster: in a dask
    worker (`dask`) through the worker's client, in a kernel a dask worker started through a client of the
    scheduler named by the batch's slot spec (`scheduler`), so N hosts together keep one pace.

    Each (endpoint, base) has a schedule file: the send times booked lately and the end of a 429 penalty, if
    one is on. A request takes the file's lock (`fcntl.flock`), books the first time at which no more than
    `burst` requests fall in any `window_s`, releases the lock and sleeps until then; so short bursts (a CLI
    command's three reads) go at once and sustained traffic keeps the pace. `burst` is the rate rounded down
    (at least 1) and `window_s` is one second (1/rate for rates under 1) plus `PACE_MARGIN_S`.

    A request books the base's schedule and the token's together (the token's lock is always taken first), at
    the first time both allow. If the folder cannot be used, the pace is kept in this process only, with a
    warning."""

    def __init__(
        self,
        rate: float,
        *,
        token_rate: float | None = None,
        token_key: str = "",
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        dask: bool | None = None,
        scheduler: str | None = None,
    ) -> None:
        for name, value, allowed in (
            ("AIRTABLE_MAX_REQUESTS_PER_S", rate, "5 per base"),
            ("AIRTABLE_TOKEN_MAX_REQUESTS_PER_S", token_rate, "50 per token"),
        ):
            if value is not None and (not value > 0 or math.isinf(value)):
                raise ConfigError(
                    f"{name}: {value!r} is not accepted; give a number of requests per second above 0 "
                    f"(Airtable allows {allowed})"
                )
        self.rate = rate
        self.burst, self.window_s = _window(rate)
        self.token_rate = token_rate
        self.token_burst, self.token_window_s = _window(token_rate or 1.0)
        self.token_key = TOKEN_KEY_PREFIX + token_key
        self.dask = _in_dask_worker() if dask is None else dask
        #: The dask scheduler that keeps the schedules of a kernel a dask worker started ("" for none).
        self.scheduler = "" if self.dask else (dask_scheduler_from_env() if scheduler is None else scheduler)
        self.directory = directory if directory is not None else default_pace_dir()
        self._clock = clock
        self._sleep = sleep
        self._local: dict[str, _Schedule] = {}
        self._local_lock = threading.RLock()
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

    @overload
    def wait(self, endpoint: str, base: str) -> float: ...

    @overload
    def wait(self, endpoint: str, base: str, *, max_wait_s: float | None) -> float | None: ...

    def wait(self, endpoint: str, base: str, *, max_wait_s: float | None = None) -> float | None:
        """Book the next free time for a request to `base` (and for the token) and sleep until it; the seconds
        slept. With `max_wait_s`, a turn further off than that is not booked: None, and no sleep."""
        with contextlib.ExitStack() as stack:
            token = stack.enter_context(self._schedule(endpoint, self.token_key)) if self.token_rate else None
            schedule = stack.enter_context(self._schedule(endpoint, base))
            now = self._clock()
            at = _earliest(schedule, now, self.burst, self.window_s)
            if token is not None:
                at = max(at, _earliest(token, now, self.token_burst, self.token_window_s))
            if max_wait_s is not None and at - now > max_wait_s:
                return None
            if token is not None:
                _commit(token, at, now, self.token_burst, self.token_window_s)
            _commit(schedule, at, now, self.burst, self.window_s)
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

    @contextmanager
    def _schedule(self, endpoint: str, base: str) -> Iterator[_Schedule]:
        key = f"{endpoint.rstrip('/')}\n{base}"
        if self.dask:
            with _dask_schedule(key, _worker_client()) as schedule:
                yield schedule
            return
        scheduler = _coordinating[-1] if _coordinating else self.scheduler
        if scheduler and scheduler not in _unreachable:
            try:
                client = scheduler_client(scheduler)
            except (OSError, TimeoutError) as exc:
                log.warning(
                    "cannot reach the dask scheduler %s to share the Airtable pace (%s); pacing on this machine only",
                    scheduler,
                    type(exc).__name__,
                )
                _unreachable.add(scheduler)
            else:
                with _dask_schedule(key, client) as schedule:
                    yield schedule
                return
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
            yield self._local.setdefault(key, _empty_schedule())

    def _open(self, path: Path) -> Any:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.parent.stat().st_uid != os.getuid():
            raise PermissionError(f"{path.parent} belongs to another user")
        return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")


def _window(rate: float) -> tuple[int, float]:
    """(burst, window_s) for a rate: the rate rounded down (at least 1) in one second (1/rate under 1 a
    second), plus the margin."""
    burst = max(1, math.floor(rate))
    return burst, (burst / rate if rate < 1 else 1.0) + PACE_MARGIN_S


def _earliest(schedule: _Schedule, now: float, burst: int, window_s: float) -> float:
    """The first time from `now` at which a request fits the schedule (no more than `burst` in a window, not
    during a penalty)."""
    blocked = schedule["blocked_until"]
    if blocked > now + PACE_HORIZON_S:
        blocked = 0.0
    booked = [t for t in schedule["booked"] if now - window_s < t <= now + PACE_HORIZON_S]
    at = max(now, blocked, booked[-1] if booked else now)
    if len(booked) >= burst:
        at = max(at, booked[-burst] + window_s)
    return at


def _commit(schedule: _Schedule, at: float, now: float, burst: int, window_s: float) -> None:
    """Book `at` (no earlier than `_earliest` said) and forget what no longer counts."""
    booked = [t for t in schedule["booked"] if now - window_s < t <= now + PACE_HORIZON_S]
    booked.append(at)
    schedule["booked"] = sorted(booked)[-burst:]
    blocked = schedule["blocked_until"]
    schedule["blocked_until"] = blocked if now < blocked <= now + PACE_HORIZON_S else 0.0
