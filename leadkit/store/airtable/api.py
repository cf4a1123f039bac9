"""Airtable API access: configuration, leadkit's request policy (`AirtableApi`) and the mapping of Airtable's
answers to leadkit errors."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from pyairtable import Api, Table
from pyairtable.api.retrying import retry_strategy
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from leadkit.config import Settings
from leadkit.errors import (
    AuthError,
    ConfigError,
    LeadkitError,
    MissingRecordError,
    RateLimitError,
    SchemaError,
    UpstreamError,
)
from leadkit.store.airtable.codecs import Fields, Record
from leadkit.store.airtable.pacing import RequestPacer
from leadkit.store.schema import BASE_ID_RE

log = logging.getLogger(__name__)

#: How many times a 429 is waited out before the request fails with RateLimitError.
RATE_LIMIT_ATTEMPTS = 8
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


def claim(table: Table, key: Fields, key_fields: list[str]) -> tuple[Record, bool]:
    """Create the record keyed by `key` unless it exists: an upsert that sends only the key, so an
    existing record is left as it is. (record, created?)"""
    result = table.batch_upsert([{"fields": key}], key_fields=key_fields)
    record = result["records"][0]
    return dict(record), record["id"] in result["createdRecords"]
