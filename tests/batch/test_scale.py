"""A batch at agency scale: clients wait for a slot without being Running (so no sweep can call them Stale),
their Apify runs share the batch's limit (the sandbox counts them), and a batch killed with `kill -9` is swept
within the TTL (its in-flight records Stale, or Failed by their own kernels on the batch's death; its Run
Failed) and resumed with every client completed once.

Sizes are below the issue's (16 clients, not 40) to keep the test under half a minute on a shared 2-core machine;
the queue is still a dozen clients deep when the batch starts."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from leadkit.batch import sweep_streams
from leadkit.config import get_settings
from leadkit.models import ClientRunStatus, RunStatus
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from .conftest import LEADKIT, Env, add_harvest_clients, runs_by_client

CLIENTS, CONCURRENCY, APIFY_RUNS, ACTOR_S, TTL_S, KILL_AFTER = 16, 4, 3, 2.0, 6.0, 4


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(rate_limit=0, actor_seconds=ACTOR_S) as sb:
        yield sb


def test_queued_clients_are_never_stale_and_a_killed_batch_is_swept_then_resumed_once(
    batch_env: Env, sandbox: Sandbox
) -> None:
    ws = batch_env.ws
    ids = add_harvest_clients(ws, CLIENTS)
    for client in ws.store.list_clients():  # only the harvesting clients are Active
        if client.client_id not in ids and client.active:
            ws.store.save_client(type(client)(**{**client.__dict__, "status": "Paused"}))
    env = {
        **batch_env.env,
        "APIFY_TOKEN": sandbox.token,
        "APIFY_API_URL": sandbox.apify_url,
        "APIFY_MAX_CONCURRENT_RUNS": str(APIFY_RUNS),
        "LEADKIT_STALE_AFTER_S": str(TTL_S),
    }
    proc = subprocess.Popen(
        [LEADKIT, "batch", "--concurrency", str(CONCURRENCY)],
        env=env,
        cwd=ws.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # a second process sweeps every second, as `leadkit sweep` from cron would
    sweeper = Workspace.open(ws.home, settings=get_settings(leadkit_home=ws.home, leadkit_stale_after_s=TTL_S))
    seen_stale: list[str] = []
    most_running = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            report = sweep_streams(sweeper, [1])
            seen_stale += [r.client_run_id for r in report.swept]
            records = ws.store.list_client_runs()
            most_running = max(most_running, sum(r.status is ClientRunStatus.RUNNING for r in records))
            if sum(r.status is ClientRunStatus.COMPLETED for r in records) >= KILL_AFTER:
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"the batch did not complete {KILL_AFTER} clients in 120 s")
        assert seen_stale == [], "a client of a live batch was marked Stale"
        assert report.held and "held by" in report.held[0]  # the sweep could not take the live batch's lease
        assert most_running <= CONCURRENCY, "clients waiting for a slot were Running"
        assert len(ws.store.list_client_runs()) < CLIENTS  # the queue was not opened ahead

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        (run,) = ws.store.list_runs()
        while time.monotonic() - killed_at < TTL_S + 5:
            sweep_streams(sweeper, [1])
            records = ws.store.list_client_runs(run_id=run.run_id)
            if not any(r.status is ClientRunStatus.RUNNING for r in records):
                break
            time.sleep(1.0)
        # in flight when the batch died: swept Stale, or ended Failed by its own kernel, which its parent's death
        # SIGTERMs (PR_SET_PDEATHSIG) while it is in a stage; which of the two depends on where the kernel was
        stale = [r for r in records if r.status is ClientRunStatus.STALE]
        interrupted = [r for r in records if r.status is ClientRunStatus.FAILED and "interrupted" in (r.reason or "")]
        assert not any(r.status is ClientRunStatus.RUNNING for r in records), "not swept within the TTL"
        assert stale or interrupted, [(r.client_id, r.status.value, r.reason) for r in records]
        assert all(r.status.done or r in stale or r in interrupted for r in records), [
            (r.client_id, r.status.value, r.reason) for r in records
        ]
        failed = ws.store.get_run(run.run_id)
        assert failed is not None and failed.status is RunStatus.FAILED
        assert "stopped without finishing it" in failed.notes and f"--resume {run.run_id}" in failed.notes
        done_before = {r.client_id for r in records if r.status is ClientRunStatus.COMPLETED}
        runs_before = runs_by_client(sandbox.apify.started_inputs())
    finally:
        if proc.poll() is None:
            proc.kill()
        sweeper.close()
    assert batch_env.leftovers() == [], "kernels of the killed batch are still running"
    assert sandbox.apify.peak_runs <= APIFY_RUNS

    resumed = subprocess.run(
        [LEADKIT, "batch", "--resume", run.run_id, "--concurrency", "8", "--json"],
        env=env,
        cwd=ws.home,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode in (0, 1), resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["run_id"] == run.run_id
    records = ws.store.list_client_runs(run_id=run.run_id)
    assert sorted(r.client_id for r in records) == sorted(ids)  # one record per client
    assert all(r.status.done for r in records), [(r.client_id, r.status.value, r.reason) for r in records]
    assert sum(r.status is ClientRunStatus.COMPLETED for r in records) >= CLIENTS - len(stale) - len(interrupted)
    events = ws.store.list_events(run_id=run.run_id)
    for client_id in done_before:  # a client completed before the kill is not run again
        started = [e for e in events if e.client_id == client_id and e.stage == "harvest" and e.kind.value == "started"]
        assert len(started) == 1, f"{client_id} harvested {len(started)} times"
    after = runs_by_client(sandbox.apify.started_inputs())
    assert all(after[c.lower()] == runs_before[c.lower()] == 1 for c in done_before)  # what the sandbox did
    assert set(after) == {c.lower() for c in ids}  # and every client was harvested
    assert sandbox.apify.peak_runs <= APIFY_RUNS, "the batch had more Apify runs in flight than its limit"
