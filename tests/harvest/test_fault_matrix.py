"""Every sandbox fault mode on each of the three Apify calls (start, poll, dataset), through the harvester.

A fault that lasts gives the right category and leaves every lead Pending with the error (never No Posts);
a retryable fault that clears after one hit is absorbed by the retry policy and the harvest succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from leadkit.errors import Category
from leadkit.harvest.harvester import Harvester
from leadkit.http import RetryPolicy, Timeouts
from leadkit.models import Client, HarvestStatus
from leadkit.sandbox.apify import posts_for_profile
from leadkit.sandbox.core import FAULT_MODES
from leadkit.sandbox.server import Sandbox
from leadkit.store.base import LeadBase

from .conftest import MakeClient

CALLS = {
    "start": r"^/v2/acts/[^/]+/runs",
    "poll": r"^/v2/actor-runs/",
    "dataset": r"^/v2/datasets/[^/]+/items",
}

EXPECTED: dict[str, Category] = {
    "html_200": Category.CONFIG,
    "html_401": Category.AUTH,
    "html_404": Category.CONFIG,
    "json_401": Category.AUTH,
    "json_403": Category.AUTH,
    "json_404": Category.CONFIG,
    "timeout_408": Category.UPSTREAM,
    "rate_limit_429": Category.RATE_LIMIT,
    "server_500": Category.UPSTREAM,
    "bad_gateway_502": Category.UPSTREAM,
    "slow": Category.UPSTREAM,
    "truncated_json": Category.CONFIG,
    "drop_connection": Category.UPSTREAM,
}
RETRYABLE = {mode for mode, category in EXPECTED.items() if category in (Category.UPSTREAM, Category.RATE_LIMIT)}

# Two tries; the sandbox's Retry-After is 1 s, so one 429 wait fits the budget and a second does not.
MATRIX_RETRY = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02, jitter_s=0.01, max_rate_limit_wait_s=1.0)
# A `slow` answer (0.5 s) outlasts the read timeout (0.25 s); held polls are turned off by it.
MATRIX_TIMEOUTS = Timeouts(connect=1, read=0.25, write=1, pool=1)
SLOW_DELAY_S = 0.5


def short_sleep(seconds: float) -> None:
    """Sleep at most 50 ms: the policy still decides (Retry-After against its budget); the test need not wait."""
    time.sleep(min(seconds, 0.05))


MakeLeads = Callable[..., tuple[Client, LeadBase]]


def test_every_fault_mode_is_covered() -> None:
    assert set(EXPECTED) == set(FAULT_MODES)


def add_fault(sandbox: Sandbox, mode: str, call: str, times: int) -> None:
    rule = {"service": "apify", "mode": mode, "times": times, "path": CALLS[call]}
    if mode == "slow":
        rule["delay_s"] = SLOW_DELAY_S
    sandbox.add_fault(**rule)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_lasting_fault_gives_its_category_and_no_lead_ends_no_posts(
    mode: str, call: str, sandbox: Sandbox, make_client: MakeClient, make_leads: MakeLeads
) -> None:
    client, base = make_leads(3, batch_size=3)
    add_fault(sandbox, mode, call, times=-1)
    apify = make_client(retry=MATRIX_RETRY, timeouts=MATRIX_TIMEOUTS, retry_sleep=short_sleep)
    assert apify.poll_wait_s == 0
    report = Harvester(apify).run(client, base, "260302-120000-Acme-Co")
    assert len(report.batches) == 1
    error = report.batches[0].error
    assert error is not None, f"{mode} on {call} went unnoticed"
    assert error.category is EXPECTED[mode], f"{mode} on {call}: {error.category}: {error}"
    for lead in base.list_leads():
        assert lead.harvest_status is HarvestStatus.PENDING
        assert lead.last_error and lead.last_error.startswith(f"{EXPECTED[mode]}:")
    if call != "start":
        assert report.batches[0].apify_run_id, "a failure after the start names the Apify run"
    # A request retried past a read timeout leaves the server thread sleeping; let it finish quietly.
    sandbox.clear_faults()


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("mode", sorted(RETRYABLE))
def test_retryable_fault_that_clears_is_absorbed(
    mode: str, call: str, sandbox: Sandbox, make_client: MakeClient, make_leads: MakeLeads
) -> None:
    client, base = make_leads(3, batch_size=3)
    add_fault(sandbox, mode, call, times=1)
    apify = make_client(retry=MATRIX_RETRY, timeouts=MATRIX_TIMEOUTS, retry_sleep=short_sleep)
    report = Harvester(apify).run(client, base, "260302-120000-Acme-Co")
    assert report.batches[0].error is None, f"{mode} on {call} was not retried: {report.batches[0].error}"
    assert sandbox.state.faults.rules() == [], "the fault was hit"
    for lead in base.list_leads():
        expected = HarvestStatus.DONE if posts_for_profile(lead.profile_url, 2) else HarvestStatus.NO_POSTS
        assert lead.harvest_status is expected
