"""Run records: the single creation point, idempotent open, additive events, recovery, the stale sweep."""

from __future__ import annotations

import dataclasses
import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest

from leadkit.errors import DataError
from leadkit.models import ClientRun, ClientRunStatus, EventKind, Run, RunEvent, RunStatus, Source, utcnow
from leadkit.records import RunRecordService, run_status
from leadkit.runids import RunId
from leadkit.store.sqlite import SQLiteStore
from leadkit.workspace import Workspace


def _open_many_times(home: str, run_id: str, start: multiprocessing.synchronize.Event) -> list[str]:  # type: ignore[name-defined]
    store = SQLiteStore(Path(home))
    service = RunRecordService(store)
    start.wait()
    ids = [service.open(RunId.parse(run_id), "Acme-Co", Source.BATCH).record_id or "" for _ in range(25)]
    store.close()
    return ids


def test_four_processes_opening_25_times_get_one_record(workspace: Workspace) -> None:
    run = workspace.records.start_run()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(4) as pool:
        results = [pool.apply_async(_open_many_times, (str(workspace.home), run.run_id, start)) for _ in range(4)]
        start.set()
        ids = [i for r in results for i in r.get(timeout=120)]
    assert len(ids) == 100
    assert len(set(ids)) == 1
    records = workspace.store.list_client_runs(run_id=run.run_id)
    assert len(records) == 1
    events = workspace.store.list_events(run_id=run.run_id, client_id="Acme-Co")
    assert sum(e.kind is EventKind.OPENED for e in events) == 1
    assert sum(e.kind is EventKind.REOPENED for e in events) == 99


def test_open_rejects_unknown_source_and_string_run_ids(workspace: Workspace) -> None:
    run_id = RunId.parse(workspace.records.start_run().run_id)
    with pytest.raises(DataError, match="batch, notebook, recovery"):
        workspace.records.open(run_id, "Acme-Co", "airtable_service_recovery")
    with pytest.raises(DataError, match="RunId"):
        workspace.records.open(str(run_id), "Acme-Co", Source.BATCH)  # type: ignore[arg-type]
    assert workspace.store.list_client_runs(run_id=run_id.base) == []


def test_metrics_are_sums_of_events(workspace: Workspace) -> None:
    run_id = RunId.parse(workspace.records.start_run().run_id)
    record = workspace.records.open(run_id, "Acme-Co", Source.NOTEBOOK)

    def ev(posts: float) -> RunEvent:
        return RunEvent(run_id.base, "Acme-Co", "harvest", EventKind.COMPLETED, metrics={"posts_harvested": posts})

    workspace.records.update(record, [ev(3), ev(4)])
    workspace.records.update(record, [ev(5)], status=ClientRunStatus.COMPLETED)
    stored = workspace.store.get_client_run(run_id.base, "Acme-Co")
    assert stored is not None
    assert stored.metrics == {"posts_harvested": 12}
    assert stored.status is ClientRunStatus.COMPLETED and stored.ended_at is not None
    harvested = [e for e in workspace.store.list_events(run_id=run_id.base) if e.stage == "harvest"]
    assert sum(e.metrics["posts_harvested"] for e in harvested) == stored.metrics["posts_harvested"]


def test_attach_recovers_a_missing_record_and_says_so(workspace: Workspace) -> None:
    run_id = RunId.parse(workspace.records.start_run().run_id)
    record = workspace.records.attach(run_id, "Globex")
    assert record.source is Source.RECOVERY
    again = workspace.records.attach(run_id, "Globex")
    assert again.record_id == record.record_id
    kinds = [e.kind for e in workspace.store.list_events(run_id=run_id.base, client_id="Globex")]
    assert kinds == [EventKind.RECOVERED]


def test_sweep_marks_only_old_running_records_stale(workspace: Workspace) -> None:
    clock = [utcnow() - timedelta(hours=1)]
    old = RunRecordService(workspace.store, stale_after_s=900, now=lambda: clock[0])
    run_id = RunId.parse(old.start_run().run_id)
    stale, done = old.open_many(run_id, ["Acme-Co", "Globex"], Source.BATCH)
    old.update(done, status=ClientRunStatus.COMPLETED)
    fresh_id = RunId.parse(workspace.records.start_run().run_id)
    workspace.records.open(fresh_id, "Initech", Source.BATCH)
    swept = workspace.records.sweep()
    assert [r.client_id for r in swept] == ["Acme-Co"]
    record = workspace.store.get_client_run(run_id.base, "Acme-Co")
    assert record is not None and record.status is ClientRunStatus.STALE
    assert record.reason is not None and "no heartbeat" in record.reason
    assert workspace.store.get_client_run(fresh_id.base, "Initech").status is ClientRunStatus.RUNNING  # type: ignore[union-attr]


def test_two_runs_minted_in_the_same_second_do_not_share_an_id(workspace: Workspace) -> None:
    moment = utcnow()
    service = RunRecordService(workspace.store, now=lambda: moment)
    first, second = service.start_run(), service.start_run()
    assert first.run_id != second.run_id
    assert RunId.parse(second.run_id) == RunId.parse(first.run_id).next_second()


def test_finish_run_statuses(workspace: Workspace) -> None:
    assert run_status([ClientRunStatus.COMPLETED, ClientRunStatus.SKIPPED]) is RunStatus.COMPLETED
    assert run_status([ClientRunStatus.COMPLETED, ClientRunStatus.FAILED]) is RunStatus.COMPLETED_WITH_ERRORS
    assert run_status([ClientRunStatus.FAILED, ClientRunStatus.STALE]) is RunStatus.FAILED
    run = workspace.records.start_run()
    a, b = workspace.records.open_many(RunId.parse(run.run_id), ["Acme-Co", "Globex"], Source.BATCH)
    workspace.records.update(a, status=ClientRunStatus.SKIPPED, reason="not due")
    workspace.records.update(b, status=ClientRunStatus.FAILED, reason="boom")
    finished = workspace.records.finish_run(run)
    assert finished.status is RunStatus.COMPLETED_WITH_ERRORS
    assert (finished.clients_total, finished.clients_failed) == (2, 1)
    assert workspace.store.get_run(run.run_id).status is RunStatus.COMPLETED_WITH_ERRORS  # type: ignore[union-attr]


class _ListedEarlier:
    """The workspace's store, except that its list of Running ClientRuns is the one read before `freeze` returned:
    the sweep's read happened, then the world moved on before its write (a real interleaving, made repeatable)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._listed: list[ClientRun] = []

    def freeze(self) -> None:
        self._listed = self._store.list_client_runs(status=ClientRunStatus.RUNNING.value)

    def list_client_runs(self, **kw: object) -> list[ClientRun]:
        return (
            [dataclasses.replace(r) for r in self._listed] if kw.get("status") else self._store.list_client_runs(**kw)
        )  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


def test_the_sweep_compares_before_it_writes(workspace: Workspace) -> None:
    clock = [utcnow() - timedelta(hours=1)]
    old = RunRecordService(workspace.store, stale_after_s=900, now=lambda: clock[0])
    run_id = RunId.parse(old.start_run().run_id)
    alive, finished = old.open_many(run_id, ["Acme-Co", "Globex"], Source.BATCH)
    store = _ListedEarlier(workspace.store)  # type: ignore[arg-type]
    store.freeze()  # both look an hour old to the sweep ...
    assert workspace.store.touch_client_run(alive, utcnow())  # ... then one's kernel beats
    workspace.records.update(finished, status=ClientRunStatus.COMPLETED)  # and the other completes
    swept = RunRecordService(store, stale_after_s=900).sweep()  # type: ignore[arg-type]
    assert swept == []
    assert workspace.store.get_client_run(run_id.base, "Acme-Co").status is ClientRunStatus.RUNNING  # type: ignore[union-attr]
    assert workspace.store.get_client_run(run_id.base, "Globex").status is ClientRunStatus.COMPLETED  # type: ignore[union-attr]


def test_a_gone_batch_s_run_under_another_host_name_is_swept_after_the_ttl(workspace: Workspace) -> None:
    hour_ago = utcnow() - timedelta(hours=1)
    old = Run(run_id="250101-000000", started_at=hour_ago, started_by="leadkit-7f9c6d-x2k4p:4242")
    assert workspace.store.insert_run(old)
    service = RunRecordService(workspace.store, stale_after_s=900, now=lambda: hour_ago)
    (record,) = service.open_many(RunId.parse(old.run_id), ["Acme-Co"], Source.BATCH)
    service.update(record, status=ClientRunStatus.FAILED, reason="killed with its pod")
    recent = Run(run_id="250101-000001", started_at=utcnow(), started_by="leadkit-7f9c6d-x2k4p:4243")
    assert workspace.store.insert_run(recent)  # another host's batch that may well be alive
    failed = workspace.records.sweep_runs({1})
    assert [r.run_id for r in failed] == [old.run_id]
    assert workspace.store.get_run(old.run_id).status is RunStatus.FAILED  # type: ignore[union-attr]
    assert workspace.store.get_run(recent.run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
