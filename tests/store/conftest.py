"""Store fixtures: every contract test runs on SQLite and on Airtable through the sandbox.

The Airtable side shares one `Sandbox` per module (rate limit off, for speed) and gets a fresh master base
per test, created with the schema leadkit provisions; each client gets its own base (`kit.new_client`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.models import Client
from leadkit.store.base import Store
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, TableSpec
from leadkit_sandbox.server import Sandbox

TOKEN = "tokStoreTests000000000000000001"


def tables_spec(tables: tuple[TableSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": [f.meta() for f in t.fields]} for t in tables]


#: A workspace folder that does not exist: the schema check is not remembered between stores in tests.
NO_HOME = Path(__file__).parent / "no-such-workspace"


def airtable_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "leadkit_home": NO_HOME,
        "airtable_api_key": SecretStr(sandbox.token),
        "airtable_endpoint_url": sandbox.airtable_url,
        "airtable_timeout_s": 10.0,
        "airtable_rate_limit_wait_s": 1.0,
        "airtable_max_requests_per_s": 1000.0,  # the module's sandbox has no rate limit: no pacing
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


@dataclass
class StoreKit:
    """A store under test and how to give a client its own lead base on that backend."""

    kind: str
    store: Store
    sandbox: Sandbox | None = None

    def new_base(self) -> str | None:
        if self.sandbox is None:
            return None
        return self.sandbox.airtable.create_base("Client base", tables_spec(CLIENT_TABLES))

    def new_client(self, client_id: str, **fields: Any) -> Client:
        client = Client(client_id=client_id, name=fields.pop("name", client_id), base_id=self.new_base(), **fields)
        return self.store.save_client(client)


@pytest.fixture(params=["sqlite", "airtable"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKit]:
    if request.param == "sqlite":
        from leadkit.store.sqlite import SQLiteStore

        store: Store = SQLiteStore(tmp_path)
        sb = None
    else:
        from leadkit.store.airtable import AirtableStore

        sb = request.getfixturevalue("sandbox")
        base_id = sb.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
        store = AirtableStore(base_id, airtable_settings(sb))
    store.init()
    try:
        yield StoreKit(request.param, store, sb)
    finally:
        store.close()


@pytest.fixture
def store(kit: StoreKit) -> Store:
    return kit.store
