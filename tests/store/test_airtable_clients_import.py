"""`clients import` on Airtable: 10 clients a request, and a failure part way finished by running the same
import again, with nothing created twice (counted on the sandbox)."""

from __future__ import annotations

import pytest

from leadkit.clients import save_clients
from leadkit.errors import UpstreamError
from leadkit.models import Client
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import MASTER_TABLES, Clients
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec


def clients(n: int, *, level: int = 2) -> list[Client]:
    return [Client(f"Client-{i:02d}", f"Client {i}", service_level=level) for i in range(n)]


def test_an_import_writes_ten_clients_a_request(sandbox: Sandbox) -> None:
    store = AirtableStore(
        sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES)), airtable_settings(sandbox)
    )
    sandbox.state.stats.reset()
    save_clients(store, clients(25))
    assert sandbox.stats()["total"] == 3
    assert [c.client_id for c in store.list_clients()] == [f"Client-{i:02d}" for i in range(25)]


def test_an_import_that_fails_part_way_is_finished_by_running_it_again(sandbox: Sandbox) -> None:
    base_id = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    store = AirtableStore(base_id, airtable_settings(sandbox))
    save_clients(store, clients(5, level=1))  # some exist already: the import updates them
    wanted = clients(25, level=3)
    # the second request (Client-10..19) keeps failing, past urllib3's retries
    sandbox.add_fault(service="airtable", mode="bad_gateway_after", body='"Client-10"', times=1)
    sandbox.add_fault(service="airtable", mode="server_500", body='"Client-10"', times=-1)
    try:
        with pytest.raises(UpstreamError, match=r"after 10 of 25 clients were written") as info:
            save_clients(store, wanted)
        assert "Run the same import again" in info.value.hint
    finally:
        sandbox.clear_faults()
    stored = sandbox.airtable.records(base_id, Clients.TABLE)
    assert len(stored) == 20  # the first request, and the second one that acted before its answer was lost
    save_clients(store, wanted)  # the same import again
    stored = sandbox.airtable.records(base_id, Clients.TABLE)
    assert sorted(r["fields"][Clients.CLIENT_ID] for r in stored) == [c.client_id for c in wanted]  # none twice
    assert {c.service_level for c in store.list_clients()} == {3}
