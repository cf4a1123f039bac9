"""Writes that know what happened, on a sandbox as concurrent as Airtable: racing opens and lease claims, and
creates whose answer was lost after the sandbox acted (502 or a dropped connection). Every verdict is checked
against the records the sandbox holds, not against what the client returned."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadkit.models import ClientRun, ClientRunStatus, Lease, Run, Source
from leadkit.records import RunRecordService
from leadkit.store.airtable import AirtableStore
from leadkit.store.airtable.api import claim
from leadkit.store.schema import MASTER_TABLES, ClientRunResults, JobTracking, Leases
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

RUN = "261207-101500"
LEASE = "batch-stream-1"


def new_store(sandbox: Sandbox, base_id: str | None = None) -> AirtableStore:
    if base_id is None:
        base_id = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    return AirtableStore(base_id, airtable_settings(sandbox))


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads at once; their results in order (an exception is re-raised)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def lease(host: str, pid: int, *, beat_s: float = 0.0) -> Lease:
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    return Lease(LEASE, host, pid, RUN, now, now + timedelta(seconds=beat_s), 120.0, 1000.0 + pid)


@pytest.fixture(autouse=True)
def _no_faults_left(sandbox: Sandbox) -> Any:
    yield
    sandbox.clear_faults()


# ------------------------------------------------------------------------------------------- concurrency


def test_the_sandbox_lets_two_upserts_on_one_key_both_create_and_then_refuses_an_upsert(sandbox: Sandbox) -> None:
    """Airtable gives no atomicity across requests: two upserts that read the table before either wrote both
    create. An upsert matching the two then fails with Airtable's 422."""
    store = new_store(sandbox)
    table = store._table(JobTracking.TABLE)
    sandbox.airtable.hold_writes(2)
    results = race(*[lambda: claim(table, {JobTracking.RUN_ID: RUN}, [JobTracking.RUN_ID])] * 2)
    assert [created for _, created in results] == [True, True]  # a key-only upsert is no guard
    assert len(sandbox.airtable.records(store.base_id, JobTracking.TABLE)) == 2
    with pytest.raises(Exception, match="422|2 records match"):
        table.batch_upsert([{"fields": {JobTracking.RUN_ID: RUN}}], key_fields=[JobTracking.RUN_ID])


def test_two_racing_opens_of_one_client_run_make_one_record_and_one_creator(sandbox: Sandbox) -> None:
    store_a, base_id = new_store(sandbox), None
    base_id = store_a.base_id
    store_b = new_store(sandbox, base_id)
    sandbox.airtable.hold_writes(2)  # both creates are planned before either lands: duplicates on the base
    opened = race(
        *[
            lambda s=s: s.open_client_runs([ClientRun(run_id=RUN, client_id="Acme-Co", source=Source.BATCH)])
            for s in (store_a, store_b)
        ]
    )
    records = sandbox.airtable.records(base_id, ClientRunResults.TABLE)
    assert len(records) == 1  # the later duplicate was removed by its writer
    assert sorted(created for ((_, created),) in opened) == [False, True]
    assert {rec.record_id for ((rec, _),) in opened} == {records[0]["id"]}


def test_two_racing_lease_claims_give_the_lease_to_one(sandbox: Sandbox) -> None:
    store_a = new_store(sandbox)
    store_b = new_store(sandbox, store_a.base_id)
    a, b = lease("host-a", 11), lease("host-b", 22)
    sandbox.airtable.hold_writes(2)
    won = race(lambda: store_a.swap_lease(LEASE, None, a), lambda: store_b.swap_lease(LEASE, None, b))
    holder = new_store(sandbox, store_a.base_id).get_lease(LEASE)
    assert sum(won) <= 1
    if sum(won) == 1:
        assert holder == (a if won[0] else b)
    else:  # two claims of one millisecond: neither holds it, and nothing is left claimed
        assert holder is None
    generation_1 = [
        r for r in sandbox.airtable.records(store_a.base_id, Leases.TABLE) if r["fields"][Leases.GENERATION] == 1
    ]
    assert len(generation_1) == sum(won)
    # whoever did not win can take it over later only by the rules: the lease is held
    loser = store_b if won[0] else store_a
    if sum(won):
        assert loser.swap_lease(LEASE, None, lease("host-c", 33)) is False


# ------------------------------------------------------------------------------------------- lost answers


@pytest.mark.parametrize("mode", ["bad_gateway_after", "drop_after"])
def test_a_claim_whose_answer_was_lost_holds_the_lease(sandbox: Sandbox, mode: str) -> None:
    store = new_store(sandbox)
    mine = lease("host-a", 11)
    sandbox.add_fault(service="airtable", mode=mode, path="/Leases", body="Lease Key", times=1)
    assert store.swap_lease(LEASE, None, mine) is True
    records = sandbox.airtable.records(store.base_id, Leases.TABLE)
    assert len(records) == 1 and records[0]["fields"][Leases.HOST] == "host-a"
    assert new_store(sandbox, store.base_id).get_lease(LEASE) == mine
    # a second batch is turned away: the lease is held, not blocked by a half-made claim
    assert new_store(sandbox, store.base_id).swap_lease(LEASE, None, lease("host-b", 22)) is False


def test_a_heartbeat_whose_answer_was_lost_is_not_a_lost_lease(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    mine = lease("host-a", 11)
    assert store.swap_lease(LEASE, None, mine)
    beat = lease("host-a", 11, beat_s=40)
    sandbox.add_fault(service="airtable", mode="bad_gateway_after", path="/Leases", body="Lease Key", times=1)
    assert store.swap_lease(LEASE, mine, beat) is True
    assert new_store(sandbox, store.base_id).get_lease(LEASE) == beat
    # the next beat goes on from there
    assert store.swap_lease(LEASE, beat, lease("host-a", 11, beat_s=80)) is True


def test_a_heartbeat_that_cannot_be_resolved_is_an_error_and_the_next_beat_goes_on(sandbox: Sandbox) -> None:
    """The beat's create landed but both its answer and every read back were lost: the swap raises (the batch
    retries next beat), and the next beat accepts the heartbeat that did land."""
    store = new_store(sandbox)
    mine = lease("host-a", 11)
    assert store.swap_lease(LEASE, None, mine)
    beat = lease("host-a", 11, beat_s=40)
    sandbox.add_fault(service="airtable", mode="bad_gateway_after", path="/Leases", body="Lease Key", times=1)
    sandbox.add_fault(service="airtable", mode="server_500", path="/Leases", times=12)  # reads, with retries
    with pytest.raises(Exception, match="Airtable"):
        store.swap_lease(LEASE, mine, beat)
    sandbox.clear_faults()
    assert store.swap_lease(LEASE, mine, lease("host-a", 11, beat_s=80)) is True


def test_a_holder_taken_over_never_claims_again_no_aba(sandbox: Sandbox) -> None:
    a_store = new_store(sandbox)
    b_store = new_store(sandbox, a_store.base_id)
    c_store = new_store(sandbox, a_store.base_id)
    a, b, c = lease("host-a", 11), lease("host-b", 22), lease("host-c", 33)
    assert a_store.swap_lease(LEASE, None, a)
    assert b_store.swap_lease(LEASE, a, b)  # b takes over (a's heartbeat went stale)
    assert b_store.swap_lease(LEASE, b, None)  # and releases, removing the generations it wrote
    late_beat = lease("host-a", 11, beat_s=40)
    assert a_store.swap_lease(LEASE, a, late_beat) is False  # a was taken over: its late beat does not re-claim
    assert c_store.swap_lease(LEASE, None, c) is True
    assert new_store(sandbox, a_store.base_id).get_lease(LEASE) == c
    assert a_store.swap_lease(LEASE, a, late_beat) is False
    generations = sorted(r["fields"][Leases.GENERATION] for r in sandbox.airtable.records(a_store.base_id, "Leases"))
    assert generations == sorted(set(generations))  # no generation has two records left


@pytest.mark.parametrize("mode", ["bad_gateway_after", "drop_after"])
def test_a_run_whose_insert_answer_was_lost_is_the_batchs_own(sandbox: Sandbox, mode: str) -> None:
    store = new_store(sandbox)
    sandbox.add_fault(service="airtable", mode=mode, path="Job(%20| )Tracking", body="Run ID", times=1)
    run = RunRecordService(store).start_run(stream=2)
    records = sandbox.airtable.records(store.base_id, JobTracking.TABLE)
    assert [r["fields"][JobTracking.RUN_ID] for r in records] == [run.run_id]
    stored = records[0]["fields"]
    assert stored[JobTracking.STATUS] == "Running" and stored[JobTracking.STREAM] == 2
    assert stored[JobTracking.STARTED_BY] == run.started_by


def test_a_run_id_taken_at_the_same_time_goes_to_one_batch(sandbox: Sandbox) -> None:
    store_a = new_store(sandbox)
    store_b = new_store(sandbox, store_a.base_id)
    now = datetime.now(UTC)
    runs = [Run(RUN, started_at=now, started_by="host-a:1"), Run(RUN, started_at=now, started_by="host-b:2")]
    sandbox.airtable.hold_writes(2)
    inserted = race(lambda: store_a.insert_run(runs[0]), lambda: store_b.insert_run(runs[1]))
    assert sum(inserted) <= 1
    assert len(sandbox.airtable.records(store_a.base_id, JobTracking.TABLE)) == sum(inserted)


def test_a_client_run_open_whose_answer_was_lost_is_created_once_and_filled(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    sandbox.add_fault(service="airtable", mode="bad_gateway_after", body='"Client ID"', times=1)
    records = [ClientRun(run_id=RUN, client_id=c, source=Source.RECOVERY) for c in ("Acme-Co", "Globex")]
    opened = store.open_client_runs(records)
    assert [created for _, created in opened] == [True, True]
    stored = sandbox.airtable.records(store.base_id, ClientRunResults.TABLE)
    assert sorted(r["fields"][ClientRunResults.CLIENT_ID] for r in stored) == ["Acme-Co", "Globex"]
    for r in stored:  # filled in, not a bare key that reads Running with no source or start
        assert r["fields"][ClientRunResults.SOURCE] == Source.RECOVERY.value
        assert r["fields"][ClientRunResults.STATUS] == ClientRunStatus.RUNNING.value
        assert ClientRunResults.START_TIME in r["fields"]
    again = store.open_client_runs(records)
    assert [created for _, created in again] == [False, False]
    assert len(sandbox.airtable.records(store.base_id, ClientRunResults.TABLE)) == 2


def test_a_batchs_heartbeat_through_a_lost_answer_keeps_the_lease(sandbox: Sandbox) -> None:
    """The heartbeat thread of a real BatchLease on the Airtable store: one beat's answer is lost after the
    sandbox acted; the batch does not think it lost the lease, and the lease stays its own."""
    from types import SimpleNamespace
    from typing import cast

    from leadkit.batch.lease import BatchLease
    from leadkit.workspace import Workspace

    store = new_store(sandbox)
    ws = cast(Workspace, SimpleNamespace(store=store))
    batch = BatchLease(ws, 1, ttl_s=1.5)  # a beat every 0.5 s
    batch.acquire(RUN)
    try:
        sandbox.add_fault(service="airtable", mode="bad_gateway_after", path="/Leases", body="Lease Key", times=1)
        deadline = threading.Event()
        for _ in range(40):  # until the fault was used and two more beats went out
            if not sandbox.state.faults.rules():
                break
            deadline.wait(0.1)
        assert not sandbox.state.faults.rules(), "the heartbeat never reached the sandbox"
        beats = len(sandbox.airtable.records(store.base_id, Leases.TABLE))
        for _ in range(60):
            if len(sandbox.airtable.records(store.base_id, Leases.TABLE)) >= beats + 2:
                break
            deadline.wait(0.1)
        assert batch.lost is None and batch.current is not None
        holder = new_store(sandbox, store.base_id).get_lease(LEASE)
        assert holder is not None and (holder.host, holder.pid) == (batch.current.host, batch.current.pid)
    finally:
        batch.release()
    assert new_store(sandbox, store.base_id).get_lease(LEASE) is None


def test_a_run_whose_id_cannot_be_read_back_is_gone_not_left_running(sandbox: Sandbox) -> None:
    store = new_store(sandbox)
    sandbox.add_fault(service="airtable", mode="server_500", path=r"Job(%20| )Tracking\?", times=-1)  # reads only
    with pytest.raises(Exception, match="Airtable"):
        store.insert_run(Run(RUN, started_by="host-a:1"))
    sandbox.clear_faults()
    assert sandbox.airtable.records(store.base_id, JobTracking.TABLE) == []
    assert sandbox.state.stats.count(base=store.base_id, method="POST", path="Job Tracking") == 1
