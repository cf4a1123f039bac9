"""Airtable API access: configuration, leadkit's request policy (`AirtableApi`) and the mapping of Airtable's
answers to leadkit errors."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from pyairtable import Api, Table
from pyairtable.api.retrying import retry_strategy
from pyairtable.formulas import EQ, OR, Field, to_formula_str

from leadkit import deadline_scope
from leadkit.config import Settings
from leadkit.deadline import Deadline
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
from leadkit.store.airtable.codecs import Fields, Record
from leadkit.store.airtable.pacing import RequestPacer
from leadkit.store.airtable.usage import USAGE_FILE, UsageLog
from leadkit.store.schema import BASE_ID_RE, MAX_RECORDS_PER_REQUEST

log = logging.getLogger(__name__)

#: How many times a 429 is waited out before the request fails with RateLimitError.
RATE_LIMIT_ATTEMPTS = 8
CONNECT_TIMEOUT_S = 5.0
#: Once the client's budget has run out (its record is being written back), a request may still wait this long
#: for its turn in the pace: less than the smallest margin the workflow keeps for the write-back (2 s).
AFTER_DEADLINE_WAIT_S = 1.0
#: The methods urllib3 may retry after a read error or a 5xx (updates and upserts are idempotent; creates are not).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
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
    policy = ApiPolicy(
        endpoint_url=settings.airtable_endpoint_url,
        read_timeout_s=settings.airtable_timeout_s,
        rate_limit_wait_s=settings.airtable_rate_limit_wait_s,
        max_requests_per_s=settings.airtable_max_requests_per_s,
        token_max_requests_per_s=max(settings.airtable_token_max_requests_per_s, settings.airtable_max_requests_per_s),
        usage_path=Path(settings.leadkit_home) / USAGE_FILE,
    )
    return AirtableApi(token.strip(), policy)


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
    if status == 422 and kind == "INVALID_VALUE_FOR_COLUMN" and "characters" in err_message:
        return DataError(
            f"{in_table} refused a value that is too long (422 {err_type}: {err_message})",
            hint="An Airtable text cell holds at most 100,000 characters; leadkit cuts what it writes to fit, "
            "so this is a bug to report.",
            table=table,
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


@dataclass(frozen=True)
class ApiPolicy:
    """How an `AirtableApi` talks to Airtable: where, how long it waits for an answer and out a 429, how fast it
    may go (per base, and across the token's bases; `pace_dir`: where the shared schedules live, else the system's
    temporary folder) and where it counts its requests (`usage_path`: the workspace's tally, else nowhere)."""

    endpoint_url: str = "https://api.airtable.com"
    read_timeout_s: float = 30.0
    rate_limit_wait_s: float = 31.0
    rate_limit_attempts: int = RATE_LIMIT_ATTEMPTS
    max_requests_per_s: float = 4.0
    token_max_requests_per_s: float | None = None
    pace_dir: Path | None = None
    usage_path: Path | None = None


DEFAULT_POLICY = ApiPolicy()


class AirtableApi(Api):
    """pyairtable's `Api` with leadkit's request policy (see the module docstring)."""

    def __init__(
        self, token: str, policy: ApiPolicy = DEFAULT_POLICY, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        retry = retry_strategy(
            total=3,
            read=1,
            status_forcelist=(500, 502, 503, 504),
            # a create (POST) whose answer was lost may have been acted on: never re-sent blindly (create_once)
            allowed_methods=IDEMPOTENT_METHODS,
            backoff_factor=0.5,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        super().__init__(
            token,
            timeout=(CONNECT_TIMEOUT_S, policy.read_timeout_s),  # type: ignore[arg-type]  # requests takes floats
            retry_strategy=retry,
            endpoint_url=policy.endpoint_url,
        )
        self.policy = policy
        self.rate_limit_wait_s = policy.rate_limit_wait_s
        self.rate_limit_attempts = policy.rate_limit_attempts
        self._sleep = sleep
        self.rate_limit_waits = 0
        self.pacer = RequestPacer(
            policy.max_requests_per_s,
            token_rate=policy.token_max_requests_per_s,
            token_key=hashlib.sha256(token.encode()).hexdigest()[:16],
            directory=policy.pace_dir,
            sleep=sleep,
        )
        #: The requests this API made (by base), also added to the workspace's tally when it has a path.
        self.usage = UsageLog(policy.usage_path)

    def request(
        self,
        method: str,
        url: str,
        fallback: tuple[str, str] | None = None,
        options: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> Any:
        """One Airtable request under leadkit's policy. A 429 is waited out (up to `rate_limit_attempts` tries)
        only while the wait ends within the client's time budget (`leadkit.deadline_scope.current()`); a wait
        that would outlast it fails at once with RateLimitError, leaving the budget's margin to the write-back."""
        budget = deadline_scope.current()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._request_once(method, url, fallback, options, params, json, budget)
            except _RateLimited as exc:
                base, table = _where(exc.url)
                seconds = exc.wait_s + random.uniform(0, min(1.0, exc.wait_s / 10))
                if attempt >= self.rate_limit_attempts:
                    raise RateLimitError(
                        f"Airtable kept answering 429 for {method} on table {table!r} of base {base} after "
                        f"{self.rate_limit_attempts} attempts",
                        url=urlsplit(exc.url).path,
                        status=429,
                    ) from None
                if budget is not None and seconds > budget.remaining():
                    raise RateLimitError(
                        f"Airtable answered 429 for {method} on table {table!r} of base {base}; its penalty "
                        f"({exc.wait_s:.0f} s) outlasts the client's time budget ({budget.remaining():.1f} s left)",
                        hint="Another process or host sent too many requests to this base; the client's record "
                        "is written in the time kept for it.",
                        url=urlsplit(exc.url).path,
                        status=429,
                    ) from None
                self.rate_limit_waits += 1
                log.warning("Airtable rate-limited %s %s; waiting %.1f s", method, urlsplit(url).path, seconds)
                self._sleep(seconds)

    def _request_once(
        self,
        method: str,
        url: str,
        fallback: tuple[str, str] | None,
        options: dict[str, Any] | None,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        budget: Deadline | None = None,
    ) -> Any:
        path = urlsplit(url).path
        method = method.upper()
        base = _where(url)[0]
        most = None if budget is None else budget.remaining() + AFTER_DEADLINE_WAIT_S
        if self.pacer.wait(str(self.endpoint_url), base, max_wait_s=most) is None:
            raise RateLimitError(
                f"Airtable {method} on base {base or '-'} would wait for its turn (the pace shared with the "
                f"other processes, or a 429 penalty) past the client's time budget ({budget!r})",
                hint="The base is busy (a penalty is on, or many clients share its pace); the client's record is "
                "written in the time kept for it.",
                url=path,
            )
        self.usage.request(
            base,
            write=method != "GET" and not path.endswith("/listRecords"),
            table=_where(url)[1],
            delete=method == "DELETE",
        )
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


def claim(table: Table, key: Fields, key_fields: list[str]) -> tuple[Record, bool]:
    """Create the record keyed by `key` unless it exists: an upsert that sends only the key, so an
    existing record is left as it is. (record, created?)"""
    result = table.batch_upsert([{"fields": key}], key_fields=key_fields)
    record = result["records"][0]
    return dict(record), record["id"] in result["createdRecords"]


def create_once(table: Table, records: list[Fields], key_field: str) -> list[Record]:
    """Create `records`, each carrying a unique value in `key_field`, so that a create whose answer was lost (a
    timeout, a dropped connection, a 5xx after Airtable may have acted) is looked up by its keys before anything
    is sent again: only the records not found are created, once. Returns the records as stored."""
    out: list[Record] = []
    for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
        chunk = records[start : start + MAX_RECORDS_PER_REQUEST]
        try:
            out += [dict(r) for r in table.batch_create(chunk)]
            continue
        except UpstreamError as exc:
            lost = exc
        keys = [str(r[key_field]) for r in chunk]
        found: list[Record] = [
            dict(r)
            for r in table.all(formula=to_formula_str(OR(*(EQ(Field(key_field), k) for k in keys))))
            if str(r["fields"].get(key_field)) in keys
        ]
        have = {str(dict(r["fields"]).get(key_field)) for r in found}
        missing = [r for r in chunk if str(r[key_field]) not in have]
        log.warning(
            "Airtable create on %s lost its answer (%s): %d of %d records were created; creating the other %d",
            table.name,
            lost,
            len(found),
            len(chunk),
            len(missing),
        )
        out += found
        if missing:
            out += [dict(r) for r in table.batch_create(missing)]
    return out
