"""The harvest's lead fields and queries on the Airtable store (through the sandbox), and creates whose answer was
lost: each is looked up by its key before anything is sent again, so nothing is created twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.harvest.harvester import select_leads
from leadkit.models import Client, DuePolicy, EventKind, HarvestStatus, NewLead, RunEvent
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, RunEvents, TableSpec
from leadkit_sandbox.server import Sandbox

from .conftest import profile_url

NOW = datetime.now(UTC).replace(microsecond=0)


def spec(tables: tuple[TableSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": [f.meta() for f in t.fields]} for t in tables]


@pytest.fixture
def airtable(sandbox: Sandbox, tmp_path: Any) -> Iterator[tuple[AirtableStore, Client]]:
    master = sandbox.airtable.create_base("Master Clients", spec(MASTER_TABLES))
    settings = Settings(
        leadkit_home=tmp_path,
        airtable_api_key=SecretStr(sandbox.token),
        airtable_endpoint_url=sandbox.airtable_url,
        airtable_timeout_s=1.0,
        airtable_rate_limit_wait_s=1.0,
        airtable_max_requests_per_s=1000.0,
    )
    store = AirtableStore(master, settings)
    store.init()
    client = Client("Acme-Co", "Acme Co", service_level=2, post_access=True, daily_target=10, max_usd_per_day=1.5)
    client.base_id = sandbox.airtable.create_base("Acme base", spec(CLIENT_TABLES))
    store.save_client(client)
    yield store, client
    store.close()


def test_client_cap_and_lead_due_query_on_airtable(airtable: tuple[AirtableStore, Client]) -> None:
    store, client = airtable
    assert store.get_client("Acme-Co").max_usd_per_day == pytest.approx(1.5)
    base = store.lead_base(client)
    base.import_leads([NewLead(profile_url(i)) for i in range(8)])
    ids = [x.lead_id for x in sorted(base.list_leads(), key=lambda x: x.profile_url)]
    base.update_leads(
        {
            ids[0]: {"harvest_status": HarvestStatus.DONE, "last_check_at": NOW - timedelta(days=1), "posts_found": 2},
            ids[1]: {"harvest_status": HarvestStatus.DONE, "last_check_at": NOW - timedelta(days=8)},
            ids[2]: {"harvest_status": HarvestStatus.NO_POSTS, "next_check_at": NOW + timedelta(days=2)},
            ids[3]: {"harvest_status": HarvestStatus.NO_POSTS, "next_check_at": NOW - timedelta(hours=1)},
            ids[4]: {"harvest_status": HarvestStatus.PROCESSING, "last_check_at": NOW - timedelta(minutes=5)},
            ids[5]: {"posts_actioned": 3},
        }
    )
    policy = DuePolicy()
    assert base.get_lead(ids[2]).next_check_at == NOW + timedelta(days=2)
    expected = {x.lead_id for x in select_leads(base.list_leads(), NOW, policy)}
    assert expected == {ids[1], ids[3], ids[6], ids[7]}
    assert {x.lead_id for x in base.due_leads(policy, NOW, limit=100)} == expected
    assert len(base.due_leads(policy, NOW, limit=3)) == 3
    assert base.posts_found_since(NOW - timedelta(days=2)) == 2


@pytest.mark.parametrize(("mode", "delay_s"), [("drop_after", 0.0), ("bad_gateway_after", 0.0), ("slow_after", 2.0)])
def test_a_create_whose_answer_was_lost_is_not_made_twice(
    airtable: tuple[AirtableStore, Client], sandbox: Sandbox, mode: str, delay_s: float
) -> None:
    store, client = airtable
    base = store.lead_base(client)
    sandbox.add_fault(
        service="airtable", mode=mode, times=1, path=rf"/{client.base_id}/", body="records", delay_s=delay_s
    )
    result = base.import_leads([NewLead(profile_url(i)) for i in range(12)])
    assert result.created == 12
    urls = sorted(x.profile_url for x in base.list_leads())
    assert urls == sorted(profile_url(i) for i in range(12)), "each lead exists exactly once"
    assert sandbox.state.faults.rules() == [], "the fault was hit"

    events = [RunEvent("261203-100000", "Acme-Co", "harvest", EventKind.INFO, f"event {i}") for i in range(3)]
    sandbox.add_fault(
        service="airtable",
        mode=mode,
        times=1,
        path=RunEvents.TABLE.replace(" ", "(%20| )"),
        body="Event ID",
        delay_s=delay_s,
    )
    store.add_events(events)
    table = store.api.table(store.base_id, RunEvents.TABLE)
    messages = sorted(r["fields"][RunEvents.MESSAGE] for r in table.all())
    assert messages == ["event 0", "event 1", "event 2"]
