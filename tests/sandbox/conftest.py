"""Shared sandbox fixtures: one `Sandbox` on port 0 per test session, reset around every test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pyairtable
import pytest

from leadkit_sandbox.server import Sandbox

TOKEN = "tokSandboxTests0000000000000001"
LIMITED_TOKEN = "tokLimitedToOneBase00000000002"

LEADS_FIELDS: list[dict[str, Any]] = [
    {"name": "Name", "type": "singleLineText"},
    {"name": "Client ID", "type": "singleLineText"},
    {"name": "Score", "type": "number", "options": {"precision": 0}},
    {"name": "Cost", "type": "number", "options": {"precision": 2}},
    {
        "name": "Status",
        "type": "singleSelect",
        "options": {"choices": [{"name": "New"}, {"name": "Pending"}, {"name": "Done"}]},
    },
    {"name": "Notes", "type": "multilineText"},
    {"name": "Active", "type": "checkbox"},
    {"name": "Last Run", "type": "dateTime"},
    {"name": "Day", "type": "date"},
    {"name": "Profile", "type": "url"},
]


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[Sandbox]:
    # LIMITED_TOKEN starts with access to a base that does not exist; tests grant it what they need.
    with Sandbox(tokens=[TOKEN, f"{LIMITED_TOKEN}=appNoSuchBase00000"], rate_limit=0) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Iterator[Sandbox]:
    """The session's sandbox with no faults, empty stats and rate limiting off."""
    sandbox_session.reset()
    sandbox_session.set_rate_limit(0, 30)
    yield sandbox_session
    sandbox_session.reset()
    sandbox_session.set_rate_limit(0, 30)


@pytest.fixture
def base_id(sandbox: Sandbox) -> str:
    """A fresh base with a Leads table (and a Clients table) for each test."""
    return sandbox.airtable.create_base(
        "Acme-Co",
        [
            {"name": "Leads", "fields": LEADS_FIELDS},
            {"name": "Clients", "fields": [{"name": "Client ID", "type": "singleLineText"}]},
        ],
    )


@pytest.fixture
def api(sandbox: Sandbox) -> pyairtable.Api:
    return pyairtable.Api(TOKEN, endpoint_url=sandbox.airtable_url, timeout=(5, 30))


@pytest.fixture
def table(api: pyairtable.Api, base_id: str) -> pyairtable.Table:
    return api.table(base_id, "Leads")


@pytest.fixture
def http(sandbox: Sandbox) -> Iterator[httpx.Client]:
    """Raw httpx on the Airtable port, with the test token."""
    with httpx.Client(
        base_url=sandbox.airtable_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def token() -> str:
    """The token that may use every base."""
    return TOKEN


@pytest.fixture
def limited_token() -> str:
    """A token that may use only the bases a test grants it."""
    return LIMITED_TOKEN
