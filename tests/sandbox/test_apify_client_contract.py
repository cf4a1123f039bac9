"""The Apify sandbox held to someone else's client: the official `apify-client` (a dev dependency) parses every
answer leadkit relies on (run get/start/abort/wait, the actor's runs list, dataset items and object, the log, the
INPUT record, the user and its limits). Its models are pydantic: a field Apify sends that the sandbox left out
fails the parse here, as it would for anybody scripting against the sandbox with that client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apify_client import ApifyClient

from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN

ACTOR = "harvestapi~linkedin-profile-posts"
URLS = ["https://www.linkedin.com/in/lead-001/", "https://www.linkedin.com/in/lead-002/"]


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[ApifyClient]:
    sandbox.apify.clear_runs()
    before = sandbox.apify.run_duration_s
    sandbox.apify.run_duration_s = 0.2
    yield ApifyClient(TOKEN, api_url=sandbox.apify_url, max_retries=1)
    sandbox.apify.run_duration_s = before


def test_a_run_started_waited_for_and_read_through_apify_client(client: ApifyClient, sandbox: Sandbox) -> None:
    started = client.actor(ACTOR).start(run_input={"targetUrls": URLS, "maxPosts": 2})
    assert [r["id"] for r in sandbox.apify.runs()] == [started.id], "one start, one run, as the server counts"
    finished = client.run(started.id).wait_for_finish(wait_duration=None)
    assert finished is not None and finished.status == "SUCCEEDED"
    got = client.run(started.id).get()
    assert got is not None and got.default_dataset_id == started.default_dataset_id
    assert got.pricing_info is not None and got.usage_total_usd == sandbox.apify.runs()[0]["usageTotalUsd"]
    page = client.dataset(started.default_dataset_id).list_items(clean=True)
    assert page.items and page.total is not None and page.total >= len(page.items)
    assert {item["query"]["targetUrl"] for item in page.items} <= set(URLS)
    dataset = client.dataset(started.default_dataset_id).get()
    assert dataset is not None and dataset.item_count == page.total
    log_text = client.run(started.id).log().get()
    assert log_text is not None and started.id in log_text
    record = client.key_value_store(started.default_key_value_store_id).get_record("INPUT")
    assert record is not None and record["value"]["targetUrls"] == URLS
    listed = client.actor(ACTOR).runs().list(desc=True)
    assert [r.id for r in listed.items] == [started.id] and listed.total == 1


def test_an_abort_through_apify_client(client: ApifyClient, sandbox: Sandbox) -> None:
    sandbox.apify.run_duration_s = 30
    started = client.actor(ACTOR).start(run_input={"targetUrls": URLS, "maxPosts": 1})
    aborted = client.run(started.id).abort()
    assert aborted.status in ("ABORTING", "ABORTED")
    final = client.run(started.id).wait_for_finish(wait_duration=None)
    assert final is not None and final.status == "ABORTED"
    assert sandbox.apify.runs()[0]["status"] == "ABORTED"


def test_the_user_and_its_limits_through_apify_client(client: ApifyClient, sandbox: Sandbox) -> None:
    me = client.user().get()
    assert me is not None and me.username
    limits = client.user().limits()
    assert limits is not None and limits.limits.max_concurrent_actor_jobs == sandbox.apify.max_runs
