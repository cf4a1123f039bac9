"""Pacing of Airtable requests shared by every process on the machine: the schedule itself (fake clock), and
processes in different working directories hammering one sandbox base that has Airtable's real limit."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leadkit.errors import ConfigError, MissingRecordError, RateLimitError
from leadkit.models import Run, RunStatus
from leadkit.store.airtable import PACE_MARGIN_S, AirtableApi, AirtableStore, RequestPacer, default_pace_dir
from leadkit.store.airtable.api import ApiPolicy
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, JobTracking, Leads
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

ENDPOINT = "https://api.airtable.com"
BASE = "appAbCdEfGh012345"
WINDOW_S = 1.0 + PACE_MARGIN_S


class FakeTime:
    """A clock that moves only when told; sleeping is recorded, not done."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def pacer(tmp_path: Path, rate: float = 4.0, fake: FakeTime | None = None) -> tuple[RequestPacer, FakeTime]:
    fake = fake or FakeTime()
    return RequestPacer(rate, directory=tmp_path / "pace", clock=fake.clock, sleep=fake.sleep), fake


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


def test_a_burst_goes_at_once_then_the_pace_holds(tmp_path: Path) -> None:
    p, fake = pacer(tmp_path)
    delays = [p.wait(ENDPOINT, BASE) for _ in range(10)]
    assert delays == pytest.approx([0, 0, 0, 0, WINDOW_S, WINDOW_S, WINDOW_S, WINDOW_S, 2 * WINDOW_S, 2 * WINDOW_S])
    assert fake.slept == [d for d in delays if d > 0]
    assert most_in_window([fake.now + d for d in delays], 1.0) == 4
    assert p.waits == 6 and p.waited_s == pytest.approx(sum(delays))


def test_the_schedule_is_shared_through_the_folder_not_the_object(tmp_path: Path) -> None:
    fake = FakeTime()
    a, _ = pacer(tmp_path, fake=fake)
    b, _ = pacer(tmp_path, fake=fake)
    for _ in range(4):
        assert a.wait(ENDPOINT, BASE) == 0
    assert b.wait(ENDPOINT, BASE) == pytest.approx(WINDOW_S)  # a's bookings count for b
    assert b.wait(ENDPOINT, "appOtherBase00000") == 0  # another base has its own schedule
    assert b.wait("http://127.0.0.1:9", BASE) == 0  # so has another endpoint
    other = RequestPacer(4.0, directory=tmp_path / "elsewhere", clock=fake.clock, sleep=fake.sleep)
    assert other.wait(ENDPOINT, BASE) == 0
    assert a.path(ENDPOINT, BASE) == b.path(ENDPOINT + "/", BASE)
    assert a.path(ENDPOINT, BASE).parent == tmp_path / "pace"


def test_rates_below_one_and_fractions(tmp_path: Path) -> None:
    slow, _ = pacer(tmp_path, rate=0.5)
    assert [slow.wait(ENDPOINT, BASE) for _ in range(3)] == pytest.approx([0, 2 + PACE_MARGIN_S, 4 + 2 * PACE_MARGIN_S])
    fraction, _ = pacer(tmp_path / "f", rate=4.5)  # rounded down: 4 a second
    assert fraction.burst == 4 and fraction.window_s == pytest.approx(WINDOW_S)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="AIRTABLE_MAX_REQUESTS_PER_S"):
            RequestPacer(bad, directory=tmp_path)


def test_a_penalty_holds_every_process_back(tmp_path: Path) -> None:
    p, fake = pacer(tmp_path)
    p.block(ENDPOINT, BASE, 30.0)
    fake.now += 10
    assert p.wait(ENDPOINT, BASE) == pytest.approx(20.0)
    fake.now += 20
    assert p.wait(ENDPOINT, BASE) == 0


def test_torn_files_and_clock_jumps_do_not_stall(tmp_path: Path) -> None:
    p, fake = pacer(tmp_path)
    path = p.path(ENDPOINT, BASE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"booked": [1, 2, "')
    assert p.wait(ENDPOINT, BASE) == 0
    path.write_text(json.dumps({"blocked_until": fake.now + 86400, "booked": [fake.now + 86400] * 4}))
    assert p.wait(ENDPOINT, BASE) == 0  # bookings from a clock that has since jumped back are dropped
    assert json.loads(path.read_text())["blocked_until"] == 0


def test_an_unusable_folder_paces_the_process_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    fake = FakeTime()
    p = RequestPacer(4.0, directory=blocker / "pace", clock=fake.clock, sleep=fake.sleep)
    with caplog.at_level(logging.WARNING, logger="leadkit.store.airtable"):
        delays = [p.wait(ENDPOINT, BASE) for _ in range(5)]
    assert delays == pytest.approx([0, 0, 0, 0, WINDOW_S])
    assert "pacing this process only" in caplog.text


def test_old_schedule_files_are_pruned(tmp_path: Path) -> None:
    p, fake = pacer(tmp_path)
    p.wait(ENDPOINT, BASE)
    p.wait(ENDPOINT, "appOtherBase00000")
    old = p.path(ENDPOINT, BASE)
    os.utime(old, (fake.now - 2 * 86400, fake.now - 2 * 86400))
    assert p.prune() == 1
    assert not old.exists() and p.path(ENDPOINT, "appOtherBase00000").exists()


def test_default_folder_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    here = default_pace_dir()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert default_pace_dir() == here and here.is_absolute()
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------------------------------------------------
# real processes, real sandbox

PROCESSES = 4
REQUESTS_EACH = 8


def hammer(endpoint: str, token: str, base_id: str, workdir: str, start: Any) -> dict[str, Any]:
    """Run in a spawned process, in its own working directory: reads, writes and meta calls to one base."""
    os.chdir(workdir)
    api = AirtableApi(token, ApiPolicy(endpoint_url=endpoint, rate_limit_wait_s=2.0, max_requests_per_s=4.0))
    table = api.table(base_id, Leads.TABLE)
    start.wait(timeout=60)
    began = time.monotonic()
    for i in range(REQUESTS_EACH):
        if i % 4 == 0:
            api.get(api.build_url("meta/bases", base_id, "tables"))
        elif i % 2 == 0:
            table.create({Leads.PROFILE_URL: f"https://www.linkedin.com/in/{os.getpid()}-{i}/"})
        else:
            table.all(max_records=3)
    return {
        "rate_limit_waits": api.rate_limit_waits,
        "pace_waits": api.pacer.waits,
        "seconds": time.monotonic() - began,
    }


def test_processes_in_different_folders_share_the_pace_and_get_no_429(tmp_path: Path) -> None:
    with Sandbox(rate_limit=5, penalty_s=2) as sandbox:
        base_id = sandbox.airtable.create_base("Client base", tables_spec(CLIENT_TABLES))
        ctx = multiprocessing.get_context("spawn")
        dirs = []
        for n in range(PROCESSES):
            (tmp_path / f"cwd{n}").mkdir()
            dirs.append(str(tmp_path / f"cwd{n}"))
        with ctx.Manager() as manager:
            start = manager.Barrier(PROCESSES)
            with ctx.Pool(PROCESSES) as pool:
                args = [(sandbox.airtable_url, sandbox.token, base_id, d, start) for d in dirs]
                results = pool.starmap(hammer, args, chunksize=1)
        stats = sandbox.stats()
    times = [r["time"] for r in stats["requests"] if r["base"] == base_id]
    assert len(times) == PROCESSES * REQUESTS_EACH
    assert stats["by_status"].get("429", 0) == 0
    assert [r["rate_limit_waits"] for r in results] == [0] * PROCESSES
    assert sum(r["pace_waits"] for r in results) > 0  # the pacing did the work, not luck
    assert most_in_window(times, 1.0) <= 5  # what the sandbox allows; 4 with no network jitter
    span = max(times) - min(times)
    assert (len(times) - 4) / span <= 4.0  # the pace over the whole run
    assert len(sandbox.airtable.records(base_id, Leads.TABLE)) == PROCESSES * REQUESTS_EACH // 4


def test_without_pacing_the_same_sandbox_answers_429(tmp_path: Path) -> None:
    """The control: the limit the test above stays under is real."""
    with Sandbox(rate_limit=5, penalty_s=2) as sandbox:
        base_id = sandbox.airtable.create_base("Client base", tables_spec(CLIENT_TABLES))
        api = AirtableApi(
            sandbox.token,
            ApiPolicy(
                endpoint_url=sandbox.airtable_url, max_requests_per_s=1000, rate_limit_attempts=1, pace_dir=tmp_path
            ),
        )
        with pytest.raises(RateLimitError, match="429"):
            for _ in range(8):
                api.table(base_id, Leads.TABLE).all(max_records=1)
        assert sandbox.stats()["by_status"].get("429", 0) == 1


def test_a_429_makes_other_processes_wait_out_the_penalty(tmp_path: Path) -> None:
    with Sandbox(rate_limit=0) as sandbox:
        base_id = sandbox.airtable.create_base("Client base", tables_spec(CLIENT_TABLES))
        first, second = (
            AirtableApi(
                sandbox.token, ApiPolicy(endpoint_url=sandbox.airtable_url, rate_limit_attempts=1, pace_dir=tmp_path)
            )
            for _ in range(2)
        )
        sandbox.add_fault(service="airtable", mode="rate_limit_429", times=1, path=base_id)  # Retry-After: 1
        with pytest.raises(RateLimitError):
            first.table(base_id, Leads.TABLE).all()
        began = time.monotonic()
        second.get(second.build_url("meta/bases", base_id, "tables"))  # the meta API counts against the base
        assert time.monotonic() - began >= 0.9
        assert second.pacer.waited_s >= 0.9 and second.rate_limit_waits == 0
        assert sandbox.stats()["by_status"].get("429", 0) == 1


# ---------------------------------------------------------------------------------------------------------
# fewer requests to pace


def test_finishing_a_run_this_process_started_takes_one_request(sandbox: Sandbox) -> None:
    base_id = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    store = AirtableStore(base_id, airtable_settings(sandbox, airtable_max_requests_per_s=1000.0))
    run = Run(run_id="250925-201845", started_at=datetime(2025, 9, 25, 20, 18, 45, tzinfo=UTC))
    assert store.insert_run(run)
    sandbox.state.stats.reset()
    run.status, run.ended_at = RunStatus.COMPLETED, run.started_at
    store.update_run(run)
    assert sandbox.stats()["total"] == 1
    got = store.get_run(run.run_id)
    assert got is not None and got.status is RunStatus.COMPLETED
    record = sandbox.airtable.records(base_id, JobTracking.TABLE)[0]
    store.api.table(base_id, JobTracking.TABLE).delete(record["id"])
    with pytest.raises(MissingRecordError, match="250925-201845"):
        store.update_run(run)
