"""Records people edited by hand in Airtable: a blank or unknown value in a field leadkit needs is a DataError
naming the table, the record and the field, never an assertion; and alert rows are created once even when the
create's answer is lost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from leadkit.errors import DataError
from leadkit.models import Alert, ClientRun, EventKind, Lease, RunEvent, Source
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import MASTER_TABLES, Alerts, ClientRunResults, Leases, RunEvents
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

RUN = "261207-130000"


def new_store(sandbox: Sandbox) -> AirtableStore:
    base_id = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    return AirtableStore(base_id, airtable_settings(sandbox))


def edit(sandbox: Sandbox, base_id: str, table: str, record_id: str, fields: dict[str, object]) -> None:
    """Change a record as a person would (the Airtable UI or API), bypassing leadkit."""
    answer = requests.patch(
        f"{sandbox.airtable_url}/v0/{base_id}/{table}/{record_id}",
        json={"fields": fields, "typecast": True},
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_a_lease_with_a_blank_heartbeat_names_the_record(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    now = datetime.now(UTC)
    assert store.swap_lease("batch-stream-1", None, Lease("batch-stream-1", "host-a", 1, RUN, now, now, 120.0))
    (record,) = sandbox.airtable.records(store.base_id, Leases.TABLE)
    edit(sandbox, store.base_id, Leases.TABLE, record["id"], {Leases.HEARTBEAT_AT: None})
    with pytest.raises(DataError) as info:
        AirtableStore(store.base_id, airtable_settings(sandbox)).get_lease("batch-stream-1")
    assert record["id"] in info.value.message and "'Heartbeat At' is blank" in info.value.message
    assert "Leases" in info.value.message and "ISO 8601" in info.value.message


def test_a_run_event_with_a_blank_time_names_the_record(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    store.add_events([RunEvent(RUN, "", "records", EventKind.INFO, "a run event")])
    (record,) = sandbox.airtable.records(store.base_id, RunEvents.TABLE)
    edit(sandbox, store.base_id, RunEvents.TABLE, record["id"], {RunEvents.AT: None})
    with pytest.raises(DataError, match=rf"{record['id']} of table 'Run Events': field 'At' is blank"):
        store.list_events(run_id=RUN)


def test_a_client_run_with_a_status_leadkit_does_not_know_names_the_record(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    ((run, _),) = store.open_client_runs([ClientRun(run_id=RUN, client_id="Acme-Co", source=Source.BATCH)])
    edit(sandbox, store.base_id, ClientRunResults.TABLE, str(run.record_id), {ClientRunResults.STATUS: "On hold"})
    with pytest.raises(DataError) as info:
        store.list_client_runs(run_id=RUN)
    assert str(run.record_id) in info.value.message and "'On hold'" in info.value.message


def test_an_alert_whose_create_answer_was_lost_is_recorded_once(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    alert = Alert("lease_held", "batch-stream-1", "subject", "body", "", False, message_id="m1")
    sandbox.add_fault(service="airtable", mode="bad_gateway_after", path="/Alerts", body="Alert ID", times=1)
    try:
        store.add_alerts([alert])
    finally:
        sandbox.clear_faults()
    rows = sandbox.airtable.records(store.base_id, Alerts.TABLE)
    assert [r["fields"][Alerts.KIND] for r in rows] == ["lease_held"]
    assert [a.kind for a in store.list_alerts()] == ["lease_held"]
