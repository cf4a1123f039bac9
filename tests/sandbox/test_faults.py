"""Fault injection, control routes and stats, seen on the wire with raw httpx."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from leadkit_sandbox.core import (
    FAULT_MODES,
    FaultRegistry,
    ServiceApp,
    SharedState,
    json_response,
    serve_app,
    stop_server,
)
from leadkit_sandbox.core import Request as SandboxRequest
from leadkit_sandbox.core import Response as SandboxResponse
from leadkit_sandbox.server import Sandbox

JSON_ERROR_MODES = {
    "json_401": (401, "AUTHENTICATION_REQUIRED"),
    "json_403": (403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"),
    "json_404": (404, "MODEL_ID_NOT_FOUND"),
    "timeout_408": (408, "REQUEST_TIMEOUT"),
    "rate_limit_429": (429, "RATE_LIMIT_REACHED"),
    "server_500": (500, "SERVER_ERROR"),
    "bad_gateway_502": (502, "BAD_GATEWAY"),
}


def add_fault(client: httpx.Client, **rule: Any) -> dict[str, Any]:
    resp = client.post("/__sandbox/faults", json=rule)
    assert resp.status_code == 201, resp.text
    return resp.json()["fault"]


def leads(client: httpx.Client, base_id: str, **kwargs: Any) -> httpx.Response:
    return client.get(f"/v0/{base_id}/Leads", **kwargs)


@pytest.mark.parametrize("mode", sorted(JSON_ERROR_MODES))
def test_json_error_modes_use_airtable_bodies(http: httpx.Client, base_id: str, mode: str) -> None:
    add_fault(http, service="airtable", mode=mode)
    resp = leads(http, base_id)
    status, type_ = JSON_ERROR_MODES[mode]
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["type"] == type_ and body["error"]["message"]
    if status == 429:
        assert int(resp.headers["Retry-After"]) >= 1
    assert leads(http, base_id).status_code == 200  # times defaults to 1


@pytest.mark.parametrize(("mode", "status"), [("html_200", 200), ("html_401", 401), ("html_404", 404)])
def test_html_modes(http: httpx.Client, base_id: str, mode: str, status: int) -> None:
    add_fault(http, service="airtable", mode=mode)
    resp = leads(http, base_id)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.text.lstrip().startswith("<")
    with pytest.raises(json.JSONDecodeError):
        resp.json()


def test_truncated_json(http: httpx.Client, base_id: str) -> None:
    add_fault(http, service="airtable", mode="truncated_json")
    resp = leads(http, base_id)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.content.startswith(b"{")
    with pytest.raises(json.JSONDecodeError):
        resp.json()
    assert leads(http, base_id).json() == {"records": []}


def test_drop_connection(http: httpx.Client, base_id: str) -> None:
    add_fault(http, service="airtable", mode="drop_connection")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        leads(http, base_id)
    assert leads(http, base_id).status_code == 200  # the client reconnects; the server lives on


def test_slow_then_normal_answer(http: httpx.Client, base_id: str) -> None:
    add_fault(http, service="airtable", mode="slow", delay_s=0.3)
    started = time.monotonic()
    resp = leads(http, base_id)
    assert time.monotonic() - started >= 0.3
    assert resp.status_code == 200 and resp.json() == {"records": []}


def test_slow_past_client_timeout(sandbox: Sandbox, base_id: str, token: str) -> None:
    sandbox.add_fault(service="airtable", mode="slow", delay_s=0.5)
    with httpx.Client(base_url=sandbox.airtable_url, headers={"Authorization": f"Bearer {token}"}) as client:
        with pytest.raises(httpx.ReadTimeout):
            leads(client, base_id, timeout=0.1)


def test_every_mode_is_accepted_and_listed(http: httpx.Client) -> None:
    for mode in FAULT_MODES:
        add_fault(http, service="airtable", mode=mode, path="^/never$")
    listed = http.get("/__sandbox/faults").json()["faults"]
    assert [f["mode"] for f in listed] == list(FAULT_MODES)
    assert http.delete("/__sandbox/faults").json() == {"cleared": len(FAULT_MODES)}
    assert http.get("/__sandbox/faults").json() == {"faults": []}


def test_times_and_until_cleared(http: httpx.Client, base_id: str) -> None:
    add_fault(http, service="airtable", mode="server_500", times=2)
    assert [leads(http, base_id).status_code for _ in range(3)] == [500, 500, 200]
    add_fault(http, service="airtable", mode="bad_gateway_502", times=-1)
    assert [leads(http, base_id).status_code for _ in range(5)] == [502] * 5
    http.delete("/__sandbox/faults")
    assert leads(http, base_id).status_code == 200


def test_path_regex_scopes_a_fault(http: httpx.Client, base_id: str, table: Any) -> None:
    table.create({"Client ID": "Acme-Co"})
    add_fault(http, service="airtable", mode="json_403", path=r"filterByFormula=.*Globex", times=-1)
    assert leads(http, base_id).status_code == 200
    assert leads(http, base_id, params={"filterByFormula": "{Client ID}='Acme-Co'"}).status_code == 200
    assert leads(http, base_id, params={"filterByFormula": "{Client ID}='Globex'"}).status_code == 403
    add_fault(http, service="airtable", mode="server_500", path="/meta/whoami")
    assert http.get("/v0/meta/whoami").status_code == 500


def test_body_regex_scopes_a_fault(http: httpx.Client, base_id: str) -> None:
    add_fault(http, service="airtable", mode="server_500", body='"Client ID": ?"Globex"', times=-1)
    ok = http.post(f"/v0/{base_id}/Leads", json={"fields": {"Client ID": "Acme-Co"}})
    assert ok.status_code == 200
    hit = http.post(f"/v0/{base_id}/Leads", json={"fields": {"Client ID": "Globex"}})
    assert hit.status_code == 500
    assert [r["fields"]["Client ID"] for r in leads(http, base_id).json()["records"]] == ["Acme-Co"]


def test_faults_are_per_service(sandbox: Sandbox, http: httpx.Client, base_id: str) -> None:
    sandbox.add_fault(service="apify", mode="server_500", times=-1)
    assert leads(http, base_id).status_code == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"service": "airtable"},
        {"service": "nope", "mode": "server_500"},
        {"service": "airtable", "mode": "explode"},
        {"service": "airtable", "mode": "server_500", "times": 0},
        {"service": "airtable", "mode": "server_500", "times": "2"},
        {"service": "airtable", "mode": "server_500", "path": "(unclosed"},
        {"service": "airtable", "mode": "slow", "delay_s": -1},
        {"service": "airtable", "mode": "server_500", "colour": "red"},
        ["not", "a", "rule"],
    ],
)
def test_malformed_rule_gets_400(http: httpx.Client, rule: Any) -> None:
    resp = http.post("/__sandbox/faults", json=rule)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "INVALID_FAULT_RULE"
    assert http.get("/__sandbox/faults").json() == {"faults": []}


def test_malformed_rule_in_process_raises_value_error(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="accepted"):
        sandbox.add_fault(service="airtable", mode="meltdown")
    with pytest.raises(ValueError):
        FaultRegistry.parse({"service": "airtable", "mode": "slow", "delay_s": True})


def test_invalid_json_to_control_route(http: httpx.Client) -> None:
    resp = http.post("/__sandbox/faults", content=b"{oops")
    assert resp.status_code == 400


def test_control_routes_on_the_apify_port_control_both(sandbox: Sandbox, http: httpx.Client, base_id: str) -> None:
    assert sandbox.apify_url, "the Apify sandbox should be served"
    with httpx.Client(base_url=sandbox.apify_url, timeout=10) as apify:
        add_fault(apify, service="airtable", mode="json_401")
        assert leads(http, base_id).status_code == 401
        add_fault(apify, service="apify", mode="server_500")
        resp = apify.get("/v2/users/me")
        assert resp.status_code == 500
        error = resp.json()["error"]
        assert set(error) == {"type", "message"} and error["type"] != "SERVER_ERROR"  # Apify's own types
        stats = apify.get("/__sandbox/stats").json()
        assert stats["by_service"] == {"airtable": 1, "apify": 1}


def test_control_routes_need_no_token(sandbox: Sandbox) -> None:
    with httpx.Client(base_url=sandbox.airtable_url) as client:
        assert client.get("/__sandbox/faults").status_code == 200
        assert client.get("/__sandbox/stats").status_code == 200
        assert client.get("/__sandbox/nothing").json() == {"error": "NOT_FOUND"}


def test_stats_by_service_base_method_path(sandbox: Sandbox, http: httpx.Client, base_id: str) -> None:
    other = sandbox.airtable.create_base("Globex", [{"name": "Leads", "fields": [{"name": "Name", "type": "url"}]}])
    leads(http, base_id)
    leads(http, base_id)
    http.post(f"/v0/{base_id}/Leads", json={"fields": {"Name": "x"}})
    leads(http, other)
    http.get("/v0/meta/whoami")
    add_fault(http, service="airtable", mode="server_500")
    leads(http, other)
    stats = http.get("/__sandbox/stats").json()
    assert stats["total"] == 6
    assert stats["by_service"] == {"airtable": 6}
    assert stats["by_base"] == {base_id: 3, other: 2, "-": 1}
    assert stats["by_method"] == {"GET": 5, "POST": 1}
    assert stats["by_path"][f"GET /v0/{base_id}/Leads"] == 2
    assert stats["by_path"][f"POST /v0/{base_id}/Leads"] == 1
    assert stats["by_status"] == {"200": 5, "500": 1}
    assert stats["requests"][-1]["fault"] == "server_500"
    assert sandbox.state.stats.count(service="airtable", base=other) == 2
    assert http.delete("/__sandbox/stats").status_code == 200
    assert http.get("/__sandbox/stats").json()["total"] == 0


class _Boom(ServiceApp):
    service = "apify"

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.path == "/boom":
            raise RuntimeError("kaboom")
        return json_response(200, {"body": req.json(default=None), "token": req.bearer_token()})


def test_core_turns_app_crashes_into_500_and_keeps_serving(capsys: pytest.CaptureFixture[str]) -> None:
    state = SharedState(["tokCore"])
    server = serve_app(_Boom(), state, "127.0.0.1", 0)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_address[1]}", timeout=5) as client:
            crash = client.get("/boom")
            assert crash.status_code == 500 and "error" in crash.json()
            ok = client.post("/echo", json={"a": 1}, headers={"Authorization": "Bearer tokX"})
            assert ok.json() == {"body": {"a": 1}, "token": "tokX"}
            assert client.post("/echo", content=b"[bad").status_code == 400
    finally:
        stop_server(server)
    assert "kaboom" in capsys.readouterr().err


def test_paused_faults_apply_to_nothing_and_then_again_with_the_uses_they_had_left(
    sandbox: Sandbox, http: httpx.Client, base_id: str
) -> None:
    """A harness's own requests between the runs it injects faults into (bench/chaos.py reads the store after a
    killed batch) hit none of the rules; the rules then apply again, each with the uses it had left."""
    add_fault(http, service="airtable", mode="server_500", times=2)
    assert leads(http, base_id).status_code == 500
    with sandbox.faults_paused():
        assert [leads(http, base_id).status_code for _ in range(3)] == [200, 200, 200]
        assert http.get("/__sandbox/faults").json()["faults"] == []
    (rule,) = http.get("/__sandbox/faults").json()["faults"]
    assert rule["times"] == 1
    assert [leads(http, base_id).status_code for _ in range(2)] == [500, 200]
