"""Harvest results that can be trusted (issue 11): every target accounted for, no verdict without evidence,
nothing final for ever, paging by the contract, real cost and a cap, one start one paid run, one deadline.

Everything runs against the real sandbox over loopback; what the sandbox did (runs started, their inputs, their
statuses) is counted on the sandbox's side."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from leadkit.deadline import Deadline
from leadkit.errors import Category, DeadlineExceeded, RateLimitError
from leadkit.harvest.harvester import BatchOutcome, Harvester, target_errors
from leadkit.harvest.posts import post_key
from leadkit.http import RetryPolicy, Timeouts
from leadkit.models import Client, DuePolicy, HarvestStatus, NewLead, Post
from leadkit.store.base import LeadBase
from leadkit_sandbox.apify import posts_for_profile
from leadkit_sandbox.server import Sandbox

from .conftest import MakeClient, profile_url

MakeLeads = Callable[..., tuple[Client, LeadBase]]


def urls_where(pred: Callable[[str], bool], n: int, start: int = 0) -> list[int]:
    """The first `n` lead numbers (from `start`) whose sandbox profile satisfies `pred`."""
    found = [i for i in range(start, start + 400) if pred(profile_url(i))]
    assert len(found) >= n
    return found[:n]


def has_posts(url: str) -> bool:
    return bool(posts_for_profile(url, 0))


def by_url(base: LeadBase) -> dict[str, object]:
    return {lead.profile_url: lead for lead in base.list_leads()}


# ------------------------------------------------------------------------------ every target accounted for
def test_a_run_that_skips_two_of_five_targets(make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox) -> None:
    with_posts = urls_where(has_posts, 4)
    empty = urls_where(lambda u: not has_posts(u), 1)
    numbers = [with_posts[0], with_posts[1], with_posts[2], with_posts[3], empty[0]]
    client, base = make_leads(0, batch_size=5)

    base.import_leads([NewLead(profile_url(i)) for i in numbers])
    skipped = [profile_url(with_posts[1]), profile_url(with_posts[3])]
    sandbox.add_fault(
        service="apify", mode="skip_targets", path=r"/runs", body="|".join(s.split("/in/")[1] for s in skipped)
    )
    seen: list[BatchOutcome] = []
    report = Harvester(make_client()).run(client, base, "r-Acme-Co", on_batch=seen.append)

    (batch,) = seen
    assert batch.error is None and batch.apify_status == "SUCCEEDED"
    m = batch.metrics()
    assert (m["targets_submitted"], m["targets_with_posts"], m["targets_empty"], m["targets_not_covered"]) == (
        5,
        2,
        1,
        2,
    )
    leads = {lead.profile_url: lead for lead in base.list_leads()}
    for url in skipped:  # SUCCEEDED, no items, an ERROR line in the log: not covered, never No Posts
        lead = leads[url]
        assert lead.harvest_status is HarvestStatus.PENDING and lead.next_check_at is None
        assert lead.last_error and "not covered" in lead.last_error and batch.apify_run_id in lead.last_error
        assert url in lead.last_error
    for i in (with_posts[0], with_posts[2]):
        assert leads[profile_url(i)].harvest_status is HarvestStatus.DONE
    assert leads[profile_url(empty[0])].harvest_status is HarvestStatus.NO_POSTS
    assert report.cost_usd == pytest.approx(sandbox.apify.runs()[0]["usageTotalUsd"])
    # the skipped targets are due again at once
    due = {lead.profile_url for lead in base.due_leads(DuePolicy(), datetime.now(UTC), limit=10)}
    assert due == set(skipped)


def test_target_errors_reads_urls_out_of_log_lines() -> None:
    log = (
        "2026-12-03T10:00:00.000Z INFO  Scraped 2 posts of https://www.linkedin.com/in/ok-one/\n"
        "2026-12-03T10:00:01.000Z ERROR Error scraping https://www.linkedin.com/in/Jane-Doe/: status code 429\n"
        "2026-12-03T10:00:02.000Z WARN  Failed for https://linkedin.com/in/bob?x=1, retrying later\n"
    )
    assert set(target_errors(log)) == {"linkedin.com/in/jane-doe", "linkedin.com/in/bob"}


def test_an_all_empty_run_is_suspect_not_a_verdict(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    numbers = urls_where(lambda u: not has_posts(u), 3)
    client, base = make_leads(0, batch_size=3)

    base.import_leads([NewLead(profile_url(i)) for i in numbers])
    report = Harvester(make_client()).run(client, base, "r-Acme-Co")
    (batch,) = report.batches
    assert batch.error is not None and batch.error.category is Category.UPSTREAM
    run_id = sandbox.apify.runs()[0]["id"]
    assert run_id == batch.apify_run_id and run_id in batch.error.hint
    assert "no items for 3 profiles" in batch.error.hint and "blocked upstream" in batch.error.hint
    for lead in base.list_leads():
        assert lead.harvest_status is HarvestStatus.PENDING, "no lead is No Posts on a suspect run"
        assert lead.last_error and run_id in lead.last_error
    assert batch.cost_usd == pytest.approx(3 * 0.002), "the empty targets were billed all the same"


# ------------------------------------------------------------------------------ nothing is final for ever
def test_no_posts_is_re_checked_after_the_cool_down(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    empty = urls_where(lambda u: not has_posts(u), 1)[0]
    full = urls_where(has_posts, 1)[0]
    client, base = make_leads(0, batch_size=2)

    base.import_leads([NewLead(profile_url(empty)), NewLead(profile_url(full))])
    now = datetime.now(UTC)
    policy = DuePolicy(refresh_after=timedelta(days=30), no_posts_recheck=timedelta(days=14))
    Harvester(make_client(), now=lambda: now, policy=policy).run(client, base, "r1-Acme-Co")
    lead = by_url(base)[profile_url(empty)]
    assert lead.harvest_status is HarvestStatus.NO_POSTS and lead.next_check_at == now + timedelta(days=14)

    later = now + timedelta(days=13)
    assert base.due_leads(policy, later, limit=10) == [], "inside the cool-down nothing is due"
    report = Harvester(make_client(), now=lambda: later, policy=policy).run(client, base, "r2-Acme-Co")
    assert report.batches == [] and len(sandbox.apify.runs()) == 1

    after = now + timedelta(days=15)
    due = base.due_leads(policy, after, limit=10)
    assert [x.profile_url for x in due] == [profile_url(empty)], "the No Posts lead is due again, the Done one not yet"
    Harvester(make_client(), now=lambda: after, policy=policy).run(client, base, "r3-Acme-Co")
    runs = sandbox.apify.runs()
    assert len(runs) == 2
    assert sandbox.apify.run_input(runs[1]["id"])["targetUrls"] == [profile_url(empty)]
    again = by_url(base)[profile_url(empty)]
    assert again.harvest_status is HarvestStatus.NO_POSTS and again.next_check_at == after + timedelta(days=14)


def test_a_done_lead_is_refreshed_with_only_newer_posts(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    now = datetime.now(UTC)
    then = now - timedelta(days=10)

    def posts_both_sides(url: str) -> bool:
        dates = [i["postedAt"]["timestamp"] / 1000 for i in posts_for_profile(url, 0, now=now)]
        return any(d > then.timestamp() + 86400 for d in dates) and any(d < then.timestamp() for d in dates)

    number = urls_where(posts_both_sides, 1)[0]
    client, base = make_leads(0, batch_size=5)

    base.import_leads([NewLead(profile_url(number))])
    (lead,) = base.list_leads()
    old_items = posts_for_profile(profile_url(number), 0, now=then)  # what it got ten days ago
    old_posts = [Post(post_url=i["linkedinUrl"], author_url=profile_url(number)).to_dict() for i in old_items]
    base.update_leads(
        {
            lead.lead_id: {
                "harvest_status": HarvestStatus.DONE,
                "posts": old_posts,
                "last_check_at": then,
                "posts_found": 3,
            }
        }
    )
    report = Harvester(make_client(), max_posts=0, now=lambda: now).run(client, base, "r-Acme-Co")
    (batch,) = report.batches
    assert batch.refresh and batch.error is None
    actor_input = sandbox.apify.run_input(sandbox.apify.runs()[0]["id"])
    assert actor_input["postedLimitDate"] == then.date().isoformat() and actor_input["maxPosts"] == 0
    current = posts_for_profile(profile_url(number), 0, now=now)
    newer = [
        i
        for i in current
        if i["postedAt"]["timestamp"] >= datetime.combine(then.date(), datetime.min.time(), UTC).timestamp() * 1000
    ]
    known = {post_key(p["postUrl"]) for p in old_posts}
    new = [i for i in newer if post_key(i["linkedinUrl"]) not in known]
    assert new, "the profile posted since the last check"
    after = base.get_lead(lead.lead_id)
    assert after.harvest_status is HarvestStatus.DONE
    assert after.posts_found == len(new) == batch.posts_harvested, "only new posts count"
    keys = [post_key(p["postUrl"]) for p in after.posts]
    assert len(keys) == len(set(keys)) == len(known | {post_key(i["linkedinUrl"]) for i in newer}), "merged, deduped"
    assert after.next_check_at == now + timedelta(days=7)


# ------------------------------------------------------------------------------ paging by the contract
def test_short_clean_pages_do_not_end_the_reading(make_client: MakeClient, sandbox: Sandbox) -> None:
    numbers = urls_where(has_posts, 8)
    urls = [profile_url(i) for i in numbers]
    # every other target fails upstream: the dataset holds an empty item for each, which clean=1 leaves out
    sandbox.add_fault(
        service="apify", mode="skip_targets", path=r"/runs", body="|".join(u.split("/in/")[1] for u in urls[::2])
    )
    apify = make_client()
    result = apify.run_actor({"targetUrls": urls, "maxPosts": 1})
    assert result.run.dataset_id
    expected = 4  # one post for each target that was not skipped
    assert len(result.items) == expected
    sandbox.state.stats.reset()
    items = apify.dataset_items(result.run.dataset_id, page_size=2)  # raw: post, {}, post, {}, ...: pages of 1
    assert items == result.items
    assert sandbox.state.stats.count(path=r"/items$") == 4, "offset stepped by limit up to the total (8 raw items)"


# ------------------------------------------------------------------------------ real cost and a cap
def test_daily_cap_passes_the_remainder_and_stops_the_client(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    client, base = make_leads(12, batch_size=4)
    client.max_usd_per_day = 0.02
    report = Harvester(make_client()).run(client, base, "r-Acme-Co", spent_today_usd=0.005)
    runs = sandbox.apify.runs()
    caps = [r["options"]["maxTotalChargeUsd"] for r in runs]
    assert caps[0] == pytest.approx(0.015), "the first run may spend what is left of the day"
    spent = sum(r["usageTotalUsd"] for r in runs)
    assert report.cost_usd == pytest.approx(spent) and 0.005 + spent <= 0.02 + 1e-9
    assert report.reason and report.reason.startswith("daily Apify spend cap reached")
    stopped = [b for b in report.batches if b.not_covered]
    assert stopped, "a run that hit its cap left targets not covered"
    for lead in base.list_leads():
        assert lead.harvest_status is not HarvestStatus.NO_POSTS or lead.last_error is None
        if lead.last_error:
            assert lead.harvest_status is HarvestStatus.PENDING and "maxTotalChargeUsd" in lead.last_error


# ------------------------------------------------------------------------------ one start, one paid run
SHORT = Timeouts(connect=1, read=0.5, write=1, pool=1)


@pytest.mark.parametrize(("mode", "delay_s"), [("slow_after", 1.5), ("drop_after", 0.0), ("bad_gateway_after", 0.0)])
def test_a_lost_start_answer_bills_one_run(
    mode: str, delay_s: float, make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    client, base = make_leads(6, batch_size=3, max_batches=2)
    sandbox.add_fault(
        service="apify", mode=mode, times=2, path=r"^/v2/acts/[^/]+/runs", body="targetUrls", delay_s=delay_s
    )
    apify = make_client(timeouts=SHORT, retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, jitter_s=0.01))
    report = Harvester(apify).run(client, base, "r-Acme-Co")
    assert [b.error for b in report.batches] == [None, None]
    runs = sandbox.apify.runs()
    assert len(runs) == 2, f"{mode}: exactly one run per batch, {len(runs)} started"
    for batch in report.batches:
        assert any("adopted run" in note for note in batch.notes), batch.notes
    assert {r["id"] for r in runs} == {b.apify_run_id for b in report.batches}


def test_a_start_that_never_reached_the_actor_is_sent_again(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    client, base = make_leads(3, batch_size=3)
    sandbox.add_fault(service="apify", mode="bad_gateway_502", times=1, path=r"^/v2/acts/[^/]+/runs", body="targetUrls")
    report = Harvester(make_client()).run(client, base, "r-Acme-Co")
    (batch,) = report.batches
    assert batch.error is None and len(sandbox.apify.runs()) == 1
    assert any("no run had started, so it was sent again" in n for n in batch.notes)


def test_capacity_refusals_wait_then_start(make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox) -> None:
    client, base = make_leads(3, batch_size=3)
    sandbox.add_fault(
        service="apify", mode="memory_limit_402", times=2, path=r"^/v2/acts/[^/]+/runs", body="targetUrls"
    )
    report = Harvester(make_client(capacity_wait_s=0.05)).run(client, base, "r-Acme-Co")
    (batch,) = report.batches
    assert batch.error is None and len(sandbox.apify.runs()) == 1
    assert any("after 2 capacity refusals" in n for n in batch.notes)


def test_capacity_that_never_frees_is_a_rate_limit_with_a_hint(make_client: MakeClient, sandbox: Sandbox) -> None:
    sandbox.add_fault(
        service="apify", mode="memory_limit_402", times=-1, path=r"^/v2/acts/[^/]+/runs", body="targetUrls"
    )
    apify = make_client(capacity_wait_s=0.05)
    with pytest.raises(RateLimitError) as info:
        apify.start_run({"targetUrls": [profile_url(1)], "maxPosts": 1}, deadline=Deadline(0.5))
    assert "concurrent runs" in info.value.hint and "actor-memory-limit-exceeded" in info.value.message
    assert sandbox.apify.runs() == []


def test_capacity_whose_wait_outlasts_the_budget_is_a_rate_limit_with_a_hint(
    make_client: MakeClient, sandbox: Sandbox
) -> None:
    """The wait between capacity refusals outlasted the budget (a loaded machine: the test above failed once with
    the budget's DeadlineExceeded "before POST"): the start still says it was the capacity. The overshoot is made
    by a sleep that takes longer than asked. Seen to fail without the fix (DeadlineExceeded)."""
    sandbox.add_fault(
        service="apify", mode="memory_limit_402", times=-1, path=r"^/v2/acts/[^/]+/runs", body="targetUrls"
    )
    apify = make_client(capacity_wait_s=0.05, sleep=lambda s: time.sleep(s + 0.6))
    with pytest.raises(RateLimitError) as info:
        apify.start_run({"targetUrls": [profile_url(1)], "maxPosts": 1}, deadline=Deadline(0.5))
    assert "concurrent runs" in info.value.hint and "actor-memory-limit-exceeded" in info.value.message
    assert sandbox.apify.runs() == []


# ------------------------------------------------------------------------------ one deadline per client
def test_the_budget_aborts_the_run_and_releases_the_leads(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    sandbox.apify.run_duration_s = 30
    client, base = make_leads(6, batch_size=3)
    started = time.monotonic()
    report = Harvester(make_client(poll_wait_s=1), min_batch_budget_s=0.5).run(
        client, base, "r-Acme-Co", deadline=Deadline(2.0)
    )
    assert time.monotonic() - started < 4, "no wait outlived the budget"
    (batch,) = report.batches  # the harvest stops: the next batch would not fit either
    assert isinstance(batch.error, DeadlineExceeded)
    time.sleep(0.2)
    (run,) = sandbox.apify.runs()
    assert run["status"] == "ABORTED" and run["id"] == batch.apify_run_id
    assert batch.cost_usd == pytest.approx(run["usageTotalUsd"])
    statuses = [lead.harvest_status for lead in base.list_leads()]
    assert statuses.count(HarvestStatus.PENDING) == 3 and statuses.count(None) == 3
    assert all("budget" in (lead.last_error or "") for lead in base.list_leads() if lead.harvest_status)
