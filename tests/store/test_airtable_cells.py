"""No cell overflows on the Airtable store: the sandbox refuses a long-text cell over 100,000 characters with
Airtable's 422, and leadkit sizes what it writes before sending (a lead's posts, a run's notes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from leadkit.harvest.posts import merge_posts, post_key
from leadkit.models import Client, DuePolicy, HarvestStatus, NewLead, Post, Run
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, JobTracking, Leads
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

PROFILE = "https://www.linkedin.com/in/long-writer"


def posts(n: int, *, chars: int, start: int = 0) -> list[Post]:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Post(
            post_url=f"https://www.linkedin.com/posts/long-writer_topic-activity-{7_000_000_000 + i}-abcd",
            author_url=PROFILE,
            text=f"post {i} " + "x" * chars,
            posted_at=(day + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        for i in range(start, start + n)
    ]


def test_the_sandbox_refuses_a_cell_over_100000_characters_with_airtables_422(sandbox: Sandbox) -> None:
    base_id = sandbox.airtable.create_base("Client", tables_spec(CLIENT_TABLES))
    url = f"{sandbox.airtable_url}/v0/{base_id}/{Leads.TABLE}"
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    body = {"records": [{"fields": {Leads.PROFILE_URL: PROFILE, Leads.POSTS_CONTENT: "x" * 100_001}}]}
    answer = requests.post(url, json=body, headers=headers, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "INVALID_VALUE_FOR_COLUMN"
    assert "100001 characters" in answer.json()["error"]["message"]
    assert sandbox.airtable.records(base_id, Leads.TABLE) == []
    body["records"][0]["fields"][Leads.POSTS_CONTENT] = "x" * 100_000
    assert requests.post(url, json=body, headers=headers, timeout=10).status_code == 200


def test_a_lead_with_150000_characters_of_posts_is_written_and_not_bought_again(sandbox: Sandbox) -> None:
    master = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    store = AirtableStore(master, airtable_settings(sandbox))
    base_id = sandbox.airtable.create_base("Client", tables_spec(CLIENT_TABLES))
    leads = store.lead_base(Client("Acme-Co", "Acme", base_id=base_id))
    leads.import_leads([NewLead(PROFILE, "Long Writer")])
    lead = leads.list_leads()[0]
    harvested = posts(100, chars=1500)  # about 155,000 characters of posts
    merged = merge_posts(lead.posts, harvested)
    now = datetime.now(UTC)
    policy = DuePolicy()
    leads.update_leads(
        {
            lead.lead_id: {
                "harvest_status": HarvestStatus.DONE,
                "posts_found": len(harvested),
                "posts": merged,
                "last_check_at": now,
                "next_check_at": now + policy.refresh_after,
            }
        }
    )
    stored = sandbox.airtable.records(base_id, Leads.TABLE)[0]["fields"]
    assert len(stored[Leads.POSTS_CONTENT]) <= 100_000
    assert stored[Leads.HARVEST_STATUS] == HarvestStatus.DONE.value  # written, not left Processing
    lead = leads.get_lead(lead.lead_id)
    full = [p for p in lead.posts if "text" in p]
    assert len(full) >= 50 and len(lead.posts) == 100
    newest = sorted(harvested, key=lambda p: p.posted_at or "", reverse=True)
    assert {p["postUrl"] for p in full} == {p.post_url for p in newest[: len(full)]}  # the newest keep their text
    # every post's dedupe key stays on the lead: the same posts bought again would count as nothing new
    known = {post_key(p["postUrl"]) for p in lead.posts}
    assert all(post_key(p.post_url) in known for p in harvested)
    again = posts(100, chars=1500) + posts(2, chars=100, start=100)
    assert sum(1 for p in again if post_key(p.post_url) not in known) == 2
    assert leads.due_leads(policy, now, limit=10) == []  # Done and not due: its posts are not bought again
    # and the next merge fits too
    leads.update_leads({lead.lead_id: {"posts": merge_posts(lead.posts, again)}})
    assert len(sandbox.airtable.records(base_id, Leads.TABLE)[0]["fields"][Leads.POSTS_CONTENT]) <= 100_000


@pytest.mark.parametrize("size", [100_001, 250_000])
def test_a_run_note_past_the_cell_is_cut_with_a_marker(sandbox: Sandbox, size: int) -> None:
    master = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    store = AirtableStore(master, airtable_settings(sandbox))
    run = Run("261207-120000", notes="n" * size)
    assert store.insert_run(run)
    run.notes = "m" * size
    store.update_run(run)
    notes = sandbox.airtable.records(master, JobTracking.TABLE)[0]["fields"][JobTracking.SYSTEM_NOTES]
    assert len(notes) <= 100_000 and notes.startswith("m" * 1000) and "cut" in notes[-200:]
