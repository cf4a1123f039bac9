"""Crash safety: `kill -9` of the batch at five points leaves nothing of it running; `--resume RUN_ID` then
runs exactly the clients that had not completed, and no (run, client) ever has two ClientRuns."""

from __future__ import annotations

import json
import signal

import pytest

from leadkit.batch import CRASH_ENV, CRASH_POINTS
from leadkit.models import ClientRunStatus, EventKind

from .conftest import Env

CLIENTS = ["Acme-Co", "Globex", "Initech", "Hooli", "Soylent"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_then_resume_completes_exactly_the_missing_clients(batch_env: Env, point: str) -> None:
    ws = batch_env.ws
    args = ["batch", "--stages", "eligibility", "--workers", "2", "--clients", ",".join(CLIENTS)]
    crashed = batch_env.cli(*args, extra={CRASH_ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert batch_env.leftovers() == [], "processes of the killed batch are still running"

    runs = ws.store.list_runs()
    if point == "lease":
        assert runs == []  # killed before minting a run: the next batch starts afresh (and takes the lease over)
        again = batch_env.cli(*args, "--json")
        assert again.returncode == 0, again.stderr
        events = ws.store.list_events(run_id=json.loads(again.stdout)["run_id"])
        assert any(e.stage == "lease" and "no longer exists" in e.message for e in events)
        return
    assert len(runs) == 1
    run_id = runs[0].run_id
    before = {r.client_id: r.status for r in ws.store.list_client_runs(run_id=run_id)}
    not_done = [c for c in CLIENTS if c not in before or not before[c].done]
    if point in ("notebook", "finish"):
        assert any(s.done for s in before.values()), "the crash came after some notebooks completed"
    if point == "finish":
        assert not_done == []

    resumed = batch_env.cli("batch", "--resume", run_id, "--stages", "eligibility", "--json")
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["run_id"] == run_id and data["status"] == "Completed"
    assert sorted(c["client_id"] for c in data["clients"]) == sorted(CLIENTS)
    assert batch_env.leftovers(wait_s=2) == []

    records = ws.store.list_client_runs(run_id=run_id)
    assert sorted(r.client_id for r in records) == sorted(CLIENTS)  # one record per client, no duplicate
    assert all(r.status in (ClientRunStatus.COMPLETED, ClientRunStatus.SKIPPED) for r in records)
    events = ws.store.list_events(run_id=run_id)
    for client_id in CLIENTS:
        ran = [
            e for e in events if e.client_id == client_id and e.stage == "eligibility" and e.kind is EventKind.STARTED
        ]
        assert len(ran) == 1, f"{client_id} ran {len(ran)} times"
    resumed_now = {e.client_id for e in events if e.message.startswith("resumed") or e.kind is EventKind.OPENED}
    assert set(not_done) <= resumed_now
    takeover = [e for e in events if e.stage == "lease"]
    assert takeover and "no longer exists" in takeover[-1].message
