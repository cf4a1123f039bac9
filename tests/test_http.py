"""The HTTP policy: classification before parsing, retries, rate limits, no secrets in errors."""

from __future__ import annotations

import httpx
import pytest

from leadkit.errors import (
    AuthError,
    Category,
    ConfigError,
    DataError,
    RateLimitError,
    SchemaError,
    UpstreamError,
)
from leadkit.http import HttpClient, RetryPolicy, Timeouts, classify_response, safe_url

TOKEN = "apify_api_CANARY1234567890"
FAST = RetryPolicy(attempts=3, initial_s=0.001, max_s=0.002, jitter_s=0.001, max_rate_limit_wait_s=1.0)
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"


def client(handler, retry: RetryPolicy = FAST, sleeps: list[float] | None = None) -> HttpClient:
    record = sleeps if sleeps is not None else []
    return HttpClient(
        "https://api.example.test",
        service="Apify",
        token=TOKEN,
        retry=retry,
        transport=httpx.MockTransport(handler),
        sleep=record.append,
    )


def answer(status: int, body: bytes, content_type: str = "application/json", **headers: str):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, content=body, headers={"content-type": content_type, **headers})

    return handler, calls


@pytest.mark.parametrize(
    ("status", "body", "ctype", "expected"),
    [
        (200, HTML, "text/html", ConfigError),
        (401, HTML, "text/html", AuthError),
        (404, HTML, "text/html", ConfigError),
        (200, b"", "application/json", ConfigError),
        (200, b"   ", "text/plain", ConfigError),
        (401, b'{"error":{"type":"user-or-token-not-found","message":"bad token"}}', "application/json", AuthError),
        (403, b'{"error":{"type":"insufficient-permissions","message":"no"}}', "application/json", AuthError),
        (404, b'{"error":"NOT_FOUND"}', "application/json", ConfigError),
        (408, b'{"error":{"type":"request-timeout"}}', "application/json", UpstreamError),
        (500, b"", "text/plain", UpstreamError),
        (502, HTML, "text/html", UpstreamError),
        (503, b'{"error":{"type":"x"}}', "application/json", UpstreamError),
        (429, b'{"error":{"type":"rate-limit-exceeded"}}', "application/json", RateLimitError),
        (302, b"", "text/html", ConfigError),
        (
            422,
            b'{"error":{"type":"UNKNOWN_FIELD_NAME","message":"Unknown field name: \\"X\\""}}',
            "application/json",
            SchemaError,
        ),
        (400, b'{"error":{"type":"invalid-input","message":"bad"}}', "application/json", DataError),
        (402, b'{"error":{"type":"not-enough-usage-to-run-paid-actor"}}', "application/json", ConfigError),
    ],
)
def test_classify_response(status: int, body: bytes, ctype: str, expected: type) -> None:
    err = classify_response(status, ctype, body, "https://api.example.test/v2/x?token=SECRET&limit=5")
    assert type(err) is expected
    assert err is not None
    assert err.details["status"] == status
    assert err.details["url"] == "https://api.example.test/v2/x?limit=5"
    assert "SECRET" not in err.message
    assert err.details["body_excerpt"] == body.decode()[:200]


def test_classify_accepts_json_success() -> None:
    assert classify_response(200, "application/json", b' {"data": {}}', "u") is None
    assert classify_response(200, "application/json; charset=utf-8", b"[1, 2]", "u") is None
    assert classify_response(201, "text/plain", b"[]", "u") is None  # starts like JSON: parsed, not guessed


def test_html_200_message_names_url_status_type_and_body() -> None:
    handler, calls = answer(200, HTML, "text/html; charset=utf-8")
    with client(handler) as http, pytest.raises(ConfigError) as info:
        http.request_json("GET", "/v2/users/me")
    err = info.value
    assert len(calls) == 1, "a config error is not retried"
    assert "https://api.example.test/v2/users/me" in err.message
    assert "200" in err.message and "text/html" in err.message
    assert "<!DOCTYPE html>" in err.message
    assert "wrong base URL" in err.message and "login page" in err.message
    assert err.category is Category.CONFIG
    assert err.details["content_type"] == "text/html; charset=utf-8"


def test_html_401_is_auth_and_says_html() -> None:
    handler, _ = answer(401, HTML, "text/html")
    with client(handler) as http, pytest.raises(AuthError) as info:
        http.request_json("GET", "/v2/users/me")
    assert "not JSON" in info.value.message and "Apify" in info.value.message


def test_truncated_json_is_config_error() -> None:
    handler, calls = answer(200, b'{"data": {"id": "abc", "sta')
    with client(handler) as http, pytest.raises(ConfigError) as info:
        http.request_json("GET", "/v2/actor-runs/abc")
    assert "truncated" in info.value.message
    assert len(calls) == 1


def test_upstream_is_retried_then_succeeds() -> None:
    statuses = iter([500, 502, 200])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        return httpx.Response(status, json={"data": {"ok": True}} if status == 200 else {"error": {"type": "x"}})

    with client(handler, sleeps=sleeps) as http:
        resp = http.request_json("GET", "/v2/users/me")
    assert resp.status == 200 and resp.data == {"data": {"ok": True}}
    assert len(sleeps) == 2 and all(0 < s < 0.01 for s in sleeps)
    assert resp.latency_ms >= 0


def test_upstream_gives_up_after_attempts() -> None:
    handler, calls = answer(503, b'{"error":{"type":"service-unavailable"}}')
    with client(handler) as http, pytest.raises(UpstreamError):
        http.request_json("GET", "/v2/users/me")
    assert len(calls) == FAST.attempts


def test_timeouts_and_dropped_connections_are_upstream_and_retried() -> None:
    errors = iter([httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"), httpx.ConnectError("no")])

    def handler(request: httpx.Request) -> httpx.Response:
        raise next(errors)

    with client(handler) as http, pytest.raises(UpstreamError) as info:
        http.request_json("GET", "/v2/users/me")
    assert "connection" in info.value.message and info.value.details["url"].endswith("/v2/users/me")


def test_rate_limit_waits_retry_after() -> None:
    statuses = iter([429, 200])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        headers = {"Retry-After": "0.5"} if status == 429 else {}
        return httpx.Response(status, json={"ok": status == 200}, headers=headers)

    with client(handler, sleeps=sleeps) as http:
        assert http.request_json("GET", "/x").data == {"ok": True}
    assert sleeps == [0.5]


def test_rate_limit_beyond_the_budget_raises() -> None:
    handler, calls = answer(429, b'{"error":{"type":"rate-limit-exceeded"}}', **{"Retry-After": "30"})
    with client(handler) as http, pytest.raises(RateLimitError) as info:
        http.request_json("GET", "/x")
    assert len(calls) == 1
    assert info.value.details["retry_after_s"] == 30


def test_token_goes_in_the_header_and_never_in_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            401, content=f"<html>bad token {TOKEN}</html>".encode(), headers={"content-type": "text/html"}
        )

    with client(handler) as http, pytest.raises(AuthError) as info:
        http.request_json("GET", "/v2/users/me", params={"token": TOKEN})
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    err = info.value
    text = err.message + repr(err.details) + str(err.to_dict())
    assert TOKEN not in text
    assert "Authorization" not in text and "Bearer" not in text


def test_timeouts_config_object() -> None:
    t = Timeouts(connect=1, read=2, write=3, pool=4).to_httpx()
    assert (t.connect, t.read, t.write, t.pool) == (1, 2, 3, 4)
    with pytest.raises(DataError):
        RetryPolicy(attempts=0)


def test_bad_base_url_is_config() -> None:
    with pytest.raises(ConfigError, match="not an http"):
        HttpClient("api.apify.com", service="Apify")


def test_safe_url_strips_token() -> None:
    assert safe_url("https://h/v2/x?token=abc&offset=3") == "https://h/v2/x?offset=3"
    assert safe_url("https://h/v2/x") == "https://h/v2/x"
