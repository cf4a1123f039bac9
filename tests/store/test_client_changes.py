"""Client changes on both backends: an update keeps what it does not change; remove deletes the client record."""

from __future__ import annotations

from dataclasses import replace

import pytest

from leadkit.errors import MissingRecordError
from leadkit.models import NewLead

from .conftest import StoreKit


def test_update_keeps_settings_and_remove_deletes(kit: StoreKit) -> None:
    store = kit.store
    acme = kit.new_client("Acme-Co", service_level=3, post_access=True, daily_target=7, batch_size=4, stream=2)
    store.lead_base(acme).import_leads([NewLead("https://www.linkedin.com/in/jane-roe/", "Jane", "Acme")])
    store.save_client(replace(store.get_client("Acme-Co"), daily_target=9))
    again = store.get_client("Acme-Co")
    assert (again.daily_target, again.batch_size, again.stream, again.base_id) == (9, 4, 2, acme.base_id)
    kit.new_client("Globex")
    store.remove_client("Acme-Co")
    assert [c.client_id for c in store.list_clients()] == ["Globex"]
    with pytest.raises(MissingRecordError):
        store.get_client("Acme-Co")
    with pytest.raises(MissingRecordError):
        store.remove_client("Acme-Co")
    if kit.kind == "sqlite":
        assert not list(store.home.glob("bases/Acme-Co.sqlite*"))  # type: ignore[attr-defined]
