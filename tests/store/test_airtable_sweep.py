"""A swept ClientRun on Airtable keeps SWEPT, and the sweep compares before it writes (counted on the sandbox)."""

from __future__ import annotations

from datetime import timedelta

from leadkit.models import ClientRun, ClientRunStatus, EventKind, RunEvent, Source
from leadkit.records import RunRecordService
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import MASTER_TABLES, ClientRunResults
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec

RUN = "261207-110000"


def two_stores(sandbox: Sandbox) -> tuple[AirtableStore, AirtableStore]:
    base_id = sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES))
    kernel = AirtableStore(base_id, airtable_settings(sandbox, airtable_progress_save_s=0))
    return kernel, AirtableStore(base_id, airtable_settings(sandbox))


def progress(record: ClientRun, message: str) -> RunEvent:
    return RunEvent(record.run_id, record.client_id, "harvest", EventKind.INFO, message)


def test_a_kernels_later_save_does_not_erase_swept(sandbox: Sandbox) -> None:
    kernel, sweeper = two_stores(sandbox)
    ((record, _),) = kernel.open_client_runs([ClientRun(run_id=RUN, client_id="Acme-Co", source=Source.BATCH)])
    swept = RunRecordService(sweeper).sweep(older_than=timedelta(0))
    assert [r.client_id for r in swept] == ["Acme-Co"]
    # the kernel (paused past the TTL, then back) saves from what it knew: its events cache lacks SWEPT
    kernel.save_client_run(record, [progress(record, "batch 2 of 3 done")])
    for store in (sweeper, kernel):
        kinds = [e.kind for e in store.list_events(run_id=RUN, client_id="Acme-Co")]
        assert EventKind.SWEPT in kinds and kinds.count(EventKind.SWEPT) == 1
        assert [e.message for e in store.list_events(run_id=RUN) if e.kind is EventKind.INFO] == ["batch 2 of 3 done"]


def test_the_sweep_compares_before_it_writes(sandbox: Sandbox) -> None:
    kernel, sweeper = two_stores(sandbox)
    ((record, _),) = kernel.open_client_runs([ClientRun(run_id=RUN, client_id="Acme-Co", source=Source.BATCH)])
    stale = sweeper.list_client_runs(status=ClientRunStatus.RUNNING.value)
    # the kernel beats after the sweep read the record, before it writes
    assert kernel.touch_client_run(record, record.heartbeat_at + timedelta(seconds=30))
    service = RunRecordService(sweeper)
    service.store = _Frozen(sweeper, stale)  # the sweep acts on what it read before the beat
    service.sweep(older_than=timedelta(0))
    fields = sandbox.airtable.records(sweeper.base_id, ClientRunResults.TABLE)[0]["fields"]
    assert fields[ClientRunResults.STATUS] == ClientRunStatus.RUNNING.value  # not swept: it was alive
    assert all(e.kind is not EventKind.SWEPT for e in sweeper.list_events(run_id=RUN))


class _Frozen:
    """The store as the sweep saw it at its read: the Running list it read, the rest as it is."""

    def __init__(self, store: AirtableStore, running: list[ClientRun]) -> None:
        self._store, self._running = store, running

    def list_client_runs(self, **_: object) -> list[ClientRun]:
        return self._running

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)
