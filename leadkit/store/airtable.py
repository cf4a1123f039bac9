"""Airtable backend: the store protocol on the original's Master Clients base and one base per client.

Request policy (every call goes through `AirtableApi.request`):
- requests are paced per base (`RequestPacer`): every process on the machine books its requests in one small
  schedule file per (endpoint, base), so together they stay under AIRTABLE_MAX_REQUESTS_PER_S; meta API calls
  count against the base they touch;
- every request has a (connect, read) timeout; 5xx and dropped connections are retried by urllib3;
- a 429 (the backstop: another machine, or a pace set too high) waits out the penalty (Retry-After, else
  `AIRTABLE_RATE_LIMIT_WAIT_S`) and tries again, instead of failing after pyairtable's 3 seconds of back-off;
  the penalty goes into the schedule, so the other processes wait it out instead of asking for more 429s;
- errors come out as leadkit errors: 401/403 -> AuthError naming the base, 422 unknown field or select
  option -> SchemaError naming the table and field, HTML -> ConfigError, missing record -> MissingRecordError.

Records: a ClientRun is opened with one `performUpsert` on (`Run ID`, `Client ID`) per 10 records that sends
only the key fields, so an existing record is never touched; only the records the upsert created get their
creation fields. A ClientRun's events live inside its record (`Events JSON`, and `Progress Log` for people),
so saving a record with its events is one request; events that have no ClientRun (or no room left) go to
the `Run Events` table. Formulas come from `pyairtable.formulas`, never from string concatenation.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import unquote, urlsplit

import requests
from pyairtable import Api, Table
from pyairtable.api.retrying import retry_strategy
from pyairtable.formulas import AND, EQ, GTE, LT, OR, Field, Formula, to_formula_str
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from leadkit.config import Settings
from leadkit.errors import (
    AuthError,
    ConfigError,
    DataError,
    LeadkitError,
    MissingRecordError,
    RateLimitError,
    SchemaError,
    UpstreamError,
)
from leadkit.models import (
    AuthCheck,
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Failure,
    HarvestStatus,
    Lead,
    Lease,
    NewLead,
    Run,
    RunEvent,
    RunStatus,
    Source,
)
from leadkit.store.base import ImportResult, RunFilter
from leadkit.store.schema import (
    BASE_ID_RE,
    MAX_LONG_TEXT,
    METRIC_FIELDS,
    NO,
    RECORD_ID_RE,
    YES,
    AuthChecks,
    ClientRunResults,
    Clients,
    Failures,
    JobTracking,
    Leads,
    Leases,
    RunEvents,
    parse_service_level,
    service_level_option,
)

log = logging.getLogger(__name__)

Fields = dict[str, Any]
Record = Mapping[str, Any]

#: How long a passed schema check of the master base is trusted (see `AirtableStore.init`).
SCHEMA_CHECK_TTL_S = 600.0
#: How many times a 429 is waited out before the request fails with RateLimitError.
RATE_LIMIT_ATTEMPTS = 8
#: A lease claim older than this whose holder never filled it in is taken as abandoned.
LEASE_CLAIM_GRACE_S = 30.0
CONNECT_TIMEOUT_S = 5.0
PROVISION_HINT = "Run `leadkit airtable provision` (or add the field by hand in Airtable)."
SCOPES_HINT = (
    "Check that AIRTABLE_API_KEY is a personal access token with the scopes data.records:read, "
    "data.records:write and schema.bases:read (schema.bases:write to provision), that the token was given "
    "access to this base, and that the base ID is right."
)


# ---------------------------------------------------------------------------------------------------------
# configuration


def validate_base_id(base_id: object, *, what: str) -> str:
    """The base ID unchanged, or ConfigError naming `what` (the setting or the client it came from)."""
    if not isinstance(base_id, str) or BASE_ID_RE.fullmatch(base_id) is None:
        raise ConfigError(
            f"{what}: {base_id!r} is not an Airtable base ID; a base ID is 'app' followed by 14 letters and "
            "digits, e.g. appAbCdEfGh012345",
            hint="Copy the base ID from the base's URL (airtable.com/appXXXXXXXXXXXXXX/...) or its API page.",
        )
    return base_id


def make_api(settings: Settings) -> AirtableApi:
    """An `AirtableApi` from the settings; ConfigError naming AIRTABLE_API_KEY when no token is set."""
    token = settings.airtable_api_key.get_secret_value() if settings.airtable_api_key else ""
    if not token.strip():
        raise ConfigError(
            "AIRTABLE_API_KEY is not set: the Airtable store needs a personal access token",
            hint="Set AIRTABLE_API_KEY in the environment or .env to a token with data.records:read/write and "
            "schema.bases:read on the master base and every client base.",
        )
    return AirtableApi(
        token.strip(),
        endpoint_url=settings.airtable_endpoint_url,
        read_timeout_s=settings.airtable_timeout_s,
        rate_limit_wait_s=settings.airtable_rate_limit_wait_s,
        max_requests_per_s=settings.airtable_max_requests_per_s,
    )


# ---------------------------------------------------------------------------------------------------------
# the request policy


class _RateLimited(Exception):
    def __init__(self, wait_s: float, url: str) -> None:
        super().__init__(url)
        self.wait_s = wait_s
        self.url = url


def _where(url: str) -> tuple[str, str]:
    """(base ID, table name) named by an Airtable API URL (either may be "")."""
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    if "v0" in parts:
        parts = parts[parts.index("v0") + 1 :]
    if parts[:2] == ["meta", "bases"]:
        return (parts[2] if len(parts) > 2 else ""), ""
    base = parts[0] if parts else ""
    table = parts[1] if len(parts) > 1 else ""
    return base, table


def _quoted_name(message: str) -> str:
    """The name Airtable quotes in a message like `Unknown field name: "Foo"` (doubled quotes included)."""
    start, end = message.find('"'), message.rfind('"')
    if start == -1 or end <= start:
        return ""
    return message[start + 1 : end].strip('"')


def airtable_error(status: int, content_type: str, body: bytes, method: str, url: str) -> LeadkitError:
    """The leadkit error an Airtable response stands for (the one place that maps them)."""
    from leadkit.http import classify_response, service_error

    base, table = _where(url)
    err_type, err_message = service_error(body)
    kind = err_type.upper()
    in_table = f"table {table!r} of base {base}" if table else f"base {base}"
    details: dict[str, Any] = {"url": urlsplit(url).path, "status": status, "error_type": err_type}
    if status == 401 and kind:
        return AuthError(
            f"Airtable refused the token (401 {err_type}) for {method} on {in_table}",
            hint=SCOPES_HINT,
            **details,
        )
    if status == 403 and kind:
        return AuthError(
            f"Airtable answered 403 {err_type} for {method} on {in_table}: the token lacks access or a scope, "
            "or the base or table does not exist",
            hint=SCOPES_HINT + " If the table is missing, run `leadkit airtable provision`.",
            **details,
        )
    if status == 404 and kind in ("MODEL_ID_NOT_FOUND", "NOT_FOUND") and "/rec" in url:
        return MissingRecordError(f"record not found in {in_table} ({err_type})", **details)
    if status == 404 and kind == "TABLE_NOT_FOUND":
        return SchemaError(f"base {base} has no table {table!r} (404 TABLE_NOT_FOUND)", hint=PROVISION_HINT, **details)
    if status == 422 and kind == "UNKNOWN_FIELD_NAME":
        name = _quoted_name(err_message)
        return SchemaError(
            f"{in_table} has no field {name!r} (422 UNKNOWN_FIELD_NAME: {err_message})",
            hint=PROVISION_HINT,
            table=table,
            field=name,
            **details,
        )
    if status == 422 and kind in ("INVALID_MULTIPLE_CHOICE_OPTIONS", "INVALID_VALUE_FOR_COLUMN"):
        return SchemaError(
            f"{in_table} refused a value (422 {err_type}: {err_message}); a select option or field type "
            "is missing or different",
            hint=PROVISION_HINT + " Missing select options are listed by `leadkit doctor`.",
            table=table,
            **details,
        )
    error = classify_response(status, content_type, body, url, service="Airtable")
    if error is None:
        return ConfigError(f"Airtable answered {status} for {method} {urlsplit(url).path} with no usable body")
    return error


# ---------------------------------------------------------------------------------------------------------
# pacing, shared by every process on the machine

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


class AirtableApi(Api):
    """pyairtable's `Api` with leadkit's request policy (see the module docstring)."""

    def __init__(
        self,
        token: str,
        *,
        endpoint_url: str = "https://api.airtable.com",
        read_timeout_s: float = 30.0,
        rate_limit_wait_s: float = 31.0,
        rate_limit_attempts: int = RATE_LIMIT_ATTEMPTS,
        max_requests_per_s: float = 4.0,
        pace_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        retry = retry_strategy(
            total=3,
            read=1,
            status_forcelist=(500, 502, 503, 504),
            backoff_factor=0.5,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        super().__init__(
            token,
            timeout=(CONNECT_TIMEOUT_S, read_timeout_s),  # type: ignore[arg-type]  # requests takes floats
            retry_strategy=retry,
            endpoint_url=endpoint_url,
        )
        self.rate_limit_wait_s = rate_limit_wait_s
        self.rate_limit_attempts = rate_limit_attempts
        self._sleep = sleep
        self.rate_limit_waits = 0
        self.pacer = RequestPacer(max_requests_per_s, directory=pace_dir, sleep=sleep)

    def request(
        self,
        method: str,
        url: str,
        fallback: tuple[str, str] | None = None,
        options: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            seconds = exc.wait_s if isinstance(exc, _RateLimited) else self.rate_limit_wait_s
            self.rate_limit_waits += 1
            log.warning("Airtable rate-limited %s %s; waiting %.1f s", method, urlsplit(url).path, seconds)
            return seconds + random.uniform(0, min(1.0, seconds / 10))

        retrying = Retrying(
            retry=retry_if_exception_type(_RateLimited),
            wait=wait,
            stop=stop_after_attempt(self.rate_limit_attempts),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._request_once, method, url, fallback, options, params, json)
        except _RateLimited as exc:
            base, table = _where(exc.url)
            raise RateLimitError(
                f"Airtable kept answering 429 for {method} on table {table!r} of base {base} after "
                f"{self.rate_limit_attempts} attempts",
                url=urlsplit(exc.url).path,
                status=429,
            ) from None

    def _request_once(
        self,
        method: str,
        url: str,
        fallback: tuple[str, str] | None,
        options: dict[str, Any] | None,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
    ) -> Any:
        path = urlsplit(url).path
        method = method.upper()
        base = _where(url)[0]
        self.pacer.wait(str(self.endpoint_url), base)
        try:
            return super().request(method, url, fallback=fallback, options=options, params=params, json=body)
        except requests.HTTPError as exc:
            response = exc.response
            if response is None:
                raise UpstreamError(f"Airtable {method} {path} failed without a response") from None
            if response.status_code == 429:
                wait_s = _retry_after(response, self.rate_limit_wait_s)
                self.pacer.block(str(self.endpoint_url), base, wait_s)
                raise _RateLimited(wait_s, url) from None
            raise airtable_error(
                response.status_code,
                response.headers.get("Content-Type", ""),
                response.content,
                method,
                url,
            ) from None
        except requests.exceptions.RetryError as exc:
            if "429" in str(exc):
                self.pacer.block(str(self.endpoint_url), base, self.rate_limit_wait_s)
                raise _RateLimited(self.rate_limit_wait_s, url) from None
            raise UpstreamError(f"Airtable {method} {path} kept failing after retries (5xx)", url=path) from None
        except requests.Timeout:
            raise UpstreamError(f"Airtable {method} {path} timed out", url=path) from None
        except requests.ConnectionError as exc:
            if "timed out" in str(exc):  # read timeouts that outlasted urllib3's retry come out as this
                raise UpstreamError(
                    f"Airtable {method} {path} timed out (read timeout {self.timeout[1] if self.timeout else '-'} s)",
                    url=path,
                ) from None
            raise UpstreamError(
                f"cannot reach Airtable at {self.endpoint_url} for {method} {path}: {type(exc).__name__}",
                hint="Check AIRTABLE_ENDPOINT_URL and the network; leadkit retried the connection.",
                url=path,
            ) from None
        except ValueError:
            raise ConfigError(
                f"Airtable answered {method} {path} with a body that is not JSON (an HTML page?)",
                hint="Check AIRTABLE_ENDPOINT_URL: it should be the API root, e.g. https://api.airtable.com.",
                url=path,
            ) from None


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------------------------
# values


def _ts(dt: datetime | None) -> str | None:
    """Airtable's time format: UTC, milliseconds (what a dateTime field keeps)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _exact_ts(dt: datetime) -> str:
    """Microsecond text form (lease times, compared exactly)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(value: object) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _int(value: object, default: int = 0) -> int:
    if value is None or value == "":
        return default
    return int(float(value))  # type: ignore[arg-type]


def _opt_int(value: object) -> int | None:
    return None if value is None or value == "" else _int(value)


def _formula(*parts: Formula | None) -> str | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return to_formula_str(kept[0] if len(kept) == 1 else AND(*kept))


def _eq(field: str, value: object) -> Formula:
    return EQ(Field(field), value)


def _sortable_id() -> str:
    """A unique ID whose text order is creation order (tie-break when times are equal)."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def _created(record: Record) -> datetime:
    return _parse_ts(record.get("createdTime")) or datetime.now(UTC)


# ---------------------------------------------------------------------------------------------------------
# record <-> model


def _client_fields(client: Client) -> Fields:
    return {
        Clients.CLIENT_ID: client.client_id,
        Clients.CLIENT_NAME: client.name,
        Clients.STATUS: client.status or None,
        Clients.SERVICE_LEVEL: service_level_option(client.service_level),
        Clients.POST_ACCESS: YES if client.post_access else NO,
        Clients.DAILY_TARGET: client.daily_target,
        Clients.BATCH_SIZE: client.batch_size,
        Clients.MAX_BATCHES: client.max_batches,
        Clients.STREAM: client.stream,
        Clients.BASE_ID: client.base_id or None,
    }


def _client(record: Record) -> Client:
    f = record["fields"]
    return Client(
        client_id=str(f.get(Clients.CLIENT_ID, "")),
        name=str(f.get(Clients.CLIENT_NAME, "")),
        status=str(f.get(Clients.STATUS, "")),
        service_level=parse_service_level(f.get(Clients.SERVICE_LEVEL)),
        post_access=f.get(Clients.POST_ACCESS) == YES,
        daily_target=_int(f.get(Clients.DAILY_TARGET), 0),
        batch_size=_int(f.get(Clients.BATCH_SIZE), 20),
        max_batches=_int(f.get(Clients.MAX_BATCHES), 10),
        stream=_int(f.get(Clients.STREAM), 1),
        base_id=f.get(Clients.BASE_ID) or None,
    )


def _run_fields(run: Run) -> Fields:
    return {
        JobTracking.RUN_ID: run.run_id,
        JobTracking.STATUS: run.status.value,
        JobTracking.STREAM: run.stream,
        JobTracking.START_TIME: _ts(run.started_at),
        JobTracking.END_TIME: _ts(run.ended_at),
        JobTracking.STARTED_BY: run.started_by,
        JobTracking.CLIENTS_TOTAL: run.clients_total,
        JobTracking.CLIENTS_FAILED: run.clients_failed,
        JobTracking.SYSTEM_NOTES: run.notes,
    }


def _run(record: Record) -> Run:
    f = record["fields"]
    return Run(
        run_id=str(f.get(JobTracking.RUN_ID, "")),
        status=RunStatus(f.get(JobTracking.STATUS) or RunStatus.RUNNING.value),
        stream=_int(f.get(JobTracking.STREAM), 1),
        started_at=_parse_ts(f.get(JobTracking.START_TIME)) or _created(record),
        ended_at=_parse_ts(f.get(JobTracking.END_TIME)),
        started_by=str(f.get(JobTracking.STARTED_BY, "")),
        clients_total=_int(f.get(JobTracking.CLIENTS_TOTAL)),
        clients_failed=_int(f.get(JobTracking.CLIENTS_FAILED)),
        notes=str(f.get(JobTracking.SYSTEM_NOTES, "")),
    )


def _failure_dict(failure: Failure) -> dict[str, Any]:
    return {
        "category": failure.category,
        "fingerprint": failure.fingerprint,
        "message": failure.message,
        "hint": failure.hint,
        "run_id": failure.run_id,
        "client_id": failure.client_id,
        "stage": failure.stage,
        "at": _ts(failure.at),
        "notebook": failure.notebook,
        "cell": failure.cell,
        "traceback": failure.traceback,
    }


def _failure_from_dict(data: Mapping[str, Any]) -> Failure:
    values = dict(data)
    values["at"] = _parse_ts(values.get("at")) or datetime.now(UTC)
    return Failure(**values)


def _event_dict(event: RunEvent) -> dict[str, Any]:
    return {
        "stage": event.stage,
        "kind": event.kind.value,
        "message": event.message,
        "metrics": event.metrics,
        "at": _ts(event.at),
    }


def _event_line(event: RunEvent) -> str:
    metrics = " ".join(f"{k}={v:g}" for k, v in event.metrics.items())
    text = f"{_ts(event.at)} {event.stage} {event.kind.value}"
    return " ".join(p for p in (text, event.message, metrics) if p)


def _client_run_key(run_id: str, client_id: str) -> Fields:
    return {
        ClientRunResults.RUN_ID: f"{run_id}-{client_id}",
        ClientRunResults.CLIENT_ID: client_id,
        ClientRunResults.BASE_RUN_ID: run_id,
    }


def _client_run_fields(rec: ClientRun) -> Fields:
    """Everything `save_client_run` writes (not the key, the source or the start time)."""
    fields: Fields = {
        ClientRunResults.CLIENT_NAME: rec.client_name,
        ClientRunResults.STATUS: rec.status.value,
        ClientRunResults.END_TIME: _ts(rec.ended_at),
        ClientRunResults.HEARTBEAT: _ts(rec.heartbeat_at),
        ClientRunResults.METRICS_JSON: json.dumps(rec.metrics, sort_keys=True),
        ClientRunResults.NOTEBOOK: rec.notebook,
        ClientRunResults.SYSTEM_NOTES: rec.reason,
        ClientRunResults.FAILURE_JSON: json.dumps(_failure_dict(rec.failure)) if rec.failure else None,
        ClientRunResults.ERROR_DETAILS: (
            f"[{rec.failure.category}] {rec.failure.message}\n{rec.failure.hint}" if rec.failure else None
        ),
    }
    for metric, field in METRIC_FIELDS.items():
        if metric in rec.metrics:
            fields[field] = rec.metrics[metric]
    return fields


def _client_run(record: Record) -> ClientRun:
    f = record["fields"]
    client_id = str(f.get(ClientRunResults.CLIENT_ID, ""))
    run_id = f.get(ClientRunResults.BASE_RUN_ID) or str(f.get(ClientRunResults.RUN_ID, "")).removesuffix(
        f"-{client_id}"
    )
    failure = f.get(ClientRunResults.FAILURE_JSON)
    started = _parse_ts(f.get(ClientRunResults.START_TIME)) or _created(record)
    return ClientRun(
        run_id=str(run_id),
        client_id=client_id,
        source=Source(f.get(ClientRunResults.SOURCE) or Source.BATCH.value),
        client_name=str(f.get(ClientRunResults.CLIENT_NAME, "")),
        status=ClientRunStatus(f.get(ClientRunResults.STATUS) or ClientRunStatus.RUNNING.value),
        started_at=started,
        ended_at=_parse_ts(f.get(ClientRunResults.END_TIME)),
        heartbeat_at=_parse_ts(f.get(ClientRunResults.HEARTBEAT)) or started,
        metrics=json.loads(f.get(ClientRunResults.METRICS_JSON) or "{}"),
        notebook=f.get(ClientRunResults.NOTEBOOK) or None,
        reason=f.get(ClientRunResults.SYSTEM_NOTES) or None,
        failure=_failure_from_dict(json.loads(failure)) if failure else None,
        record_id=record["id"],
    )


def _events_of(record: Record) -> list[dict[str, Any]]:
    text = record["fields"].get(ClientRunResults.EVENTS_JSON)
    return list(json.loads(text)) if text else []


def _lease_fields(lease: Lease) -> Fields:
    return {
        Leases.HOST: lease.host,
        Leases.PID: lease.pid,
        Leases.RUN_ID: lease.run_id,
        Leases.ACQUIRED_AT: _exact_ts(lease.acquired_at),
        Leases.HEARTBEAT_AT: _exact_ts(lease.heartbeat_at),
        Leases.TTL_S: lease.ttl_s,
    }


def _lease(record: Record) -> Lease | None:
    f = record["fields"]
    if f.get(Leases.RELEASED):
        return None
    acquired = _parse_ts(f.get(Leases.ACQUIRED_AT))
    heartbeat = _parse_ts(f.get(Leases.HEARTBEAT_AT))
    assert acquired is not None and heartbeat is not None
    return Lease(
        name=str(f.get(Leases.NAME, "")),
        host=str(f.get(Leases.HOST, "")),
        pid=_int(f.get(Leases.PID)),
        run_id=str(f.get(Leases.RUN_ID, "")),
        acquired_at=acquired,
        heartbeat_at=heartbeat,
        ttl_s=float(f.get(Leases.TTL_S, 0.0)),
    )


def _lease_filled(record: Record) -> bool:
    f = record["fields"]
    return bool(f.get(Leases.RELEASED) or f.get(Leases.HOST))


# ---------------------------------------------------------------------------------------------------------
# the per-client base


_LEAD_FIELDS: dict[str, str] = {
    "harvest_status": Leads.HARVEST_STATUS,
    "posts_found": Leads.POSTS_FOUND,
    "last_check_at": Leads.LAST_CHECK_AT,
    "last_error": Leads.HARVEST_ERROR,
    "posts_actioned": Leads.POSTS_ACTIONED,
    "harvest_run_id": Leads.HARVEST_RUN_ID,
    "posts": Leads.POSTS_CONTENT,
    "company": Leads.COMPANY,
}
_LEAD_ATTRIBUTES = frozenset({*_LEAD_FIELDS, "name"})


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


def _lead_value(attribute: str, value: Any) -> Any:
    if value is None:
        return None
    if attribute == "harvest_status":
        return HarvestStatus(value).value
    if attribute == "last_check_at":
        return _ts(value)
    if attribute == "posts":
        return json.dumps(value)
    return value


def _lead(record: Record) -> Lead:
    f = record["fields"]
    status = f.get(Leads.HARVEST_STATUS)
    name = " ".join(p for p in (f.get(Leads.FIRST_NAME, ""), f.get(Leads.LAST_NAME, "")) if p)
    return Lead(
        lead_id=record["id"],
        profile_url=str(f.get(Leads.PROFILE_URL, "")),
        name=name,
        company=str(f.get(Leads.COMPANY, "")),
        harvest_status=HarvestStatus(status) if status else None,
        posts_found=_opt_int(f.get(Leads.POSTS_FOUND)),
        last_check_at=_parse_ts(f.get(Leads.LAST_CHECK_AT)),
        last_error=f.get(Leads.HARVEST_ERROR) or None,
        posts_actioned=_opt_int(f.get(Leads.POSTS_ACTIONED)),
        harvest_run_id=f.get(Leads.HARVEST_RUN_ID) or None,
        posts=json.loads(f.get(Leads.POSTS_CONTENT) or "[]"),
        created_at=_parse_ts(f.get(Leads.DATE_CREATED)) or _created(record),
    )


class AirtableLeadBase:
    """One client's leads, in the `Leads` table of that client's own base (`Client.base_id`)."""

    def __init__(self, api: Api, base_id: str, client_id: str) -> None:
        self.api = api
        self.base_id = base_id
        self.client_id = client_id
        self.table: Table = api.table(base_id, Leads.TABLE)

    def list_leads(self, *, status: str | None = None, limit: int | None = None) -> list[Lead]:
        formula = None
        if status in ("", "blank"):
            formula = _formula(_eq(Leads.HARVEST_STATUS, ""))
        elif status is not None:
            formula = _formula(_eq(Leads.HARVEST_STATUS, _harvest_status(status)))
        options: dict[str, Any] = {"sort": [f"-{Leads.DATE_CREATED}"]}
        if formula:
            options["formula"] = formula
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = limit
        return [_lead(r) for r in self.table.all(**options)]

    def get_lead(self, lead_id: str) -> Lead:
        missing = MissingRecordError(
            f"lead {lead_id!r} not found in the base of client {self.client_id!r} ({self.base_id})"
        )
        if RECORD_ID_RE.fullmatch(lead_id) is None:
            raise missing
        try:
            return _lead(self.table.get(lead_id))
        except MissingRecordError:
            raise missing from None

    def import_leads(self, leads: Sequence[NewLead]) -> ImportResult:
        from leadkit.harvest.posts import normalize_profile_url

        known = {
            normalize_profile_url(url)
            for r in self.table.all(fields=[Leads.PROFILE_URL])
            if (url := str(r["fields"].get(Leads.PROFILE_URL, "")).strip())
        }
        now = _ts(datetime.now(UTC))
        new: list[Fields] = []
        existing = 0
        for lead in leads:
            key = normalize_profile_url(lead.profile_url)
            if key in known:
                existing += 1
                continue
            known.add(key)
            first, last = _split_name(lead.name)
            new.append(
                {
                    Leads.PROFILE_URL: lead.profile_url,
                    Leads.FIRST_NAME: first or None,
                    Leads.LAST_NAME: last or None,
                    Leads.COMPANY: lead.company or None,
                    Leads.DATE_CREATED: now,
                }
            )
        if new:
            self.table.batch_create([_without_blanks(f) for f in new])
        return ImportResult(created=len(new), existing=existing)

    def update_leads(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        batch: list[dict[str, Any]] = []
        for lead_id, attributes in updates.items():
            unknown = set(attributes) - _LEAD_ATTRIBUTES
            if unknown:
                raise DataError(f"cannot update lead fields {sorted(unknown)}; accepted: {sorted(_LEAD_ATTRIBUTES)}")
            if RECORD_ID_RE.fullmatch(lead_id) is None:
                raise MissingRecordError(
                    f"lead {lead_id!r} not found in the base of client {self.client_id!r}; nothing was written"
                )
            fields: Fields = {}
            for attribute, value in attributes.items():
                if attribute == "name":
                    first, last = _split_name(value or "")
                    fields[Leads.FIRST_NAME], fields[Leads.LAST_NAME] = first or None, last or None
                else:
                    fields[_LEAD_FIELDS[attribute]] = _lead_value(attribute, value)
            if fields:
                batch.append({"id": lead_id, "fields": fields})
        if batch:
            self.table.batch_update(batch)  # type: ignore[arg-type]


def _harvest_status(value: str) -> str:
    try:
        return HarvestStatus(value).value
    except ValueError:
        raise DataError(
            f"lead status {value!r} is not one leadkit knows; accepted: "
            f"{[s.value for s in HarvestStatus]} or '' for blank"
        ) from None


def _without_blanks(fields: Fields) -> Fields:
    return {k: v for k, v in fields.items() if v is not None}


# ---------------------------------------------------------------------------------------------------------
# the master store


class AirtableStore:
    """The store protocol on the Master Clients base `master_base_id`."""

    def __init__(self, master_base_id: str, settings: Settings, *, api: Api | None = None) -> None:
        self.base_id = validate_base_id(master_base_id, what="LEADKIT_STORE=airtable://<master base id>")
        self.settings = settings
        self.url = f"airtable://{self.base_id}"
        self.api: Api = api if api is not None else make_api(settings)
        self._bases: dict[str, AirtableLeadBase] = {}
        # Events JSON of the ClientRun records this process has read or written, by record ID, so saving a
        # record with its events needs no read first.
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._record_ids: dict[tuple[str, str], str] = {}
        # Lease heads (holder, generation) this process last read or wrote, and the lease records it wrote.
        self._lease_heads: dict[str, tuple[Lease | None, int]] = {}
        self._lease_records: dict[str, list[str]] = {}
        # Job Tracking record IDs by run ID, of the runs this process inserted or read: updating one needs no
        # read first.
        self._run_record_ids: dict[str, str] = {}

    def _table(self, name: str) -> Table:
        return self.api.table(self.base_id, name)

    def init(self) -> None:
        """Check the master base has every table, field and select option leadkit writes.

        A check that passed is remembered for `SCHEMA_CHECK_TTL_S` in the workspace (LEADKIT_HOME), so the
        kernels of a batch do not each repeat it; a field removed meanwhile still comes out as a SchemaError
        naming it on the first write."""
        from leadkit.store.provision import check_schema

        marker = Path(self.settings.leadkit_home) / f".airtable-schema-{self.base_id}.ok"
        try:
            if time.time() - marker.stat().st_mtime < SCHEMA_CHECK_TTL_S:
                return
        except OSError:
            pass
        problems = check_schema(self.api, self.base_id, "master")
        if problems:
            listed = "; ".join(p.describe() for p in problems[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            raise SchemaError(
                f"the master base {self.base_id} lacks what leadkit writes: {listed}{more}",
                hint=f"Run `leadkit airtable provision --base {self.base_id}` to create them.",
                problems=[p.describe() for p in problems],
            )
        if marker.parent.is_dir():
            try:
                marker.touch()
            except OSError:
                log.debug("cannot write %s; the schema will be checked again next time", marker)

    def close(self) -> None:
        self._bases.clear()
        self._events.clear()
        self._record_ids.clear()
        self._lease_heads.clear()
        self._run_record_ids.clear()

    def _remember(self, record: Record) -> None:
        """Keep a ClientRun record's ID and events, so appending events to it needs no read first."""
        f = record["fields"]
        key = (str(f.get(ClientRunResults.BASE_RUN_ID, "")), str(f.get(ClientRunResults.CLIENT_ID, "")))
        self._record_ids[key] = record["id"]
        self._events[record["id"]] = _events_of(record)

    # clients -------------------------------------------------------------------------------------------
    def list_clients(self) -> list[Client]:
        clients = [_client(r) for r in self._table(Clients.TABLE).all()]
        return sorted(clients, key=lambda c: c.client_id)

    def get_client(self, client_id: str) -> Client:
        record = self._table(Clients.TABLE).first(formula=_formula(_eq(Clients.CLIENT_ID, client_id)))
        if record is None:
            raise MissingRecordError(
                f"no client {client_id!r} in {self.url}",
                hint="List the clients with `leadkit clients`; add one with `leadkit clients add`.",
            )
        return _client(record)

    def save_client(self, client: Client) -> Client:
        if client.base_id:
            validate_base_id(client.base_id, what=f"Airtable Base ID of client {client.client_id!r}")
        self._table(Clients.TABLE).batch_upsert([{"fields": _client_fields(client)}], key_fields=[Clients.CLIENT_ID])
        return client

    def lead_base(self, client: Client) -> AirtableLeadBase:
        from leadkit.runids import validate_client_id

        client_id = validate_client_id(client.client_id)
        if not client.base_id:
            raise ConfigError(
                f"client {client_id!r} has no Airtable Base ID, so leadkit cannot reach its leads; record it with "
                f"`leadkit clients add {client_id} ... --base <base id>`",
                hint=f"Record the client's own base: `leadkit clients add {client_id} ... --base <base id>` "
                "(or fill `Airtable Base ID` in the Clients table).",
            )
        base_id = validate_base_id(client.base_id, what=f"Airtable Base ID of client {client_id!r}")
        base = self._bases.get(client_id)
        if base is None or base.base_id != base_id:
            base = AirtableLeadBase(self.api, base_id, client_id)
            self._bases[client_id] = base
        return base

    # runs ----------------------------------------------------------------------------------------------
    def _claim(self, table: Table, key: Fields, key_fields: list[str]) -> tuple[Record, bool]:
        """Create the record keyed by `key` unless it exists: an upsert that sends only the key, so an
        existing record is left as it is. (record, created?)"""
        result = table.batch_upsert([{"fields": key}], key_fields=key_fields)
        record = result["records"][0]
        return dict(record), record["id"] in result["createdRecords"]

    def insert_run(self, run: Run) -> bool:
        table = self._table(JobTracking.TABLE)
        record, created = self._claim(table, {JobTracking.RUN_ID: run.run_id}, [JobTracking.RUN_ID])
        if created:
            table.update(record["id"], _run_fields(run))
            self._run_record_ids[run.run_id] = record["id"]
        return created

    def _run_record(self, run_id: str) -> Record | None:
        record = self._table(JobTracking.TABLE).first(formula=_formula(_eq(JobTracking.RUN_ID, run_id)))
        if record is not None:
            self._run_record_ids[run_id] = record["id"]
        return record

    def get_run(self, run_id: str) -> Run | None:
        record = self._run_record(run_id)
        return _run(record) if record else None

    def update_run(self, run: Run) -> None:
        missing = MissingRecordError(f"no run {run.run_id!r} in {self.url}")
        record_id = self._run_record_ids.get(run.run_id)
        if record_id is None:
            record = self._run_record(run.run_id)
            if record is None:
                raise missing
            record_id = record["id"]
        fields = _run_fields(run)
        del fields[JobTracking.START_TIME]
        try:
            self._table(JobTracking.TABLE).update(record_id, fields)
        except MissingRecordError:
            self._run_record_ids.pop(run.run_id, None)
            raise missing from None

    def _runs(self, filt: RunFilter | None, *, max_records: int | None, fields: list[str] | None = None) -> list[Run]:
        filt = filt or RunFilter()
        formula = _formula(
            _eq(JobTracking.STATUS, filt.status) if filt.status else None,
            GTE(Field(JobTracking.START_TIME), _ms(filt.since)) if filt.since else None,
            LT(Field(JobTracking.START_TIME), _ms(filt.until)) if filt.until else None,
        )
        options: dict[str, Any] = {"sort": [f"-{JobTracking.START_TIME}", f"-{JobTracking.RUN_ID}"]}
        if formula:
            options["formula"] = formula
        if fields:
            options["fields"] = fields
        runs_of_client: set[str] | None = None
        if filt.client_id:
            runs_of_client = {
                str(r["fields"].get(ClientRunResults.BASE_RUN_ID, ""))
                for r in self._table(ClientRunResults.TABLE).all(
                    formula=_formula(_eq(ClientRunResults.CLIENT_ID, filt.client_id)),
                    fields=[ClientRunResults.BASE_RUN_ID],
                )
            }
            if not runs_of_client:
                return []
        elif max_records is not None:
            options["max_records"] = max_records
        runs = [_run(r) for r in self._table(JobTracking.TABLE).all(**options)]
        if runs_of_client is not None:
            runs = [r for r in runs if r.run_id in runs_of_client]
        return runs

    def list_runs(self, filt: RunFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[Run]:
        if limit <= 0:
            return []
        return self._runs(filt, max_records=offset + limit)[offset : offset + limit]

    def count_runs(self, filt: RunFilter | None = None) -> int:
        return len(self._runs(filt, max_records=None, fields=[JobTracking.RUN_ID, JobTracking.START_TIME]))

    # client runs ---------------------------------------------------------------------------------------
    def open_client_runs(self, records: Sequence[ClientRun]) -> list[tuple[ClientRun, bool]]:
        if not records:
            return []
        keys = {(r.run_id, r.client_id) for r in records}
        if len(keys) != len(records):
            raise DataError("open_client_runs was given the same (run, client) twice; each must be opened once")
        table = self._table(ClientRunResults.TABLE)
        result = table.batch_upsert(
            [{"fields": _client_run_key(r.run_id, r.client_id)} for r in records],
            key_fields=[ClientRunResults.RUN_ID, ClientRunResults.CLIENT_ID],
        )
        created_ids = set(result["createdRecords"])
        by_key = {
            (r["fields"].get(ClientRunResults.RUN_ID), r["fields"].get(ClientRunResults.CLIENT_ID)): r
            for r in result["records"]
        }
        fills: list[dict[str, Any]] = []
        out: list[tuple[ClientRun, bool]] = []
        for rec in records:
            stored = by_key[(f"{rec.run_id}-{rec.client_id}", rec.client_id)]
            created = stored["id"] in created_ids
            if created:
                fields = {
                    **_client_run_fields(rec),
                    ClientRunResults.SOURCE: rec.source.value,
                    ClientRunResults.START_TIME: _ts(rec.started_at),
                }
                fields = _without_blanks(fields)
                fills.append({"id": stored["id"], "fields": fields})
                stored = {**stored, "fields": {**stored["fields"], **fields}}
            self._remember(stored)
            out.append((_client_run(stored), created))
        if fills:
            table.batch_update(fills)  # type: ignore[arg-type]
        return out

    def _client_run_record(self, run_id: str, client_id: str) -> Record | None:
        record = self._table(ClientRunResults.TABLE).first(
            formula=_formula(
                _eq(ClientRunResults.RUN_ID, f"{run_id}-{client_id}"), _eq(ClientRunResults.CLIENT_ID, client_id)
            )
        )
        if record is not None:
            self._remember(record)
        return record

    def get_client_run(self, run_id: str, client_id: str) -> ClientRun | None:
        record = self._client_run_record(run_id, client_id)
        return _client_run(record) if record else None

    def save_client_run(self, record: ClientRun, events: Sequence[RunEvent] = ()) -> None:
        record_id = record.record_id if record.record_id and RECORD_ID_RE.fullmatch(record.record_id) else None
        if record_id is None or record_id not in self._events:
            stored = self._client_run_record(record.run_id, record.client_id)
            if stored is None:
                raise MissingRecordError(
                    f"no ClientRun for run {record.run_id!r} and client {record.client_id!r}; nothing was written",
                    hint="A ClientRun comes to exist only through RunRecordService.open.",
                )
            record_id = stored["id"]
        fields = _client_run_fields(record)
        spill = self._append_events(record_id, events, fields)
        self._table(ClientRunResults.TABLE).update(record_id, fields)
        if ClientRunResults.EVENTS_JSON in fields:
            self._events[record_id] = json.loads(fields[ClientRunResults.EVENTS_JSON])
        if spill:
            self._add_table_events(spill)

    def adopt_client_run(self, record: ClientRun, events: Sequence[RunEvent]) -> None:
        """Remember a handed-over ClientRun's record ID and events, so saving it needs no read first."""
        if record.record_id and RECORD_ID_RE.fullmatch(record.record_id):
            self._record_ids[(record.run_id, record.client_id)] = record.record_id
            self._events[record.record_id] = [_event_dict(e) for e in events]

    def _append_events(self, record_id: str, events: Sequence[RunEvent], fields: Fields) -> list[RunEvent]:
        """Put `events` into `fields` (Events JSON and Progress Log of the record); return those that do
        not fit, for the Run Events table."""
        if not events:
            return []
        known = self._events.get(record_id, [])
        merged = known + [_event_dict(e) for e in events]
        text = json.dumps(merged, separators=(",", ":"))
        if len(text) > MAX_LONG_TEXT:
            return list(events)
        fields[ClientRunResults.EVENTS_JSON] = text
        lines = [_event_line(_event_from_dict(e, "", "")) for e in merged]
        log_text = "\n".join(lines)
        fields[ClientRunResults.PROGRESS_LOG] = log_text[-MAX_LONG_TEXT:]
        return []

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
        options = self._client_run_query(run_id, client_id, status, since)
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = offset + limit
        records = self._table(ClientRunResults.TABLE).all(**options)
        end = None if limit is None else offset + limit
        return [_client_run(r) for r in records[offset:end]]

    @staticmethod
    def _client_run_query(
        run_id: str | None, client_id: str | None, status: str | None, since: datetime | None
    ) -> dict[str, Any]:
        formula = _formula(
            _eq(ClientRunResults.BASE_RUN_ID, run_id) if run_id is not None else None,
            _eq(ClientRunResults.CLIENT_ID, client_id) if client_id is not None else None,
            _eq(ClientRunResults.STATUS, status) if status is not None else None,
            GTE(Field(ClientRunResults.START_TIME), _ms(since)) if since is not None else None,
        )
        options: dict[str, Any] = {"sort": [f"-{ClientRunResults.START_TIME}", f"-{ClientRunResults.RUN_ID}"]}
        if formula:
            options["formula"] = formula
        return options

    def add_events(self, events: Sequence[RunEvent]) -> None:
        """Append events to their ClientRun records (10 records a request); events without a ClientRun
        go to the Run Events table."""
        if not events:
            return
        groups: dict[tuple[str, str], list[RunEvent]] = {}
        for event in events:
            groups.setdefault((event.run_id, event.client_id), []).append(event)
        table = self._table(ClientRunResults.TABLE)
        unknown = [k for k in groups if self._record_ids.get(k) not in self._events]
        if unknown:
            for record in table.all(
                formula=to_formula_str(
                    OR(*(_eq(ClientRunResults.RUN_ID, f"{run}-{client}") for run, client in unknown))
                )
            ):
                self._remember(record)
        updates: list[dict[str, Any]] = []
        spill: list[RunEvent] = []
        for key, group in groups.items():
            record_id = self._record_ids.get(key)
            if record_id is None:
                spill.extend(group)
                continue
            fields: Fields = {}
            spill.extend(self._append_events(record_id, group, fields))
            if fields:
                updates.append({"id": record_id, "fields": fields})
                self._events[record_id] = json.loads(fields[ClientRunResults.EVENTS_JSON])
        if updates:
            table.batch_update(updates)  # type: ignore[arg-type]
        if spill:
            self._add_table_events(spill)

    def _add_table_events(self, events: Sequence[RunEvent]) -> None:
        self._table(RunEvents.TABLE).batch_create(
            [
                {
                    RunEvents.EVENT_ID: _sortable_id(),
                    RunEvents.RUN_ID: e.run_id,
                    RunEvents.CLIENT_ID: e.client_id,
                    RunEvents.STAGE: e.stage,
                    RunEvents.KIND: e.kind.value,
                    RunEvents.MESSAGE: e.message,
                    RunEvents.METRICS_JSON: json.dumps(e.metrics),
                    RunEvents.AT: _ts(e.at),
                }
                for e in events
            ]
        )

    def list_events(
        self, *, run_id: str | None = None, client_id: str | None = None, since: datetime | None = None
    ) -> list[RunEvent]:
        events: list[RunEvent] = []
        crr_formula = _formula(
            _eq(ClientRunResults.BASE_RUN_ID, run_id) if run_id is not None else None,
            _eq(ClientRunResults.CLIENT_ID, client_id) if client_id is not None else None,
        )
        crr_options: dict[str, Any] = {
            "fields": [ClientRunResults.BASE_RUN_ID, ClientRunResults.CLIENT_ID, ClientRunResults.EVENTS_JSON],
            "sort": [ClientRunResults.START_TIME],
        }
        if crr_formula:
            crr_options["formula"] = crr_formula
        for record in self._table(ClientRunResults.TABLE).all(**crr_options):
            f = record["fields"]
            for data in _events_of(record):
                events.append(
                    _event_from_dict(
                        data, str(f.get(ClientRunResults.BASE_RUN_ID, "")), str(f.get(ClientRunResults.CLIENT_ID, ""))
                    )
                )
        table_formula = _formula(
            _eq(RunEvents.RUN_ID, run_id) if run_id is not None else None,
            _eq(RunEvents.CLIENT_ID, client_id) if client_id is not None else None,
            GTE(Field(RunEvents.AT), _ms(since)) if since is not None else None,
        )
        table_options: dict[str, Any] = {"sort": [RunEvents.AT, RunEvents.EVENT_ID]}
        if table_formula:
            table_options["formula"] = table_formula
        for record in self._table(RunEvents.TABLE).all(**table_options):
            f = record["fields"]
            at = _parse_ts(f.get(RunEvents.AT))
            assert at is not None
            events.append(
                RunEvent(
                    run_id=str(f.get(RunEvents.RUN_ID, "")),
                    client_id=str(f.get(RunEvents.CLIENT_ID, "")),
                    stage=str(f.get(RunEvents.STAGE, "")),
                    kind=EventKind(str(f.get(RunEvents.KIND, EventKind.INFO.value))),
                    message=str(f.get(RunEvents.MESSAGE, "")),
                    metrics=json.loads(f.get(RunEvents.METRICS_JSON) or "{}"),
                    at=at,
                )
            )
        if since is not None:
            cutoff = _ms(since)
            events = [e for e in events if e.at >= cutoff]
        return sorted(events, key=lambda e: e.at)

    # diagnostics ---------------------------------------------------------------------------------------
    def add_failure(self, failure: Failure) -> None:
        data = _failure_dict(failure)
        self._table(Failures.TABLE).create(
            _without_blanks(
                {
                    Failures.FAILURE_ID: _sortable_id(),
                    Failures.CATEGORY: data["category"],
                    Failures.FINGERPRINT: data["fingerprint"],
                    Failures.MESSAGE: data["message"],
                    Failures.HINT: data["hint"],
                    Failures.RUN_ID: data["run_id"],
                    Failures.CLIENT_ID: data["client_id"],
                    Failures.STAGE: data["stage"],
                    Failures.AT: data["at"],
                    Failures.NOTEBOOK: data["notebook"],
                    Failures.CELL: data["cell"],
                    Failures.TRACEBACK: data["traceback"],
                }
            )
        )

    def _newest(
        self, table: str, at_field: str, id_field: str, since: datetime | None, limit: int | None
    ) -> Sequence[Record]:
        options: dict[str, Any] = {"sort": [f"-{at_field}", f"-{id_field}"]}
        if since is not None:
            options["formula"] = _formula(GTE(Field(at_field), _ms(since)))
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = limit
        return self._table(table).all(**options)

    def list_failures(self, *, since: datetime | None = None, limit: int | None = None) -> list[Failure]:
        out = []
        for record in self._newest(Failures.TABLE, Failures.AT, Failures.FAILURE_ID, since, limit):
            f = record["fields"]
            out.append(
                Failure(
                    category=str(f.get(Failures.CATEGORY, "")),
                    fingerprint=str(f.get(Failures.FINGERPRINT, "")),
                    message=str(f.get(Failures.MESSAGE, "")),
                    hint=str(f.get(Failures.HINT, "")),
                    run_id=f.get(Failures.RUN_ID) or None,
                    client_id=f.get(Failures.CLIENT_ID) or None,
                    stage=f.get(Failures.STAGE) or None,
                    at=_parse_ts(f.get(Failures.AT)) or _created(record),
                    notebook=f.get(Failures.NOTEBOOK) or None,
                    cell=_opt_int(f.get(Failures.CELL)),
                    traceback=f.get(Failures.TRACEBACK) or None,
                )
            )
        return out

    def add_auth_checks(self, checks: Sequence[AuthCheck]) -> None:
        if not checks:
            return
        self._table(AuthChecks.TABLE).batch_create(
            [
                _without_blanks(
                    {
                        AuthChecks.CHECK_ID: _sortable_id(),
                        AuthChecks.NAME: c.name,
                        AuthChecks.OK: c.ok,
                        AuthChecks.CATEGORY: c.category,
                        AuthChecks.STATUS_CODE: c.status,
                        AuthChecks.LATENCY_MS: c.latency_ms,
                        AuthChecks.HINT: c.hint,
                        AuthChecks.CHECKED_AT: _ts(c.checked_at),
                        AuthChecks.DETAIL: c.detail,
                    }
                )
                for c in checks
            ]
        )

    def list_auth_checks(self, *, since: datetime | None = None, limit: int | None = None) -> list[AuthCheck]:
        out = []
        for record in self._newest(AuthChecks.TABLE, AuthChecks.CHECKED_AT, AuthChecks.CHECK_ID, since, limit):
            f = record["fields"]
            out.append(
                AuthCheck(
                    name=str(f.get(AuthChecks.NAME, "")),
                    ok=bool(f.get(AuthChecks.OK, False)),
                    category=f.get(AuthChecks.CATEGORY) or None,
                    status=_opt_int(f.get(AuthChecks.STATUS_CODE)),
                    latency_ms=float(f.get(AuthChecks.LATENCY_MS, 0.0)),
                    hint=str(f.get(AuthChecks.HINT, "")),
                    checked_at=_parse_ts(f.get(AuthChecks.CHECKED_AT)) or _created(record),
                    detail=str(f.get(AuthChecks.DETAIL, "")),
                )
            )
        return out

    # lease ---------------------------------------------------------------------------------------------
    def _lease_head(self, name: str) -> tuple[Lease | None, int, bool]:
        """(current holder, highest generation, a claim is in progress), read from the base."""
        records = self._table(Leases.TABLE).all(
            formula=_formula(_eq(Leases.NAME, name)), sort=[f"-{Leases.GENERATION}"], max_records=2
        )
        self._lease_heads.pop(name, None)
        if not records:
            self._lease_heads[name] = (None, 0)
            return None, 0, False
        top = records[0]
        generation = _int(top["fields"].get(Leases.GENERATION))
        if _lease_filled(top):
            current = _lease(top)
            self._lease_heads[name] = (current, generation)
            return current, generation, False
        claimed = _parse_ts(top["fields"].get(Leases.CLAIMED_AT)) or _created(top)
        in_progress = datetime.now(UTC) - claimed < timedelta(seconds=LEASE_CLAIM_GRACE_S)
        previous = _lease(records[1]) if len(records) > 1 and _lease_filled(records[1]) else None
        return previous, generation, in_progress

    def get_lease(self, name: str) -> Lease | None:
        return self._lease_head(name)[0]

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        """Compare-and-set. The head this process last read or wrote saves a read: if it is out of date, the
        claim of the next generation finds that generation taken and the swap fails, as it must."""
        cached = self._lease_heads.get(name)
        if cached is not None and cached[0] == expected:
            current, generation, in_progress = cached[0], cached[1], False
        else:
            current, generation, in_progress = self._lease_head(name)
        if in_progress or current != expected:
            return False
        if current is None and new is None:
            return True
        table = self._table(Leases.TABLE)
        generation += 1
        record, created = self._claim(
            table,
            {
                Leases.LEASE_KEY: f"{name}#{generation}",
                Leases.NAME: name,
                Leases.GENERATION: generation,
                Leases.CLAIMED_AT: _ts(datetime.now(UTC)),
            },
            [Leases.LEASE_KEY],
        )
        if not created:
            self._lease_heads.pop(name, None)
            return False
        table.update(record["id"], _lease_fields(new) if new is not None else {Leases.RELEASED: True})
        self._lease_heads[name] = (new, generation)
        mine = self._lease_records.setdefault(name, [])
        if new is None and mine:
            table.batch_delete(mine)  # the generations this process wrote; the release record stays
            mine.clear()
        mine.append(record["id"])
        return True


def _ms(dt: datetime) -> datetime:
    """The time as Airtable keeps it (milliseconds, UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _event_from_dict(data: Mapping[str, Any], run_id: str, client_id: str) -> RunEvent:
    return RunEvent(
        run_id=run_id,
        client_id=client_id,
        stage=str(data.get("stage", "")),
        kind=EventKind(data.get("kind", EventKind.INFO.value)),
        message=str(data.get("message", "")),
        metrics=dict(data.get("metrics") or {}),
        at=_parse_ts(data.get("at")) or datetime.now(UTC),
    )


__all__ = [
    "AirtableApi",
    "AirtableLeadBase",
    "AirtableStore",
    "RequestPacer",
    "airtable_error",
    "default_pace_dir",
    "make_api",
    "validate_base_id",
]
