"""Airtable calls draw on the client's deadline: a 429 penalty or a turn in the pace that would outlast the
client's time budget fails at once (RateLimitError), so the time kept for the write-back is not spent waiting,
and the sandbox sees no request sent after the budget ran out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit import deadline_scope
from leadkit.deadline import Deadline
from leadkit.errors import RateLimitError
from leadkit.store.airtable.api import AirtableApi, ApiPolicy
from leadkit_sandbox.server import Sandbox

TOKEN = "tokPacingDeadline00000000000001"
EMPTY_TABLE = [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=1, penalty_s=30) as sb:  # 1 a second: the 2nd request is a 429
        yield sb


def _api(sandbox: Sandbox, tmp_path: Path, slept: list[float]) -> AirtableApi:
    return AirtableApi(
        TOKEN,
        ApiPolicy(
            endpoint_url=sandbox.airtable_url,
            max_requests_per_s=1000.0,  # no pacing of its own: the sandbox's limit answers 429
            rate_limit_wait_s=31.0,
            pace_dir=tmp_path,
        ),
        sleep=slept.append,
    )


def _sent(sandbox: Sandbox, base: str) -> list[int]:
    return [r["status"] for r in sandbox.stats()["requests"] if r["service"] == "airtable" and r["base"] == base]


def test_a_429_penalty_past_the_budget_fails_at_once(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("Penalised", EMPTY_TABLE)
    slept: list[float] = []
    table = _api(sandbox, tmp_path, slept).table(base, "Table 1")
    with deadline_scope.within(Deadline(20.0)):
        table.all(max_records=1)
        with pytest.raises(RateLimitError, match="outlasts the client's time budget"):
            table.all(max_records=1)
    assert _sent(sandbox, base) == [200, 429]  # not tried again: 8 x 31 s would outlast the budget
    assert slept == []


def test_a_turn_in_the_pace_past_the_budget_sends_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("Blocked by another process", EMPTY_TABLE)
    slept: list[float] = []
    api = _api(sandbox, tmp_path, slept)
    api.pacer.block(str(api.endpoint_url), base, 20.0)  # another process got a 429: 20 s of penalty left
    with deadline_scope.within(Deadline(5.0)), pytest.raises(RateLimitError, match="past the client's time budget"):
        api.table(base, "Table 1").all(max_records=1)
    assert _sent(sandbox, base) == []
    assert slept == []


def test_the_write_back_after_the_budget_still_goes_out(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("Write-back", EMPTY_TABLE)
    slept: list[float] = []
    with deadline_scope.within(Deadline(0.0)):  # the budget ran out: the record is written in the margin
        _api(sandbox, tmp_path, slept).table(base, "Table 1").create({"Name": "final save"})
    assert _sent(sandbox, base) == [200]


def test_without_a_deadline_a_429_is_waited_out(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("No deadline", EMPTY_TABLE)
    slept: list[float] = []
    api = _api(sandbox, tmp_path, slept)
    api.rate_limit_attempts = 2
    table = api.table(base, "Table 1")
    table.all(max_records=1)
    with pytest.raises(RateLimitError, match="after 2 attempts"):
        table.all(max_records=1)
    assert len(slept) >= 1 and max(slept) >= 29  # the penalty was waited out (the sleep is recorded, not slept)
    assert _sent(sandbox, base) == [200, 429, 429]
