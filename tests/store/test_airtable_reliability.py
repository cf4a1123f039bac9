"""The Airtable backend under pressure and under bad input: concurrent opens, 429 storms, schema and auth
errors, HTML pages, timeouts, provisioning. Everything goes through the sandbox over real HTTP."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.errors import AuthError, ConfigError, MissingRecordError, SchemaError, UpstreamError
from leadkit.models import Client, ClientRun, ClientRunStatus, EventKind, Lease, NewLead, RunEvent, Source
from leadkit.store import open_store
from leadkit.store.airtable import AirtableStore, make_api
from leadkit.store.provision import check_schema, provision
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, ClientRunResults, Leads, TableSpec
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

RUN = "250925-201845"


def new_master(sandbox: Sandbox, tables: tuple[TableSpec, ...] = MASTER_TABLES) -> str:
    return sandbox.airtable.create_base("Master Clients", tables_spec(tables))


def open_in_child(endpoint: str, token: str, base_id: str, client_ids: list[str], start: Any) -> list[bool]:
    """Run in a spawned process: wait for the others, then open the same ClientRuns."""
    settings = Settings(
        airtable_api_key=SecretStr(token),
        airtable_endpoint_url=endpoint,
        airtable_rate_limit_wait_s=1,
        airtable_max_requests_per_s=1000,
    )
    store = AirtableStore(base_id, settings)
    records = [ClientRun(run_id=RUN, client_id=c, source=Source.BATCH) for c in client_ids]
    start.wait(timeout=60)
    return [created for _, created in store.open_client_runs(records)]


def test_four_processes_opening_the_same_client_runs_make_one_record_each(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    clients = ["Acme-Co", *(f"Client-{i:02d}" for i in range(11))]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            args = [(sandbox.airtable_url, sandbox.token, base_id, clients, start)] * 4
            results = pool.starmap(open_in_child, args, chunksize=1)
    records = sandbox.airtable.records(base_id, ClientRunResults.TABLE)
    assert sorted(r["fields"][ClientRunResults.CLIENT_ID] for r in records) == sorted(clients)
    for index in range(len(clients)):
        assert sum(result[index] for result in results) == 1  # exactly one process created each record
    store = AirtableStore(base_id, airtable_settings(sandbox))
    for client_id in clients:
        got = store.get_client_run(RUN, client_id)
        assert got is not None and got.status is ClientRunStatus.RUNNING and got.source is Source.BATCH


def test_a_429_storm_mid_batch_loses_no_write(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox))
    clients = [f"Client-{i:02d}" for i in range(12)]
    opened = store.open_client_runs([ClientRun(run_id=RUN, client_id=c, source=Source.BATCH) for c in clients])
    sandbox.set_rate_limit(8, penalty_s=1)
    try:
        for record, _ in opened:
            record.status = ClientRunStatus.COMPLETED
            record.metrics = {"posts_harvested": 3.0}
            events = [
                RunEvent(RUN, record.client_id, "harvest", EventKind.COMPLETED, "ok", {"posts_harvested": 3}),
            ]
            store.save_client_run(record, events)
            store.add_events([RunEvent(RUN, record.client_id, "report", EventKind.COMPLETED, "sent")])
    finally:
        sandbox.set_rate_limit(0, penalty_s=30)
    assert store.api.rate_limit_waits > 0  # type: ignore[attr-defined]  # the storm happened
    assert sandbox.stats()["by_status"].get("429", 0) > 0
    for client_id in clients:
        got = store.get_client_run(RUN, client_id)
        assert got is not None and got.status is ClientRunStatus.COMPLETED and got.metrics == {"posts_harvested": 3.0}
        assert [e.stage for e in store.list_events(run_id=RUN, client_id=client_id)] == ["harvest", "report"]


def test_a_429_with_retry_after_is_waited_out_not_failed(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox, airtable_rate_limit_wait_s=60))
    sandbox.add_fault(service="airtable", mode="rate_limit_429", times=2, path=base_id)
    try:
        store.save_client(Client(client_id="Globex", name="Globex"))
    finally:
        sandbox.clear_faults()
    assert store.get_client("Globex").name == "Globex"
    assert store.api.rate_limit_waits == 2  # type: ignore[attr-defined]  # Retry-After: 1, not the 60 s default


def test_unknown_field_is_a_schema_error_naming_table_and_field(sandbox: Sandbox) -> None:
    crr = next(t for t in MASTER_TABLES if t.name == ClientRunResults.TABLE)
    lacking = TableSpec(crr.name, tuple(f for f in crr.fields if f.name != ClientRunResults.HEARTBEAT))
    tables = tuple(lacking if t.name == crr.name else t for t in MASTER_TABLES)
    base_id = new_master(sandbox, tables)
    store = AirtableStore(base_id, airtable_settings(sandbox))
    with pytest.raises(SchemaError) as caught:
        store.open_client_runs([ClientRun(run_id=RUN, client_id="Globex", source=Source.BATCH)])
    message = str(caught.value)
    assert "'Client Run Results'" in message and "'Heartbeat'" in message
    assert "leadkit airtable provision" in caught.value.hint
    assert caught.value.exit_code == 2
    with pytest.raises(SchemaError, match="Heartbeat"):
        store.init()


def test_a_select_option_the_base_lacks_is_a_schema_error(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox))
    with pytest.raises(SchemaError, match="Clients"):
        store.save_client(Client(client_id="Globex", name="Globex", status="Archived"))
    assert store.list_clients() == []


def test_a_base_without_tables_fails_init_with_the_fix_and_writes_nothing(sandbox: Sandbox) -> None:
    base_id = sandbox.airtable.create_base(
        "Empty", [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    store = AirtableStore(base_id, airtable_settings(sandbox))
    before = sandbox.stats()["by_method"].copy()
    with pytest.raises(SchemaError) as caught:
        store.init()
    assert "'Clients' is missing" in str(caught.value)
    assert f"leadkit airtable provision --base {base_id}" in caught.value.hint
    after = sandbox.stats()["by_method"]
    assert {m: after.get(m, 0) - before.get(m, 0) for m in ("POST", "PATCH", "PUT", "DELETE")} == dict.fromkeys(
        ("POST", "PATCH", "PUT", "DELETE"), 0
    )


@pytest.mark.parametrize("bad", ["", "app123", "appAbCdEfGh01234!", "tblAbCdEfGh012345", "appAbCdEfGh012345/x"])
def test_malformed_base_id_is_a_config_error(sandbox: Sandbox, bad: str) -> None:
    with pytest.raises(ConfigError, match="not an Airtable base ID"):
        AirtableStore(bad, airtable_settings(sandbox))


def test_store_url_and_missing_token(sandbox: Sandbox, tmp_path: Any) -> None:
    base_id = new_master(sandbox)
    store = open_store(f"airtable://{base_id}", tmp_path, settings=airtable_settings(sandbox))
    assert isinstance(store, AirtableStore) and store.url == f"airtable://{base_id}"
    with pytest.raises(ConfigError, match="AIRTABLE_API_KEY"):
        AirtableStore(base_id, airtable_settings(sandbox, airtable_api_key=None))
    with pytest.raises(ConfigError, match="not an Airtable base ID"):
        open_store("airtable://nope", tmp_path, settings=airtable_settings(sandbox))


def test_refused_token_is_an_auth_error_without_the_token(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    bad_token = "patRefusedToken0000000000000000000"
    store = AirtableStore(base_id, airtable_settings(sandbox, airtable_api_key=SecretStr(bad_token)))
    with pytest.raises(AuthError) as caught:
        store.list_clients()
    assert caught.value.exit_code == 2
    assert base_id in str(caught.value) and "401" in str(caught.value)
    assert bad_token not in str(caught.value) + caught.value.hint + repr(caught.value.details)
    no_access = AirtableStore("appNoSuchBase0000", airtable_settings(sandbox))
    with pytest.raises(AuthError, match="403.*appNoSuchBase0000") as denied:
        no_access.get_client("Globex")
    assert "scopes" in denied.value.hint


def test_html_page_is_a_config_error(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox))
    for mode in ("html_200", "html_404"):
        sandbox.add_fault(service="airtable", mode=mode, times=1, path=base_id)
        try:
            with pytest.raises(ConfigError, match="not JSON"):
                store.list_clients()
        finally:
            sandbox.clear_faults()


def test_slow_answer_times_out_as_upstream_error(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox, airtable_timeout_s=0.3))
    sandbox.add_fault(service="airtable", mode="slow", times=-1, path=base_id, delay_s=1.0)
    try:
        with pytest.raises(UpstreamError, match="timed out"):
            store.list_clients()
    finally:
        sandbox.clear_faults()


def test_server_errors_are_retried(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    store = AirtableStore(base_id, airtable_settings(sandbox))
    sandbox.add_fault(service="airtable", mode="server_500", times=2, path=base_id)
    try:
        assert store.list_clients() == []
    finally:
        sandbox.clear_faults()


def test_client_without_its_own_base(sandbox: Sandbox) -> None:
    store = AirtableStore(new_master(sandbox), airtable_settings(sandbox))
    with pytest.raises(ConfigError, match="--base") as caught:
        store.lead_base(Client(client_id="Initech", name="Initech"))
    assert "Initech" in str(caught.value) + caught.value.hint
    with pytest.raises(ConfigError, match="Initech"):
        store.save_client(Client(client_id="Initech", name="Initech", base_id="appShort"))


def test_leads_are_read_only_from_the_clients_own_base(sandbox: Sandbox) -> None:
    master = new_master(sandbox)
    store = AirtableStore(master, airtable_settings(sandbox))
    acme_base = sandbox.airtable.create_base("Acme", tables_spec(CLIENT_TABLES))
    store.lead_base(Client("Acme-Co", "Acme", base_id=acme_base)).import_leads(
        [NewLead("https://www.linkedin.com/in/jane-doe")]
    )
    sandbox.state.stats.reset()
    store.lead_base(Client("Acme-Co", "Acme", base_id=acme_base)).list_leads()
    bases = {e["base"] for e in sandbox.stats()["requests"]}
    assert bases == {acme_base}


def test_writes_go_ten_records_a_request(sandbox: Sandbox) -> None:
    store = AirtableStore(new_master(sandbox), airtable_settings(sandbox))
    base_id = sandbox.airtable.create_base("Globex", tables_spec(CLIENT_TABLES))
    leads = store.lead_base(Client("Globex", "Globex", base_id=base_id))
    leads.import_leads([NewLead(f"https://www.linkedin.com/in/p{i}") for i in range(25)])  # read + 3 creates
    sandbox.state.stats.reset()
    records = [ClientRun(run_id=RUN, client_id=f"C{i:02d}", source=Source.BATCH) for i in range(25)]
    store.open_client_runs(records)
    stats = sandbox.stats()
    # per 10: a read of which exist, one create with every field and the first event, a read back of the keys
    assert stats["total"] == 9
    assert stats["by_method"] == {"GET": 6, "POST": 3}
    assert len(sandbox.airtable.records(base_id, Leads.TABLE)) == 25


def test_provision_creates_what_is_missing_and_check_reports_options(sandbox: Sandbox) -> None:
    api = make_api(airtable_settings(sandbox))
    base_id = sandbox.airtable.create_base(
        "Legacy master",
        [
            {
                "name": "Clients",
                "fields": [
                    {"name": "Client ID", "type": "singleLineText"},
                    {"name": "Status", "type": "singleSelect", "options": {"choices": [{"name": "Active"}]}},
                ],
            }
        ],
    )
    problems = check_schema(api, base_id, "master")
    kinds = {(p.kind, p.table, p.field, p.option) for p in problems}
    assert ("missing_table", "Job Tracking", "", "") in kinds
    assert ("missing_field", "Clients", "Client Name", "") in kinds
    assert ("missing_option", "Clients", "Status", "Paused") in kinds
    assert all(p.fix for p in problems)
    created = provision(api, base_id, "master")
    assert "field 'Client Name' in table 'Clients'" in created
    assert any(c.startswith("table 'Client Run Results'") for c in created)
    left = check_schema(api, base_id, "master")
    assert {p.kind for p in left} == {"missing_option"}  # the meta API cannot add select options
    assert provision(api, base_id, "master") == []

    client_base = sandbox.airtable.create_base(
        "Client", [{"name": "Other", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    assert [p.kind for p in check_schema(api, client_base, "client")] == ["missing_table"]
    provision(api, client_base, "client")
    assert check_schema(api, client_base, "client") == []


def test_provisioned_base_works_as_a_store(sandbox: Sandbox) -> None:
    api = make_api(airtable_settings(sandbox))
    base_id = sandbox.airtable.create_base(
        "New", [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    provision(api, base_id, "master")
    store = AirtableStore(base_id, airtable_settings(sandbox), api=api)
    store.init()
    when = datetime.now(UTC) - timedelta(minutes=1)
    [(record, created)] = store.open_client_runs(
        [ClientRun(run_id=RUN, client_id="Globex", source=Source.NOTEBOOK, started_at=when)]
    )
    assert created and record.source is Source.NOTEBOOK
    with pytest.raises(MissingRecordError):
        store.save_client_run(ClientRun(run_id=RUN, client_id="Initech", source=Source.BATCH))


def test_a_passed_schema_check_is_remembered_in_the_workspace(sandbox: Sandbox, tmp_path: Any) -> None:
    base_id = new_master(sandbox)
    settings = airtable_settings(sandbox, leadkit_home=tmp_path)
    sandbox.state.stats.reset()
    AirtableStore(base_id, settings).init()
    AirtableStore(base_id, settings).init()  # a kernel of the same batch
    assert sandbox.state.stats.count(path="/meta/") == 1
    assert (tmp_path / f".airtable-schema-{base_id}.ok").exists()


def test_lease_between_two_processes(sandbox: Sandbox) -> None:
    base_id = new_master(sandbox)
    a = AirtableStore(base_id, airtable_settings(sandbox))
    b = AirtableStore(base_id, airtable_settings(sandbox))
    now = datetime.now(UTC)
    lease_a = Lease("batch-stream-1", "host-a", 1, RUN, now, now, 120.0)
    lease_b = Lease("batch-stream-1", "host-b", 2, RUN, now, now, 120.0)
    assert a.swap_lease("batch-stream-1", None, lease_a)
    assert b.get_lease("batch-stream-1") == lease_a
    assert not b.swap_lease("batch-stream-1", None, lease_b)
    assert b.swap_lease("batch-stream-1", lease_a, lease_b)  # b takes over (say a's heartbeat is stale)
    beat = Lease("batch-stream-1", "host-a", 1, RUN, now, now + timedelta(seconds=40), 120.0)
    assert not a.swap_lease("batch-stream-1", lease_a, beat)  # a's view is out of date: the claim fails
    assert a.get_lease("batch-stream-1") == lease_b
    assert b.swap_lease("batch-stream-1", lease_b, None)
    assert a.get_lease("batch-stream-1") is None
    # b removed the generations it wrote; a's (a holder that was taken over) and the release record stay
    assert len(sandbox.airtable.records(base_id, "Leases")) == 2
