"""The batch lease: one batch per stream; a second start exits 3 naming the holder and records no Run; a dead
holder on this host is taken over at once, one from another host once its heartbeat is past its TTL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest

from leadkit.batch import BatchLease, lease_name, run_batch
from leadkit.errors import LeaseHeld
from leadkit.models import Lease, utcnow

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
