"""The batch lease: one batch per stream; a second start exits 3 naming the holder and records no Run; a dead
holder on this host is taken over at once, one from another host once its heartbeat is past its TTL."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from leadkit.batch import BatchLease, BatchResult, lease_name, run_batch
from leadkit.batch.lease import process_started
from leadkit.errors import LeaseHeld
from leadkit.models import Lease, RunStatus, utcnow

from .conftest import Env


def hold(env: Env, *, host: str, pid: int, age_s: float = 0.0, ttl_s: float = 120.0, stream: int = 1) -> Lease:
    at = utcnow() - timedelta(seconds=age_s)
    lease = Lease(lease_name(stream), host, pid, "261128-090000", at, at, ttl_s)
    assert env.ws.store.swap_lease(lease.name, None, lease)
    return lease


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_start_exits_3_names_the_holder_and_records_no_run(batch_env: Env) -> None:
    held = hold(batch_env, host=socket.gethostname(), pid=os.getpid())
    out = batch_env.cli("batch", "--stages", "eligibility")
    assert out.returncode == 3, out.stderr
    assert (
        f"held by {held.host} process {held.pid} since {held.acquired_at.isoformat(timespec='seconds')}" in out.stderr
    )
    assert batch_env.ws.store.list_runs() == []
    assert batch_env.ws.store.get_lease(held.name) == held  # the holder keeps it


def test_a_fresh_lease_from_another_host_is_respected(batch_env: Env) -> None:
    hold(batch_env, host="worker-b.example", pid=4242, age_s=30, ttl_s=120)
    with pytest.raises(LeaseHeld, match="worker-b.example process 4242"):
        BatchLease(batch_env.ws, 1).acquire()


def test_another_stream_is_not_blocked(batch_env: Env) -> None:
    hold(batch_env, host=socket.gethostname(), pid=os.getpid(), stream=2)
    lease = BatchLease(batch_env.ws, 1)
    lease.acquire()
    assert lease.current is not None and lease.takeover_note is None
    lease.release()
    assert batch_env.ws.store.get_lease(lease_name(1)) is None


def test_a_stale_lease_from_another_host_is_taken_over(batch_env: Env) -> None:
    hold(batch_env, host="worker-b.example", pid=4242, age_s=600, ttl_s=120)
    lease = BatchLease(batch_env.ws, 1)
    lease.acquire()
    assert lease.takeover_note is not None
    assert "worker-b.example process 4242" in lease.takeover_note and "past its TTL of 120 s" in lease.takeover_note
    current = batch_env.ws.store.get_lease(lease_name(1))
    assert current is not None and current.pid == os.getpid()
    lease.release()


def test_a_dead_holder_on_this_host_is_taken_over_at_once_with_an_event(batch_env: Env) -> None:
    pid = dead_pid()
    hold(batch_env, host=socket.gethostname(), pid=pid, age_s=0)  # fresh heartbeat, but its process is gone
    result = run_batch(batch_env.ws, client_ids=["Hooli"], stages=["eligibility"], progress=False, workers=1)
    assert result.exit_code == 0
    assert result.takeover_note is not None and f"process {pid}" in result.takeover_note
    events = batch_env.ws.store.list_events(run_id=result.run.run_id)
    assert any(e.stage == "lease" and "no longer exists" in e.message for e in events)
    assert batch_env.ws.store.get_lease(lease_name(1)) is None  # released at the end


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_reused_pid_is_not_the_holder_and_is_taken_over_with_a_note(batch_env: Env) -> None:
    """A container restart reuses low PIDs: the lease names a live process that is not the batch that took it."""
    other = sleeper()
    try:
        real = process_started(other.pid)
        assert real
        lease = hold(batch_env, host=socket.gethostname(), pid=other.pid, age_s=10)
        # the holder started an hour before the process that now has its PID
        assert batch_env.ws.store.swap_lease(lease.name, lease, replace(lease, process_started=real - 3600))
        taker = BatchLease(batch_env.ws, 1)
        taker.acquire()
        assert taker.takeover_note is not None and f"PID {other.pid} is now another process" in taker.takeover_note
        taker.release()
        assert other.poll() is None  # the unrelated process is left alone
    finally:
        other.kill()
        other.wait()


def test_a_live_holder_with_an_old_heartbeat_on_this_host_is_taken_over(batch_env: Env) -> None:
    other = sleeper()
    try:
        lease = hold(batch_env, host=socket.gethostname(), pid=other.pid, age_s=600, ttl_s=120)
        assert batch_env.ws.store.swap_lease(
            lease.name, lease, replace(lease, process_started=process_started(other.pid))
        )
        taker = BatchLease(batch_env.ws, 1)
        taker.acquire()
        assert taker.takeover_note is not None and "past its TTL of 120 s" in taker.takeover_note
        taker.release()
    finally:
        other.kill()
        other.wait()


def test_a_live_fresh_holder_is_respected_and_named(batch_env: Env) -> None:
    other = sleeper()
    try:
        lease = hold(batch_env, host=socket.gethostname(), pid=other.pid, age_s=5)
        mine = replace(lease, process_started=process_started(other.pid))
        assert batch_env.ws.store.swap_lease(lease.name, lease, mine)
        out = batch_env.cli("batch", "--stages", "eligibility")
        assert out.returncode == 3, out.stderr
        assert f"process {other.pid}" in out.stderr and re.search(r"heartbeat \d+ s ago \(TTL 120 s\)", out.stderr)
        assert batch_env.ws.store.list_runs() == [] and batch_env.ws.store.get_lease(lease.name) == mine
    finally:
        other.kill()
        other.wait()


def test_a_lost_lease_stops_new_clients_records_the_loss_and_exits_3(
    batch_env: Env, notebook_factory: Callable[[str], Path]
) -> None:
    ws = batch_env.ws
    slow = notebook_factory("import time\ntime.sleep(1.5)")
    clients = ["Acme-Co", "Globex", "Initech", "Hooli", "Soylent"]
    box: dict[str, object] = {}

    def go() -> None:
        box["result"] = run_batch(
            ws,
            client_ids=clients,
            stages=["eligibility"],
            notebook=slow,
            concurrency=1,
            progress=False,
            lease_ttl_s=1.5,
        )

    thread = threading.Thread(target=go)
    thread.start()
    name = lease_name(1)
    deadline = time.monotonic() + 60
    while not ws.store.list_client_runs() and time.monotonic() < deadline:
        time.sleep(0.1)
    held = ws.store.get_lease(name)
    assert held is not None and held.pid == os.getpid()
    now = utcnow()
    thief = Lease(name, "worker-b.example", 4242, "", now, now, 600.0)
    assert ws.store.swap_lease(name, held, thief) or ws.store.swap_lease(name, ws.store.get_lease(name), thief)
    thread.join(timeout=120)
    result = box["result"]
    assert isinstance(result, BatchResult)
    assert result.exit_code == 3 and result.lost_lease and "worker-b.example process 4242" in result.lost_lease
    started = {r.client_id for r in result.records}
    assert 1 <= len(started) < len(clients)  # the running client finished, no further one was started
    assert all(r.status.done for r in result.records)
    assert result.run.status is RunStatus.FAILED and "lost the lease" in result.run.notes
    events = ws.store.list_events(run_id=result.run.run_id)
    assert any(e.stage == "lease" and "started no further client" in e.message for e in events)
    assert ws.store.get_lease(name) == thief  # the new holder keeps it


def test_a_stream_2_client_runs_while_a_stream_1_batch_holds_its_lease(batch_env: Env) -> None:
    ws = batch_env.ws
    globex = ws.store.get_client("Globex")
    ws.store.save_client(replace(globex, stream=2))
    hold(batch_env, host=socket.gethostname(), pid=os.getpid(), age_s=1)  # a live stream-1 batch: this process
    two = batch_env.cli("run", "Globex", "--dry-run", "--json")
    assert two.returncode == 0, two.stderr
    run = ws.store.get_run(json.loads(two.stdout)["run_id"])
    assert run is not None and run.stream == 2
    one = batch_env.cli("run", "Acme-Co", "--dry-run")
    assert one.returncode == 3 and "stream 1" in one.stderr
    mixed = batch_env.cli("batch", "--clients", "Globex,Acme-Co", "--dry-run")
    assert mixed.returncode == 3 and "stream 1" in mixed.stderr
    assert ws.store.get_lease(lease_name(2)) is None  # taken in order, released when stream 1 refused


def test_an_empty_selection_exits_2_naming_what_was_asked_and_records_no_run(batch_env: Env) -> None:
    out = batch_env.cli("batch", "--stream", "9", "--stages", "eligibility")
    assert out.returncode == 2, out.stderr
    assert "stream 9" in out.stderr and "streams 1" in out.stderr
    assert batch_env.ws.store.list_runs() == []
    assert batch_env.ws.store.get_lease(lease_name(9)) is None


def test_the_run_id_goes_out_with_the_next_heartbeat_not_a_write_of_its_own(batch_env: Env) -> None:
    lease = BatchLease(batch_env.ws, 1, ttl_s=1.5)  # beats every 0.5 s
    lease.acquire()
    try:
        written = batch_env.ws.store.get_lease(lease_name(1))
        assert written is not None and written.run_id == ""
        lease.set_run("261204-050000")
        assert batch_env.ws.store.get_lease(lease_name(1)) == written  # no write of its own
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = batch_env.ws.store.get_lease(lease_name(1))
            if now is not None and now.run_id:
                break
            time.sleep(0.05)
        assert now is not None and now.run_id == "261204-050000"
        assert now.heartbeat_at > written.heartbeat_at and lease.lost is None
    finally:
        lease.release()


def _long_hold(env: Env, *, held_h: float, stream: int = 1) -> Lease:
    now = utcnow()
    lease = Lease(
        lease_name(stream), "worker-b.example", 4242, "261207-070000", now - timedelta(hours=held_h), now, 120
    )
    assert env.ws.store.swap_lease(lease.name, None, lease)
    return lease


def _lease_alerts(env: Env) -> list[object]:
    from leadkit.alerts import records_of

    return list(records_of(env.ws.store).list_alerts(kind="lease_held"))


def test_a_batch_turned_away_names_the_holder_its_heartbeat_and_how_long(batch_env: Env) -> None:
    held = _long_hold(batch_env, held_h=1)
    out = batch_env.cli("batch", "--stages", "eligibility")
    assert out.returncode == 3, out.stderr
    assert f"held by worker-b.example process 4242 since {held.acquired_at.isoformat(timespec='seconds')}" in out.stderr
    assert "(run 261207-070000)" in out.stderr and re.search(r"heartbeat \d+ s ago \(TTL 120 s\)", out.stderr)
    assert "turned away for up to 1h" in out.stderr
    assert _lease_alerts(batch_env) == []  # within the threshold: exit 3, no alert


def test_a_stream_held_past_the_threshold_alerts_once_and_exits_2(batch_env: Env) -> None:
    _long_hold(batch_env, held_h=3)
    out = batch_env.cli("batch", "--stages", "eligibility")
    assert out.returncode == 2, out.stderr
    assert "LEADKIT_LEASE_HELD_ALERT_AFTER=2h" in out.stderr and "worker-b.example process 4242" in out.stderr
    assert len(_lease_alerts(batch_env)) == 1
    again = batch_env.cli("batch", "--stages", "eligibility")
    assert again.returncode == 2
    assert len(_lease_alerts(batch_env)) == 1  # one alert per problem per window, not one per turned-away batch
    assert batch_env.ws.store.list_runs() == []
    # the threshold is a setting
    later = batch_env.cli("batch", "--stages", "eligibility", extra={"LEADKIT_LEASE_HELD_ALERT_AFTER": "4h"})
    assert later.returncode == 3, later.stderr
