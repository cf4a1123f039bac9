"""Fixtures for the harvest tests: the real sandbox on port 0, Apify clients with tiny policies,
and a real SQLite lead base."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from leadkit.harvest.apify import ApifyClient
from leadkit.http import HttpClient, RetryPolicy, Timeouts
from leadkit.models import Client, NewLead
from leadkit.store.base import LeadBase
from leadkit.store.sqlite import SQLiteStore
from leadkit_sandbox.server import Sandbox

TOKEN = "tokHarvestTests000000000000001"
FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02, jitter_s=0.01, max_rate_limit_wait_s=1.0)


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Iterator[Sandbox]:
    """The session's sandbox with no faults, empty stats, quick runs that succeed."""
    sb = sandbox_session
    sb.reset()
    sb.apify.clear_runs()
    sb.apify.run_duration_s = 0.05
    sb.apify.outcome = None
    yield sb
    sb.reset()
    sb.apify.run_duration_s = 0.05
    sb.apify.outcome = None


MakeClient = Callable[..., ApifyClient]


@pytest.fixture
def make_client(sandbox: Sandbox) -> Iterator[MakeClient]:
    """An ApifyClient on the sandbox; keyword arguments override the retry policy, timeouts, token..."""
    made: list[ApifyClient] = []

    def make(
        *,
        retry: RetryPolicy = FAST_RETRY,
        timeouts: Timeouts = Timeouts(connect=2, read=10, write=5, pool=2),
        token: str = TOKEN,
        base_url: str | None = None,
        retry_sleep: Callable[[float], None] = time.sleep,
        **kw: Any,
    ) -> ApifyClient:
        url = base_url or sandbox.apify_url
        http = HttpClient(url, service="Apify", token=token, timeouts=timeouts, retry=retry, sleep=retry_sleep)
        kw.setdefault("poll_interval_s", 0.02)
        kw.setdefault("reconcile_s", 0.3)
        kw.setdefault("reconcile_interval_s", 0.1)
        client = ApifyClient(http, "harvestapi~linkedin-profile-posts", **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path)
    s.init()
    yield s
    s.close()


def profile_url(i: int) -> str:
    return f"https://www.linkedin.com/in/lead-{i:03d}/"


@pytest.fixture
def make_leads(store: SQLiteStore) -> Callable[..., tuple[Client, LeadBase]]:
    def make(
        n: int, *, batch_size: int = 5, daily_target: int = 1000, max_batches: int = 10, start: int = 0
    ) -> tuple[Client, LeadBase]:
        client = Client(
            client_id="Acme-Co",
            name="Acme Co",
            service_level=2,
            post_access=True,
            daily_target=daily_target,
            batch_size=batch_size,
            max_batches=max_batches,
        )
        store.save_client(client)
        base = store.lead_base(client)
        base.import_leads([NewLead(profile_url(i), name=f"Lead {i}") for i in range(start, start + n)])
        return client, base

    return make
