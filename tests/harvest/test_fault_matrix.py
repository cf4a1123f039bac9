"""Every sandbox fault mode on each of the three Apify calls (start, poll, dataset), through the harvester.

A fault that lasts gives the right category and leaves every lead Pending with the error (never No Posts);
a retryable fault that clears after one hit is absorbed by the retry policy and the harvest succeeds. A start
whose answer is lost after the sandbox acted on it (slow, dropped or 502 after acting) is reconciled: the run
it started is adopted, so the harvest succeeds with exactly one run started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from leadkit.errors import Category
from leadkit.harvest.harvester import Harvester
from leadkit.http import RetryPolicy, Timeouts
from leadkit.models import Client, HarvestStatus
from leadkit.store.base import LeadBase
from leadkit_sandbox.apify import posts_for_profile
from leadkit_sandbox.core import FAULT_MODES
from leadkit_sandbox.server import Sandbox

from .conftest import MakeClient

CALLS = {
    "start": r"^/v2/acts/[^/]+/runs",  # with a body (below): the start, not the runs list
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
    "slow_after": Category.UPSTREAM,
    "drop_after": Category.UPSTREAM,
    "bad_gateway_after": Category.UPSTREAM,
    "memory_limit_402": Category.CONFIG,  # a capacity refusal means something only on the start call (below)
    "skip_targets": Category.UPSTREAM,  # on the start call: every target skipped, the run is suspect
}
#: (mode, call) pairs whose category differs from EXPECTED, or None: the harvest succeeds.
ON_CALL: dict[tuple[str, str], Category | None] = {
    ("slow", "start"): None,  # acted on after the client gave up: found and adopted
    ("slow_after", "start"): None,
    ("drop_after", "start"): None,
    ("bad_gateway_after", "start"): None,
    ("memory_limit_402", "start"): Category.RATE_LIMIT,
    ("skip_targets", "poll"): None,  # only an actor run applies it
    ("skip_targets", "dataset"): None,
}
RETRYABLE = {
    mode
    for mode, category in EXPECTED.items()
    if category in (Category.UPSTREAM, Category.RATE_LIMIT) and mode != "skip_targets"
}

# Two tries; the sandbox's Retry-After is 1 s, so one 429 wait fits the budget and a second does not.
MATRIX_RETRY = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02, jitter_s=0.01, max_rate_limit_wait_s=1.0)
# A `slow` answer (0.5 s) outlasts the read timeout (0.25 s); held polls are turned off by it.
MATRIX_TIMEOUTS = Timeouts(connect=1, read=0.25, write=1, pool=1)
SLOW_DELAY_S = 0.5
# A lost start is looked for a little longer than a slow answer takes; capacity waits are short and bounded.
MATRIX_CLIENT: dict[str, float] = {
    "reconcile_s": 1.0,
    "reconcile_interval_s": 0.1,
    "capacity_wait_s": 0.05,
    "capacity_max_wait_s": 0.3,
}


def short_sleep(seconds: float) -> None:
    """Sleep at most 50 ms: the policy still decides (Retry-After against its budget); the test need not wait."""
    time.sleep(min(seconds, 0.05))


MakeLeads = Callable[..., tuple[Client, LeadBase]]


def test_every_fault_mode_is_covered() -> None:
    assert set(EXPECTED) == set(FAULT_MODES)


def add_fault(sandbox: Sandbox, mode: str, call: str, times: int) -> None:
    rule: dict[str, object] = {"service": "apify", "mode": mode, "times": times, "path": CALLS[call]}
    if call == "start":
        rule["body"] = "linkedin" if mode == "skip_targets" else "targetUrls"  # skip_targets: every target URL
    if mode in ("slow", "slow_after"):
        rule["delay_s"] = SLOW_DELAY_S
    sandbox.add_fault(**rule)


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_lasting_fault_gives_its_category_and_no_lead_ends_no_posts(
    mode: str, call: str, sandbox: Sandbox, make_client: MakeClient, make_leads: MakeLeads
) -> None:
    client, base = make_leads(3, batch_size=3)
    add_fault(sandbox, mode, call, times=-1)
    apify = make_client(retry=MATRIX_RETRY, timeouts=MATRIX_TIMEOUTS, retry_sleep=short_sleep, **MATRIX_CLIENT)
    assert apify.poll_wait_s == 0
    report = Harvester(apify).run(client, base, "260302-120000-Acme-Co")
    expected = ON_CALL.get((mode, call), EXPECTED[mode])
    assert len(report.batches) == 1
    error = report.batches[0].error
    sandbox.clear_faults()  # a request retried past a read timeout leaves a server thread sleeping
    if expected is None:
        assert error is None, f"{mode} on {call}: {error}"
        assert len(sandbox.apify.runs()) == 1, f"{mode} on {call}: one start, one run"
        assert all(x.harvest_status in (HarvestStatus.DONE, HarvestStatus.NO_POSTS) for x in base.list_leads())
        return
    assert error is not None, f"{mode} on {call} went unnoticed"
    assert error.category is expected, f"{mode} on {call}: {error.category}: {error}"
    for lead in base.list_leads():
        assert lead.harvest_status is HarvestStatus.PENDING
        assert lead.last_error and expected in lead.last_error
    if call != "start" or mode == "skip_targets":
        assert report.batches[0].apify_run_id, "a failure after the start names the Apify run"
    assert len(sandbox.apify.runs()) <= MATRIX_RETRY.attempts, "a start is re-sent only when no run started"


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("mode", sorted(RETRYABLE))
def test_retryable_fault_that_clears_is_absorbed(
    mode: str, call: str, sandbox: Sandbox, make_client: MakeClient, make_leads: MakeLeads
) -> None:
    client, base = make_leads(3, batch_size=3)
    add_fault(sandbox, mode, call, times=1)
    apify = make_client(retry=MATRIX_RETRY, timeouts=MATRIX_TIMEOUTS, retry_sleep=short_sleep, **MATRIX_CLIENT)
    report = Harvester(apify).run(client, base, "260302-120000-Acme-Co")
    assert len(sandbox.apify.runs()) == 1, f"{mode} on {call}: one start, one run"
    assert report.batches[0].error is None, f"{mode} on {call} was not retried: {report.batches[0].error}"
    assert sandbox.state.faults.rules() == [], "the fault was hit"
    for lead in base.list_leads():
        expected = HarvestStatus.DONE if posts_for_profile(lead.profile_url, 2) else HarvestStatus.NO_POSTS
        assert lead.harvest_status is expected
