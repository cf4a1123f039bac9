"""The HTTP policy for requests that may have been acted on, and the one deadline every wait draws on."""

from __future__ import annotations

import time

import httpx
import pytest

from leadkit.deadline import Deadline
from leadkit.errors import DeadlineExceeded, UpstreamError
from leadkit.http import HttpClient, RetryPolicy, Timeouts
from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN

RETRY = RetryPolicy(attempts=4, initial_s=0.01, max_s=0.02, jitter_s=0.0)


def client(handler: httpx.MockTransport | None = None, **kw: object) -> HttpClient:
    return HttpClient("http://api.test", service="Test", retry=RETRY, transport=handler, **kw)  # type: ignore[arg-type]


def counting(status: int | Exception) -> tuple[httpx.MockTransport, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status, json={"error": {"type": "x", "message": "y"}})

    return httpx.MockTransport(handle), seen


@pytest.mark.parametrize("status", [500, 502, 408])
def test_a_post_answered_5xx_is_not_re_sent(status: int) -> None:
    transport, seen = counting(status)
    with pytest.raises(UpstreamError) as info:
        client(transport).request_json("POST", "/things", json={})
    assert seen == ["POST"] and info.value.details.get("sent", True)
    transport, seen = counting(status)
    with pytest.raises(UpstreamError):
        client(transport).request_json("GET", "/things")
    assert seen == ["GET"] * RETRY.attempts, "a GET is retried as before"


def test_a_post_whose_connection_was_refused_is_retried() -> None:
    transport, seen = counting(httpx.ConnectError("refused"))
    with pytest.raises(UpstreamError) as info:
        client(transport).request_json("POST", "/things", json={})
    assert seen == ["POST"] * RETRY.attempts and info.value.details["sent"] is False


def test_a_post_whose_answer_was_dropped_is_not_re_sent() -> None:
    transport, seen = counting(httpx.RemoteProtocolError("server disconnected"))
    with pytest.raises(UpstreamError) as info:
        client(transport).request_json("POST", "/things", json={})
    assert seen == ["POST"] and info.value.details["sent"] is True


def test_the_deadline_caps_the_read_timeout_and_the_retries(sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="slow", times=-1, path=r"^/v2/users/me", delay_s=3)
    http = HttpClient(
        sandbox.apify_url, service="Apify", token=TOKEN, timeouts=Timeouts(read=30), retry=RetryPolicy(attempts=5)
    )
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        http.request_json("GET", "/v2/users/me", deadline=Deadline(0.6))
    assert time.monotonic() - started < 1.5, "no read outlived the budget (the read timeout was 30 s)"
    with pytest.raises(DeadlineExceeded) as info:
        http.request_json("GET", "/v2/users/me", deadline=Deadline(0))
    assert info.value.details["sent"] is False
    sandbox.clear_faults()
    http.close()
