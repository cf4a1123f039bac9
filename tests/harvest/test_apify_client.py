"""The Apify client against the real sandbox (and a MockTransport for statuses the sandbox never sends)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.errors import AuthError, ConfigError, UpstreamError
from leadkit.harvest.apify import ApifyClient
from leadkit.http import HttpClient, Timeouts
from leadkit_sandbox.apify import posts_for_profile
from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN, MakeClient, profile_url

URLS = [profile_url(i) for i in range(6)]


def expected_items(urls: list[str], max_posts: int = 100) -> int:
    return sum(len(posts_for_profile(u, max_posts)) for u in urls)


def test_run_actor_starts_waits_and_reads(make_client: MakeClient, sandbox: Sandbox) -> None:
    apify = make_client()
    result = apify.run_actor({"targetUrls": URLS, "maxPosts": 2})
    run, items = result.run, result.items
    assert "Scraped" in result.log and not result.adopted
    assert run.usage_usd is not None and run.usage_usd > 0
    assert run.status == "SUCCEEDED" and run.succeeded and run.finished
    assert run.dataset_id and run.started_at and run.finished_at and run.finished_at >= run.started_at
    assert run.started_at.tzinfo is not None
    assert len(items) == expected_items(URLS, 2) > 0
    assert {i["query"]["targetUrl"] for i in items} <= set(URLS)
    stats = sandbox.stats()["by_path"]
    assert stats["POST /v2/acts/harvestapi~linkedin-profile-posts/runs"] == 1


def test_dataset_is_read_in_pages(make_client: MakeClient, sandbox: Sandbox) -> None:
    apify = make_client()
    urls = [profile_url(i) for i in range(20)]
    result = apify.run_actor({"targetUrls": urls, "maxPosts": 0})
    run, items = result.run, result.items
    total = expected_items(urls, 0)
    assert total > 7
    sandbox.state.stats.reset()
    assert run.dataset_id is not None
    paged = apify.dataset_items(run.dataset_id, page_size=3)
    assert paged == items
    assert sandbox.state.stats.count(path=r"/items$") == -(-total // 3)  # ceil: the last page is short or ends


def test_wait_for_finish_is_used(make_client: MakeClient, sandbox: Sandbox) -> None:
    sandbox.apify.run_duration_s = 0.4
    apify = make_client(poll_wait_s=5)
    run = apify.start_run({"targetUrls": URLS[:1]}).run
    assert run.status in ("READY", "RUNNING")
    started = time.monotonic()
    done = apify.wait(run.id)
    assert done.status == "SUCCEEDED"
    assert time.monotonic() - started < 2
    assert sandbox.state.stats.count(path=r"^/v2/actor-runs/") == 1, "one held poll, not a busy loop"


def test_total_wait_is_bounded(make_client: MakeClient, sandbox: Sandbox) -> None:
    sandbox.apify.run_duration_s = 30
    apify = make_client(max_wait_s=0.3, poll_wait_s=0)
    run = apify.start_run({"targetUrls": URLS[:1]}).run
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        apify.wait(run.id)
    assert time.monotonic() - started < 2
    assert run.id in info.value.message and "RUNNING" in info.value.message
    assert info.value.details["apify_run_id"] == run.id


@pytest.mark.parametrize("outcome", ["FAILED", "TIMED-OUT", "ABORTED"])
def test_unsuccessful_run_raises_naming_run_and_status(make_client: MakeClient, outcome: str) -> None:
    apify = make_client()
    with pytest.raises(UpstreamError) as info:
        apify.run_actor({"targetUrls": URLS, "_sandboxOutcome": outcome})
    err = info.value
    assert outcome in err.message and err.details["apify_status"] == outcome
    assert err.details["apify_run_id"] in err.message


def test_forced_outcome_in_process(make_client: MakeClient, sandbox: Sandbox) -> None:
    sandbox.apify.outcome = "TIMED-OUT"
    with pytest.raises(UpstreamError, match="TIMED-OUT"):
        make_client().run_actor({"targetUrls": URLS})


def test_whoami(make_client: MakeClient) -> None:
    me = make_client().whoami()
    assert me["id"] and me["username"]


def test_wrong_token_is_auth(make_client: MakeClient) -> None:
    apify = make_client(token="tokNotKnownToTheSandbox000000")
    with pytest.raises(AuthError) as info:
        apify.whoami()
    assert "user-or-token-not-found" in info.value.message
    assert "tokNotKnownToTheSandbox000000" not in info.value.message


def test_base_url_of_another_service_is_config(make_client: MakeClient, sandbox: Sandbox) -> None:
    apify = make_client(base_url=sandbox.airtable_url)
    with pytest.raises(ConfigError) as info:
        apify.whoami()
    assert sandbox.airtable_url in info.value.message


def test_unknown_actor_is_config(sandbox: Sandbox) -> None:
    http = HttpClient(sandbox.apify_url, service="Apify", token=TOKEN)
    with ApifyClient(http, "someone/no-such-actor") as apify, pytest.raises(ConfigError, match="record-not-found"):
        apify.start_run({})


def test_from_settings(sandbox: Sandbox) -> None:
    settings = Settings(apify_token=SecretStr(TOKEN), apify_api_url=sandbox.apify_url + "/v2/", apify_timeout_s=20)
    with ApifyClient.from_settings(settings, poll_wait_s=30) as apify:
        assert apify.http.base_url == sandbox.apify_url
        assert apify.poll_wait_s == 15, "a held poll stays under the read timeout"
        assert apify.max_wait_s == settings.apify_max_wait_s
        assert apify.actor_id == "harvestapi~linkedin-profile-posts"
        assert apify.whoami()["username"]


def test_from_settings_without_token() -> None:
    with pytest.raises(ConfigError, match="APIFY_TOKEN"):
        ApifyClient.from_settings(Settings(apify_token=None))


def mock_client(handler: Any, **kw: Any) -> ApifyClient:
    http = HttpClient(
        "https://api.apify.test",
        service="Apify",
        token="t",
        transport=httpx.MockTransport(handler),
        timeouts=Timeouts(read=75),
    )
    return ApifyClient(http, "harvestapi~linkedin-profile-posts", sleep=lambda s: None, **kw)


def test_unknown_statuses_are_not_finished() -> None:
    statuses = iter(["RUNNING", "ABORTING", "SOMETHING-NEW", "SUCCEEDED"])
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("waitForFinish", ""))
        return httpx.Response(200, json={"data": {"id": "r1", "status": next(statuses), "defaultDatasetId": "d1"}})

    run = mock_client(handler).wait("r1")
    assert run.status == "SUCCEEDED" and len(asked) == 4
    assert all(a == "60" for a in asked), "waitForFinish never above 60"


def test_answer_without_data_envelope_is_config() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "r1"})

    with pytest.raises(ConfigError, match="no 'data'"):
        mock_client(handler).start_run({})


def test_dataset_answer_that_is_not_a_list_is_config() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"items": []}})

    with pytest.raises(ConfigError, match="list of dataset items"):
        mock_client(handler).dataset_items("d1")
