"""The harvester: selection, batches, guardrails and lead transitions, on the sandbox and real SQLite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadkit.errors import AuthError, UpstreamError
from leadkit.harvest.harvester import BatchOutcome, Harvester, posts_today, select_leads
from leadkit.harvest.posts import normalize_profile_url
from leadkit.http import NO_RETRY
from leadkit.models import Client, ClientRunStatus, DuePolicy, HarvestStatus, Lead
from leadkit.store.base import LeadBase
from leadkit_sandbox.apify import posts_for_profile
from leadkit_sandbox.server import Sandbox

from .conftest import MakeClient

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MakeLeads = Callable[..., tuple[Client, LeadBase]]


def lead(i: int, **kw: Any) -> Lead:
    kw.setdefault("profile_url", f"https://www.linkedin.com/in/p{i}")
    kw.setdefault("created_at", NOW - timedelta(days=i))
    return Lead(lead_id=f"lead{i}", **kw)


def test_select_leads_rules() -> None:
    leads = [
        lead(1),
        lead(2, harvest_status=HarvestStatus.PENDING),
        lead(3, harvest_status=HarvestStatus.PROCESSING, last_check_at=NOW - timedelta(minutes=31)),
        lead(4, harvest_status=HarvestStatus.PROCESSING, last_check_at=NOW - timedelta(minutes=5)),
        lead(5, harvest_status=HarvestStatus.DONE, last_check_at=NOW - timedelta(days=1)),
        lead(6, harvest_status=HarvestStatus.NO_POSTS, next_check_at=NOW + timedelta(days=3)),
        lead(7, posts_actioned=2),
        lead(8, posts_actioned=0),
        lead(9, profile_url=""),
        lead(10, profile_url="https://example.com/not-linkedin"),
        lead(11, harvest_status=HarvestStatus.PROCESSING, last_check_at=None),
        lead(0, created_at=None),
        # due again: a Done lead past its refresh, a No Posts lead past its re-check (oldest check first)
        lead(12, harvest_status=HarvestStatus.DONE, last_check_at=NOW - timedelta(days=8)),
        lead(13, harvest_status=HarvestStatus.NO_POSTS, next_check_at=NOW - timedelta(days=2)),
    ]
    picked = [x.lead_id for x in select_leads(leads, NOW)]
    assert picked == ["lead1", "lead2", "lead8", "lead0", "lead11", "lead12", "lead13", "lead3"]


def test_store_due_query_agrees_with_the_rule(make_leads: MakeLeads) -> None:
    _, base = make_leads(10)
    ids = [x.lead_id for x in base.list_leads()]
    policy = DuePolicy()
    base.update_leads(
        {
            ids[0]: {"harvest_status": HarvestStatus.DONE, "last_check_at": NOW - timedelta(days=1)},
            ids[1]: {"harvest_status": HarvestStatus.DONE, "last_check_at": NOW - timedelta(days=8)},
            ids[2]: {"harvest_status": HarvestStatus.NO_POSTS, "next_check_at": NOW + timedelta(days=2)},
            ids[3]: {"harvest_status": HarvestStatus.NO_POSTS, "next_check_at": NOW - timedelta(hours=1)},
            ids[4]: {"harvest_status": HarvestStatus.PROCESSING, "last_check_at": NOW - timedelta(minutes=5)},
            ids[5]: {"posts_actioned": 3},
            ids[6]: {"harvest_status": HarvestStatus.DONE, "next_check_at": NOW + timedelta(days=1)},
        }
    )
    everything = base.list_leads()
    expected = [x.lead_id for x in select_leads(everything, NOW, policy)]
    assert [x.lead_id for x in base.due_leads(policy, NOW, limit=100)] == expected
    assert {ids[1], ids[3]} <= set(expected) and not {ids[0], ids[2], ids[4], ids[5], ids[6]} & set(expected)
    assert [x.lead_id for x in base.due_leads(policy, NOW, limit=2)] == expected[:2]


def test_posts_today_counts_only_today_utc() -> None:
    leads = [
        lead(1, posts_found=2, last_check_at=NOW - timedelta(hours=1)),
        lead(2, posts_found=3, last_check_at=NOW - timedelta(days=1)),
        lead(3, posts_found=None, last_check_at=NOW),
        lead(4, posts_found=1, last_check_at=datetime(2026, 3, 2, 0, 30)),  # naive: UTC
    ]
    assert posts_today(leads, NOW) == 3


def expected_posts(url: str, max_posts: int = 2) -> int:
    return len(posts_for_profile(url, max_posts))


def test_harvest_marks_done_and_no_posts(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(12, batch_size=5, max_batches=2)
    seen: list[BatchOutcome] = []
    report = Harvester(make_client(), now=lambda: NOW).run(client, base, "260302-120000-Acme-Co", on_batch=seen.append)
    assert len(report.batches) == 2 and seen == report.batches
    assert report.reason == "max batches reached (2)"
    assert report.status is ClientRunStatus.COMPLETED and not report.failed
    leads = {x.lead_id: x for x in base.list_leads()}
    processed = [x for x in leads.values() if x.harvest_status is not None]
    assert len(processed) == 10
    total = 0
    for x in processed:
        n = expected_posts(x.profile_url)
        total += n
        if n:
            assert x.harvest_status is HarvestStatus.DONE and x.posts_found == n == len(x.posts)
            assert {normalize_profile_url(p["authorUrl"]) for p in x.posts} == {normalize_profile_url(x.profile_url)}
        else:
            assert x.harvest_status is HarvestStatus.NO_POSTS and x.posts_found == 0
        assert x.harvest_run_id == "260302-120000-Acme-Co" and x.last_error is None and x.last_check_at == NOW
    assert any(x.harvest_status is HarvestStatus.NO_POSTS for x in processed), "the sandbox has empty profiles"
    assert report.posts_harvested == total
    assert report.profiles_submitted == 10
    empty = sum(1 for x in processed if x.harvest_status is HarvestStatus.NO_POSTS)
    # Apify's own figure: $0.002 a post plus $0.002 a target that returned nothing
    assert report.cost_usd == pytest.approx(0.002 * total + 0.002 * empty)
    for b in report.batches:
        assert b.apify_run_id and b.apify_status == "SUCCEEDED"
        m = b.metrics()
        assert m["profiles_submitted"] == m["targets_submitted"] == 5
        assert m["targets_with_posts"] + m["targets_empty"] == 5 and m["targets_not_covered"] == 0
        assert m["apify_cost_usd"] == pytest.approx(0.002 * b.posts_harvested + 0.002 * m["targets_empty"])
    for x in processed:
        period = timedelta(days=7) if x.harvest_status is HarvestStatus.DONE else timedelta(days=14)
        assert x.next_check_at == NOW + period


def test_daily_target_stops_the_harvest(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(30, batch_size=4, daily_target=3)
    report = Harvester(make_client(), now=lambda: NOW).run(client, base, "r-Acme-Co")
    assert report.reason is not None and report.reason.startswith("daily target reached")
    assert report.posts_harvested >= 3
    assert report.posts_harvested - report.batches[-1].posts_harvested < 3
    assert posts_today(base.list_leads(), NOW) == report.posts_harvested


def test_nothing_to_do(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(0)
    assert Harvester(make_client()).run(client, base, "r").reason == "no lead waiting for harvesting"
    client.daily_target = 0
    assert "no daily target" in (Harvester(make_client()).run(client, base, "r").reason or "")


def test_failed_batch_goes_back_to_pending_and_others_continue(
    make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox
) -> None:
    client, base = make_leads(6, batch_size=3)
    sandbox.add_fault(service="apify", mode="server_500", times=1, path=r"^/v2/acts/")
    report = Harvester(make_client(retry=NO_RETRY), now=lambda: NOW).run(client, base, "r-Acme-Co")
    assert [b.ok for b in report.batches] == [False, True]
    assert isinstance(report.batches[0].error, UpstreamError)
    assert report.status is ClientRunStatus.COMPLETED_WITH_ERRORS
    failed_ids = set(report.batches[0].lead_ids)
    for x in base.list_leads():
        if x.lead_id in failed_ids:
            assert x.harvest_status is HarvestStatus.PENDING
            assert x.last_error and x.last_error.startswith("upstream:") and "500" in x.last_error
            assert x.posts_found is None
        else:
            assert x.harvest_status in (HarvestStatus.DONE, HarvestStatus.NO_POSTS)
    # The failed leads are picked again by the next run.
    assert {x.lead_id for x in select_leads(base.list_leads(), NOW)} == failed_ids


def test_failed_actor_run_is_not_no_posts(make_client: MakeClient, make_leads: MakeLeads, sandbox: Sandbox) -> None:
    client, base = make_leads(4, batch_size=4)
    sandbox.apify.outcome = "FAILED"
    report = Harvester(make_client(), now=lambda: NOW).run(client, base, "r-Acme-Co")
    assert report.status is ClientRunStatus.FAILED
    b = report.batches[0]
    assert b.apify_status == "FAILED" and b.apify_run_id and b.posts_harvested == 0 and b.cost_usd == 0
    assert all(x.harvest_status is HarvestStatus.PENDING for x in base.list_leads())
    assert all("FAILED" in (x.last_error or "") for x in base.list_leads())


def test_auth_failure_stops_after_one_batch(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(6, batch_size=2)
    report = Harvester(make_client(token="tokWrongWrongWrong0000"), now=lambda: NOW).run(client, base, "r")
    assert len(report.batches) == 1 and isinstance(report.batches[0].error, AuthError)
    assert report.reason is not None and report.reason.startswith("stopped after a auth failure")
    statuses = [x.harvest_status for x in base.list_leads()]
    assert statuses.count(HarvestStatus.PENDING) == 2 and statuses.count(None) == 4


def test_a_bug_puts_leads_back_and_is_raised(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(2, batch_size=2)
    apify = make_client()

    def broken(_input: dict[str, Any], **kw: Any) -> Any:
        raise KeyError("defaultDatasetId")

    apify.run_actor = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        Harvester(apify, now=lambda: NOW).run(client, base, "r")
    assert all(x.harvest_status is HarvestStatus.PENDING for x in base.list_leads())
    assert all((x.last_error or "").startswith("KeyError") for x in base.list_leads())


def test_new_posts_merge_into_existing_ones(make_client: MakeClient, make_leads: MakeLeads) -> None:
    client, base = make_leads(8, batch_size=8)
    target = next(x for x in base.list_leads() if expected_posts(x.profile_url) > 0)
    known = posts_for_profile(target.profile_url, 2)[0]
    stale_copy = {"postUrl": known["linkedinUrl"] + "?utm_source=old", "likes": 0}
    older = {"postUrl": "https://www.linkedin.com/posts/x_old-activity-7000000000000000001-aa", "likes": 4}
    base.update_leads({target.lead_id: {"posts": [stale_copy, older], "harvest_status": HarvestStatus.PENDING}})
    Harvester(make_client(), now=lambda: NOW).run(client, base, "r")
    after = base.get_lead(target.lead_id)
    assert after.harvest_status is HarvestStatus.DONE
    assert len(after.posts) == expected_posts(target.profile_url) + 1
    assert after.posts[0]["postUrl"] == known["linkedinUrl"] and after.posts[0]["likes"] > 0
    assert after.posts[1] == older
