"""One HTTP policy for every outbound call: timeouts, classification before parsing, retries.

A response is classified from its status, content type and first bytes *before* anything parses it,
so an HTML login page or a proxy's error page becomes a named `config` (or `auth`) error with the URL,
status, content type and the start of the body, never "Unexpected token '<'" and never an empty
success. Errors carry the URL with any `token` query parameter removed; headers are never reported.

    status / body                          error             retried
    2xx JSON                               -                 -
    2xx not JSON (HTML, empty, truncated)  ConfigError       no
    3xx (redirect to a login page...)      ConfigError       no
    401, 403                               AuthError         no
    404                                    ConfigError       no
    400, 413, 422                          DataError / SchemaError (unknown field, select option)
    other 4xx                              ConfigError       no
    408, 5xx, timeout, dropped connection  UpstreamError     yes, exponential backoff with jitter
    429                                    RateLimitError    yes, after Retry-After (bounded)

A request that is not idempotent (a create, an actor start) is retried only when it certainly did not reach
the server (connection refused, connect timeout, 429): after a read timeout, a connection dropped after
sending, a 408 or a 5xx the server may have acted on it, so the error is raised with `details["sent"]` True
and the caller finds out what happened before sending again. A `Deadline` bounds every wait of a request
(the read timeout of each try and the sleeps between tries) by the time left in a client's budget.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from leadkit.deadline import Deadline
from leadkit.errors import (
    AuthError,
    ConfigError,
    DataError,
    DeadlineExceeded,
    LeadkitError,
    RateLimitError,
    SchemaError,
    UpstreamError,
)

__all__ = [
    "HttpClient",
    "JsonResponse",
    "RetryPolicy",
    "Timeouts",
    "classify_response",
    "safe_url",
]

log = logging.getLogger(__name__)

#: How much of a body an error message quotes.
EXCERPT_CHARS = 200

HTML_NOTE = "An HTML page where JSON was expected usually means a wrong base URL, a missing route or a login page."

#: Query parameters that may hold a secret and are removed from every URL leadkit reports.
_SECRET_PARAMS = {"token", "api_key", "apikey", "key", "access_token"}

#: Error types (Airtable) that mean the base lacks a field, table or select option.
_SCHEMA_TYPES = (
    "UNKNOWN_FIELD_NAME",
    "INVALID_MULTIPLE_CHOICE_OPTIONS",
    "TABLE_NOT_FOUND",
    "INVALID_VALUE_FOR_COLUMN",
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each phase of a request (httpx's four timeouts)."""

    connect: float = 5
    read: float = 30
    write: float = 30
    pool: float = 5

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry retryable failures (408, 5xx, timeouts, dropped connections, 429).

    `attempts` counts every try, the first included. Backoff starts at `initial_s`, doubles up to `max_s`,
    plus up to `jitter_s` of random jitter. A 429 waits its Retry-After (or the backoff when absent); the
    waits for 429s together may not exceed `max_rate_limit_wait_s`, past that the RateLimitError is raised.
    """

    attempts: int = 4
    initial_s: float = 0.5
    max_s: float = 8.0
    jitter_s: float = 0.5
    max_rate_limit_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise DataError(f"RetryPolicy.attempts is {self.attempts}; accepted: 1 or more (1 means no retry).")
        for name in ("initial_s", "max_s", "jitter_s", "max_rate_limit_wait_s"):
            if getattr(self, name) < 0:
                raise DataError(f"RetryPolicy.{name} is {getattr(self, name)}; accepted: 0 or more seconds.")


#: No retries at all (auth checks, where one honest answer is what is wanted).
NO_RETRY = RetryPolicy(attempts=1, max_rate_limit_wait_s=0)


@dataclass(frozen=True)
class JsonResponse:
    """A parsed answer; `headers` has lower-case names, `url` has no token in it."""

    status: int
    data: Any
    headers: Mapping[str, str]
    url: str
    latency_ms: float


def safe_url(url: str | httpx.URL) -> str:
    """The URL with secret-bearing query parameters (`token`, ...) removed."""
    parts = urlsplit(str(url))
    if not parts.query:
        return str(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in _SECRET_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def _looks_like_json(content_type: str, body: bytes) -> bool:
    first = body.lstrip()[:1]
    if first in (b"{", b"["):
        return True
    # A JSON scalar with a JSON content type ("null", a number, a string) is JSON too.
    return "json" in content_type.lower() and bool(first) and first != b"<"


def _excerpt(body: bytes) -> str:
    return body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


def service_error(body: bytes) -> tuple[str, str]:
    """The (type, message) of a JSON error body in Airtable's or Apify's shape, or ("", "")."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    error = data.get("error")
    if isinstance(error, str):
        return error, str(data.get("message", ""))
    if isinstance(error, dict):
        return str(error.get("type", "")), str(error.get("message", ""))
    return "", str(data.get("message", ""))


def classify_response(
    status: int, content_type: str, body: bytes, url: str, *, service: str = "the service"
) -> LeadkitError | None:
    """The error a response stands for, or None when it is a 2xx carrying JSON.

    Pure: it looks at the status, the content type and the first bytes only. A 2xx that starts like
    JSON but does not parse is caught by the caller (`not_json_error`).
    """
    url = safe_url(url)
    is_json = _looks_like_json(content_type, body)
    details: dict[str, Any] = {
        "url": url,
        "status": status,
        "content_type": content_type or "(none)",
        "body_excerpt": _excerpt(body),
    }
    if 200 <= status < 300:
        if is_json:
            return None
        return not_json_error(status, content_type, body, url, service=service)

    if is_json:
        err_type, err_message = service_error(body)
        details["error_type"] = err_type
        said = f": {err_type}" if err_type else ""
        said += f" ({err_message})" if err_message else ""
    else:
        said = f"; the body is not JSON ({_describe_body(content_type, body)}). {HTML_NOTE}"
    where = f"{service} answered {status} for {url}{said}".rstrip(".")

    if status in (401, 403):
        return AuthError(f"{where}. The token was refused or lacks access.", **details)
    if status == 404:
        return ConfigError(
            f"{where}. Nothing is at this URL: check the base URL setting and the IDs in the path.", **details
        )
    if status == 408 or status >= 500:
        return UpstreamError(f"{where}.", **details)
    if status == 429:
        return RateLimitError(f"{where}. {service} rate-limited the request.", **details)
    if 300 <= status < 400:
        return ConfigError(
            f"{service} redirected {url} ({status}) instead of answering; a redirect usually leads to a login "
            f"page or another host: check the base URL setting.",
            **details,
        )
    if is_json and status in (400, 422):
        err_type, _ = service_error(body)
        if err_type.upper() in _SCHEMA_TYPES:
            return SchemaError(f"{where}.", **details)
    if status in (400, 413, 422):
        return DataError(f"{where}. The request was refused as invalid.", **details)
    return ConfigError(f"{where}.", **details)


def _describe_body(content_type: str, body: bytes) -> str:
    if not body.strip():
        return f"empty body, content type {content_type or '(none)'}"
    return f"content type {content_type or '(none)'}, starts with {_excerpt(body)[:80]!r}"


def not_json_error(
    status: int, content_type: str, body: bytes, url: str, *, service: str = "the service", reason: str = ""
) -> ConfigError | AuthError:
    """The error for a body that is not the JSON expected (HTML, empty, truncated or invalid)."""
    url = safe_url(url)
    what = reason or _describe_body(content_type, body)
    message = (
        f"{service} answered {status} for {url} with a body that is not JSON ({what}). "
        f"Body starts: {_excerpt(body)!r}. {HTML_NOTE}"
    )
    details: dict[str, Any] = {
        "url": url,
        "status": status,
        "content_type": content_type or "(none)",
        "body_excerpt": _excerpt(body),
    }
    if status in (401, 403):
        return AuthError(message, **details)
    return ConfigError(message, **details)


class HttpClient:
    """An httpx client bound to one service's base URL, with the policy above.

    `transport` is the test seam (`httpx.MockTransport`); `sleep` lets tests observe waits.
    """

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        token: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{service} base URL {safe_url(base_url)!r} is not an http(s) URL; "
                f"accepted: e.g. https://api.example.com"
            )
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.timeouts = timeouts
        self.retry = retry
        self._token = token
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "leadkit"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeouts.to_httpx(),
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"HttpClient({self.base_url!r}, service={self.service!r})"

    # ------------------------------------------------------------------------------------------
    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        deadline: Deadline | None = None,
        expect: str = "json",
    ) -> JsonResponse:
        """Send a request and return its parsed JSON (`expect="text"`: its text), retrying what the policy retries.

        `idempotent` defaults to True for GET, PUT, DELETE and HEAD, False for POST and PATCH: see the module's
        docstring for what is retried then. `deadline` bounds every try's read timeout and every sleep."""
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        rate_limit_waited = [0.0]

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = wait_exponential_jitter(
                initial=self.retry.initial_s, max=self.retry.max_s, jitter=self.retry.jitter_s
            )(state)
            if isinstance(exc, RateLimitError):
                retry_after = exc.details.get("retry_after_s")
                return float(retry_after) if retry_after is not None else backoff
            return backoff

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.retry.attempts:
                return True
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, DeadlineExceeded):
                return True
            if not idempotent and isinstance(exc, UpstreamError) and exc.details.get("sent", True):
                return True  # it may have been acted on: the caller finds out before sending again
            if deadline is not None and wait(state) >= deadline.remaining():
                return True
            if isinstance(exc, RateLimitError):
                next_wait = wait(state)
                if rate_limit_waited[0] + next_wait > self.retry.max_rate_limit_wait_s:
                    return True
                rate_limit_waited[0] += next_wait
            return False

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s: retrying %s %s after attempt %d: %s",
                self.service,
                method,
                path,
                state.attempt_number,
                exc,
            )

        retrying = Retrying(
            retry=retry_if_exception_type((UpstreamError, RateLimitError)),
            stop=stop,
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(self._once, method, path, params, json, deadline, expect)

    def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        deadline: Deadline | None = None,
        expect: str = "json",
    ) -> JsonResponse:
        started = time.perf_counter()
        try:
            request = self._client.build_request(method, path, params=params, json=body)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ConfigError(f"{self.service}: cannot build a request for {path!r}: {exc}") from None
        url = safe_url(request.url)
        read_s = self.timeouts.read
        if deadline is not None:
            deadline.check(f"{method} {url}", url=url, sent=False)
            read_s = deadline.cap(read_s)
            if read_s < self.timeouts.read:
                request.extensions["timeout"] = httpx.Timeout(
                    connect=min(self.timeouts.connect, read_s), read=read_s, write=self.timeouts.write, pool=read_s
                ).as_dict()
        try:
            response = self._client.send(request)
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            if deadline is not None and deadline.expired:
                raise DeadlineExceeded(
                    f"{self.service} did not answer {method} {url} before the client's time budget of "
                    f"{deadline.seconds:.1f} s ran out.",
                    url=url,
                    status=None,
                    sent=sent,
                ) from None
            raise UpstreamError(
                f"{self.service} did not answer {method} {url} in time ({type(exc).__name__}; timeouts: "
                f"connect {self.timeouts.connect}s, read {read_s:g}s).",
                url=url,
                status=None,
                sent=sent,
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise ConfigError(f"{self.service}: unsupported URL {url}: {exc}", url=url, status=None) from None
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"{self.service}: the connection for {method} {url} failed ({type(exc).__name__}: "
                f"{self._scrub(str(exc)) or 'no detail'}).",
                url=url,
                status=None,
                sent=not isinstance(exc, httpx.ConnectError),
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000
        content = self._scrub_bytes(response.content)
        content_type = response.headers.get("content-type", "")
        if expect == "text" and 200 <= response.status_code < 300 and content_type.startswith("text/plain"):
            return JsonResponse(
                status=response.status_code,
                data=content.decode("utf-8", errors="replace"),
                headers=dict(response.headers),
                url=url,
                latency_ms=latency_ms,
            )
        error = classify_response(response.status_code, content_type, content, url, service=self.service)
        if error is not None:
            if isinstance(error, RateLimitError):
                error.details["retry_after_s"] = _retry_after(response.headers.get("retry-after"))
            raise error
        try:
            data = json.loads(response.content) if response.content.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise not_json_error(
                response.status_code,
                content_type,
                content,
                url,
                service=self.service,
                reason=f"invalid or truncated JSON: {exc}",
            ) from None
        return JsonResponse(
            status=response.status_code,
            data=data,
            headers=dict(response.headers),
            url=url,
            latency_ms=latency_ms,
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _scrub_bytes(self, body: bytes) -> bytes:
        if self._token and self._token.encode() in body:
            return body.replace(self._token.encode(), b"***")
        return body


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date is treated as absent)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
