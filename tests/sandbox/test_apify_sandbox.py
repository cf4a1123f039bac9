"""The Apify-compatible sandbox over raw HTTP: envelopes, run objects, statuses over time, dataset paging
headers, error bodies, tokens and fault modes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from leadkit_sandbox.apify import POSTS_ACTOR, posts_for_profile
from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN

ACTOR_PATH = f"/v2/acts/{POSTS_ACTOR}"
URLS = [f"https://www.linkedin.com/in/member-{i}" for i in range(12)]


@pytest.fixture
def apify(sandbox: Sandbox) -> Iterator[httpx.Client]:
    sandbox.apify.run_duration_s = 0.3
    sandbox.apify.outcome = None
    with httpx.Client(base_url=sandbox.apify_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
        yield client
    sandbox.apify.run_duration_s = 0.3
    sandbox.apify.outcome = None


def total_items(urls: list[str], max_posts: int | None = None) -> int:
    return sum(len(posts_for_profile(u, max_posts)) for u in urls)


def test_run_object_has_the_documented_fields(apify: httpx.Client) -> None:
    resp = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": URLS[:2]})
    assert resp.status_code == 201
    run = resp.json()["data"]
    for key in (
        "id",
        "actId",
        "userId",
        "startedAt",
        "finishedAt",
        "status",
        "meta",
        "stats",
        "options",
        "buildId",
        "defaultDatasetId",
        "defaultKeyValueStoreId",
        "defaultRequestQueueId",
    ):
        assert key in run, key
    assert run["status"] == "READY" and run["finishedAt"] is None
    assert run["meta"]["origin"] == "API"
    assert set(run["options"]) >= {"build", "timeoutSecs", "memoryMbytes", "diskMbytes"}
    assert datetime.fromisoformat(run["startedAt"].replace("Z", "+00:00")).tzinfo is not None


def test_status_moves_over_time_and_wait_for_finish_holds(apify: httpx.Client) -> None:
    run = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": URLS}).json()["data"]
    time.sleep(0.1)
    assert apify.get(f"/v2/actor-runs/{run['id']}").json()["data"]["status"] == "RUNNING"
    started = time.monotonic()
    done = apify.get(f"/v2/actor-runs/{run['id']}", params={"waitForFinish": 5}).json()["data"]
    assert time.monotonic() - started < 1.5
    assert done["status"] == "SUCCEEDED"
    assert datetime.fromisoformat(done["finishedAt"].replace("Z", "+00:00")) >= datetime.fromisoformat(
        done["startedAt"].replace("Z", "+00:00")
    )
    same = apify.get(f"/v2/acts/{POSTS_ACTOR}/runs/{run['id']}").json()["data"]
    assert same["status"] == "SUCCEEDED" and same["id"] == run["id"]


def test_dataset_items_are_bare_with_pagination_headers(apify: httpx.Client) -> None:
    run = apify.post(f"{ACTOR_PATH}/runs", params={"waitForFinish": 5}, json={"targetUrls": URLS}).json()["data"]
    assert run["status"] == "SUCCEEDED"
    total = total_items(URLS)
    resp = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items", params={"offset": 2, "limit": 3})
    page = resp.json()
    assert isinstance(page, list) and len(page) == 3
    assert resp.headers["X-Apify-Pagination-Offset"] == "2"
    assert resp.headers["X-Apify-Pagination-Limit"] == "3"
    assert resp.headers["X-Apify-Pagination-Count"] == "3"
    assert resp.headers["X-Apify-Pagination-Total"] == str(total)
    assert resp.headers["X-Apify-Pagination-Desc"] == "false"
    everything = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items").json()
    assert page == everything[2:5]
    desc = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items", params={"desc": 1})
    assert desc.json() == everything[::-1] and desc.headers["X-Apify-Pagination-Desc"] == "true"
    meta = apify.get(f"/v2/datasets/{run['defaultDatasetId']}").json()["data"]
    assert meta["itemCount"] == total and meta["actRunId"] == run["id"]


def test_items_look_like_the_actor_output(apify: httpx.Client) -> None:
    items = apify.post(f"{ACTOR_PATH}/run-sync-get-dataset-items", json={"targetUrls": URLS, "maxPosts": 1})
    assert items.status_code == 200
    data = items.json()
    assert isinstance(data, list) and len(data) == total_items(URLS, 1)
    assert items.headers["X-Apify-Pagination-Total"] == str(len(data))
    with_posts = {u for u in URLS if posts_for_profile(u)}
    assert 0 < len(with_posts) < len(URLS), "some profiles have no posts"
    for item in data:
        assert item["type"] == "post" and item["linkedinUrl"].startswith("https://www.linkedin.com/posts/")
        assert set(item["author"]) >= {"publicIdentifier", "name", "linkedinUrl"}
        assert set(item["postedAt"]) >= {"timestamp", "date"}
        assert set(item["engagement"]) >= {"likes", "comments", "shares"}
        assert item["query"]["targetUrl"] in with_posts


@pytest.mark.parametrize(("outcome", "status"), [("FAILED", 400), ("TIMED-OUT", 408)])
def test_run_sync_reports_unsuccessful_runs(apify: httpx.Client, outcome: str, status: int) -> None:
    resp = apify.post(f"{ACTOR_PATH}/run-sync-get-dataset-items", json={"targetUrls": URLS, "_sandboxOutcome": outcome})
    assert resp.status_code == status
    assert resp.json()["error"]["type"] in ("run-failed", "run-timeout-exceeded")


def test_outcome_asked_in_process(apify: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.apify.outcome = "FAILED"
    run = apify.post(f"{ACTOR_PATH}/runs", params={"waitForFinish": 5}, json={"targetUrls": URLS}).json()["data"]
    assert run["status"] == "FAILED"
    assert apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items").json() == []


def test_users_me(apify: httpx.Client) -> None:
    me = apify.get("/v2/users/me").json()["data"]
    assert me["id"] and me["username"]


def test_token_as_query_parameter(sandbox: Sandbox) -> None:
    resp = httpx.get(f"{sandbox.apify_url}/v2/users/me", params={"token": TOKEN})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("headers", "err_type"),
    [({}, "token-not-provided"), ({"Authorization": "Bearer tokSomethingElse0000"}, "user-or-token-not-found")],
)
def test_unknown_tokens_are_refused(sandbox: Sandbox, headers: dict[str, str], err_type: str) -> None:
    resp = httpx.get(f"{sandbox.apify_url}/v2/users/me", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == err_type and resp.json()["error"]["message"]


def test_not_found_and_bad_requests(apify: httpx.Client) -> None:
    assert apify.post("/v2/acts/nobody~nothing/runs", json={}).json()["error"]["type"] == "record-not-found"
    assert apify.get("/v2/actor-runs/NoSuchRun0000000").status_code == 404
    assert apify.get("/v2/datasets/NoSuchDataset0000/items").status_code == 404
    assert apify.get("/v2/no/such/route").status_code == 404
    bad = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": "not a list"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid-input"
    assert apify.get("/v2/actor-runs/x", params={"waitForFinish": "soon"}).status_code == 400
    assert apify.delete("/v2/users/me").status_code == 405


@pytest.mark.parametrize(
    ("mode", "status", "err_type"),
    [
        ("json_401", 401, "user-or-token-not-found"),
        ("json_403", 403, "insufficient-permissions"),
        ("json_404", 404, "record-not-found"),
        ("rate_limit_429", 429, "rate-limit-exceeded"),
        ("server_500", 500, "internal-server-error"),
    ],
)
def test_faults_answer_with_apify_error_bodies(
    apify: httpx.Client, sandbox: Sandbox, mode: str, status: int, err_type: str
) -> None:
    sandbox.add_fault(service="apify", mode=mode, times=1, path=r"^/v2/users/me")
    resp = apify.get("/v2/users/me")
    assert resp.status_code == status and resp.json()["error"]["type"] == err_type
    assert apify.get("/v2/users/me").status_code == 200, "the fault was used up"


def test_html_fault(apify: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="html_200", times=1, path=r"^/v2/actor-runs/")
    resp = apify.get("/v2/actor-runs/anything")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")


# ------------------------------------------------------------------------------ the actor as an agency meets it
def test_actor_input_fields_filter_by_date_and_count(apify: httpx.Client) -> None:
    url = next(u for u in URLS if len(posts_for_profile(u, 0)) >= 3)
    every = posts_for_profile(url, 0)
    newest = every[0]["postedAt"]["date"][:10]
    run = apify.post(
        f"{ACTOR_PATH}/runs",
        params={"waitForFinish": 5},
        json={"targetUrls": [url], "maxPosts": 0, "postedLimit": "year", "postedLimitDate": newest},
    ).json()["data"]
    items = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items").json()
    assert items and all(i["postedAt"]["date"][:10] >= newest for i in items) and len(items) < len(every)
    unset = apify.post(f"{ACTOR_PATH}/run-sync-get-dataset-items", json={"targetUrls": [url]}).json()
    assert len(unset) == min(len(every), 5), "maxPosts unset: one page only"
    for bad in ({"postedLimit": "fortnight"}, {"postedLimitDate": "yesterday"}, {"maxPosts": -1}):
        resp = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": [url], **bad})
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid-input"


def test_posts_are_recent_and_dated_relative_to_now() -> None:
    now = datetime.now(UTC)
    for url in URLS:
        for item in posts_for_profile(url, 0):
            posted = datetime.fromisoformat(item["postedAt"]["date"].replace("Z", "+00:00"))
            assert now - timedelta(days=31) <= posted <= now
    later = posts_for_profile(URLS[1], 0, now=now + timedelta(days=20))
    assert {i["id"] for i in later} & {i["id"] for i in posts_for_profile(URLS[1], 0)}, "a post keeps its ID"


def test_usage_log_runs_list_abort_and_input(apify: httpx.Client, sandbox: Sandbox) -> None:
    run = apify.post(f"{ACTOR_PATH}/runs", params={"waitForFinish": 5}, json={"targetUrls": URLS, "maxPosts": 2}).json()
    run = run["data"]
    posts, empty = total_items(URLS, 2), sum(1 for u in URLS if not posts_for_profile(u, 2))
    assert run["usageTotalUsd"] == pytest.approx(0.002 * posts + 0.002 * empty)
    assert run["chargedEventCounts"] == {"post": posts, "no-result": empty}
    log = apify.get(f"/v2/actor-runs/{run['id']}/log")
    assert log.headers["content-type"].startswith("text/plain") and all(u in log.text for u in URLS)
    stored = apify.get(f"/v2/key-value-stores/{run['defaultKeyValueStoreId']}/records/INPUT").json()
    assert stored == {"targetUrls": URLS, "maxPosts": 2}
    slow = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": URLS}).json()["data"]
    listed = apify.get(f"{ACTOR_PATH}/runs", params={"desc": 1}).json()["data"]
    assert [r["id"] for r in listed["items"][:2]] == [slow["id"], run["id"]] and listed["desc"] is True
    sandbox.apify.run_duration_s = 30
    aborting = apify.post(f"/v2/actor-runs/{slow['id']}/abort").json()["data"]
    assert aborting["status"] in ("ABORTING", "ABORTED", "SUCCEEDED")
    time.sleep(0.2)
    assert apify.get(f"/v2/actor-runs/{slow['id']}").json()["data"]["status"] in ("ABORTED", "SUCCEEDED")


def test_charge_cap_and_skipped_targets(apify: httpx.Client, sandbox: Sandbox) -> None:
    capped = apify.post(
        f"{ACTOR_PATH}/runs", params={"waitForFinish": 5, "maxTotalChargeUsd": 0.004}, json={"targetUrls": URLS}
    ).json()["data"]
    assert capped["status"] == "SUCCEEDED" and capped["usageTotalUsd"] <= 0.004
    assert "maxTotalChargeUsd" in apify.get(f"/v2/actor-runs/{capped['id']}/log").text
    sandbox.add_fault(service="apify", mode="skip_targets", path="/runs", body=r"member-[12]\b")
    run = apify.post(f"{ACTOR_PATH}/runs", params={"waitForFinish": 5}, json={"targetUrls": URLS[:4]}).json()["data"]
    assert run["status"] == "SUCCEEDED"
    log = apify.get(f"/v2/actor-runs/{run['id']}/log").text
    assert all(f"ERROR Error scraping {u}" in log for u in URLS[1:3])
    raw = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items").json()
    clean = apify.get(f"/v2/datasets/{run['defaultDatasetId']}/items", params={"clean": 1, "limit": 2})
    assert {} in raw and {} not in clean.json()
    assert int(clean.headers["X-Apify-Pagination-Total"]) == len(raw)
    assert not any(i.get("query", {}).get("targetUrl") in URLS[1:3] for i in raw)


def test_aborting_a_run_whose_time_is_up_leaves_it_succeeded(apify: httpx.Client, sandbox: Sandbox) -> None:
    """Nothing has looked at the run since its time ran out: the abort still finds it SUCCEEDED (as on Apify, a
    finished run cannot be aborted). Seen to fail with the abort's snapshot removed: the paid run became ABORTED."""
    sandbox.apify.run_duration_s = 0.2
    run = apify.post(f"{ACTOR_PATH}/runs", json={"targetUrls": URLS[:2]}).json()["data"]
    time.sleep(0.4)
    answered = apify.post(f"/v2/actor-runs/{run['id']}/abort").json()["data"]
    assert answered["status"] == "SUCCEEDED"
    time.sleep(0.2)
    assert apify.get(f"/v2/actor-runs/{run['id']}").json()["data"]["status"] == "SUCCEEDED"
