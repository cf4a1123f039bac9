"""The store's aggregate and windowed queries, on SQLite and on Airtable (through the sandbox)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from leadkit.models import ClientRunStatus, EventKind, Failure, HarvestStatus, NewLead, RunEvent
from leadkit.store.base import Store
from leadkit.store.schema import MASTER_TABLES
from leadkit_sandbox.server import Sandbox

from .conftest import StoreKit, airtable_settings, tables_spec
from .test_contract import at, client_run


def _finish(store: Store, run_id: str, client_id: str, status: ClientRunStatus, start: float) -> None:
    [(record, _)] = store.open_client_runs([client_run(run_id, client_id, start=start)])
    record.status = status
    store.save_client_run(record)


def test_count_client_runs_over_a_window(store: Store) -> None:
    _finish(store, "250925-201845", "Globex", ClientRunStatus.COMPLETED, 0)
    _finish(store, "250925-201845", "Initech", ClientRunStatus.FAILED, 0)
    _finish(store, "250925-211845", "Globex", ClientRunStatus.COMPLETED, 3600)
    _finish(store, "250925-211845", "Initech", ClientRunStatus.SKIPPED, 3600)
    _finish(store, "250925-221845", "Globex", ClientRunStatus.COMPLETED, 7200)
    store.open_client_runs([client_run("250925-221845", "Initech", start=7200)])  # still Running

    everything = store.count_client_runs()
    assert dict(everything.by_status) == {"Completed": 3, "Failed": 1, "Skipped": 1, "Running": 1}
    assert everything.total == 6 and everything.finished == 4 and everything.success_rate == 0.75
    window = store.count_client_runs(since=at(3600), until=at(7200))
    assert dict(window.by_status) == {"Completed": 1, "Skipped": 1}
    assert window.success_rate == 1.0
    assert dict(store.count_client_runs(since=at(1), client_id="Initech").by_status) == {"Skipped": 1, "Running": 1}
    assert store.count_client_runs(since=at(10_000)).success_rate is None


def test_latest_client_run_of_each_client(store: Store) -> None:
    for i, run_id in enumerate(["250925-201845", "250925-211845", "250925-221845"]):
        _finish(store, run_id, "Globex", ClientRunStatus.COMPLETED if i < 2 else ClientRunStatus.FAILED, i * 3600)
    _finish(store, "250925-201845", "Initech", ClientRunStatus.COMPLETED, 0)
    latest = store.latest_client_runs(["Globex", "Initech", "Hooli"])
    assert set(latest) == {"Globex", "Initech"}
    assert (latest["Globex"].run_id, latest["Globex"].status) == ("250925-221845", ClientRunStatus.FAILED)
    assert latest["Initech"].run_id == "250925-201845"
    assert store.latest_client_runs([]) == {}
    assert set(store.latest_client_runs(["Initech"])) == {"Initech"}


def test_event_totals_by_kind_since(store: Store) -> None:
    store.open_client_runs([client_run("250925-201845", "Globex"), client_run("250925-201845", "Initech")])
    store.add_events(
        [
            RunEvent("250925-201845", "Globex", "records", EventKind.OPENED, metrics={"opens_batch": 1}, at=at(1)),
            RunEvent("250925-201845", "Initech", "records", EventKind.OPENED, metrics={"opens_batch": 2}, at=at(2)),
            RunEvent("250925-201845", "Globex", "records", EventKind.REOPENED, metrics={"opens_notebook": 1}, at=at(3)),
            RunEvent("250925-201845", "", "sweep", EventKind.SWEPT, metrics={"stale_swept": 4}, at=at(4)),
        ]
    )
    totals = store.event_totals()
    assert {k: (t.count, dict(t.metrics)) for k, t in totals.items()} == {
        "opened": (2, {"opens_batch": 3.0}),
        "reopened": (1, {"opens_notebook": 1.0}),
        "swept": (1, {"stale_swept": 4.0}),
    }
    since = store.event_totals(since=at(2))
    assert {k: t.count for k, t in since.items()} == {"opened": 1, "reopened": 1, "swept": 1}
    assert since["opened"].metrics == {"opens_batch": 2.0}


def test_failures_of_one_client(store: Store) -> None:
    for i, client in enumerate(["Globex", "Initech", "Globex", "O'Brien"]):
        store.add_failure(Failure("auth", f"fp{i}", f"refused {i}", "hint", client_id=client, at=at(i)))
    assert [f.fingerprint for f in store.list_failures(client_id="Globex")] == ["fp2", "fp0"]
    assert [f.fingerprint for f in store.list_failures(client_id="Globex", limit=1)] == ["fp2"]
    assert [f.fingerprint for f in store.list_failures(client_id="O'Brien", since=at(1))] == ["fp3"]
    assert store.list_failures(client_id="Hooli") == []


def test_count_leads_by_status(kit: StoreKit) -> None:
    base = kit.store.lead_base(kit.new_client("Globex"))
    base.import_leads([NewLead(f"https://www.linkedin.com/in/p{i}") for i in range(5)])
    leads = base.list_leads()
    base.update_leads(
        {
            leads[0].lead_id: {"harvest_status": HarvestStatus.DONE},
            leads[1].lead_id: {"harvest_status": HarvestStatus.DONE},
            leads[2].lead_id: {"harvest_status": HarvestStatus.NO_POSTS},
        }
    )
    assert base.count_leads_by_status() == {"Done": 2, "No Posts": 1, "": 2}


def test_airtable_events_since_are_filtered_by_the_formula(sandbox: Sandbox) -> None:
    """250 old ClientRuns with events and one new one: `since` must not download the old ones."""
    from leadkit.store.airtable import AirtableStore

    store = AirtableStore(
        sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES)), airtable_settings(sandbox)
    )
    old = [client_run("250925-201845", f"c{i:03d}") for i in range(250)]
    store.open_client_runs(old)
    store.add_events([RunEvent(r.run_id, r.client_id, "harvest", EventKind.STARTED, at=at(1)) for r in old])
    [(fresh, _)] = store.open_client_runs([client_run("250926-201845", "Globex", start=86400)])
    fresh.status = ClientRunStatus.COMPLETED
    store.save_client_run(fresh, [RunEvent(fresh.run_id, "Globex", "harvest", EventKind.COMPLETED, at=at(86401))])
    sandbox.state.stats.reset()
    events = store.list_events(since=at(86400))
    assert [(e.client_id, e.kind) for e in events] == [("Globex", EventKind.COMPLETED)]
    assert sandbox.state.stats.count(path="Client Run Results") == 1  # one page, not the 3 of every record
    assert len(store.list_events()) == 251


def test_sqlite_lead_base_connections_are_bounded(tmp_path: Path) -> None:
    from leadkit.models import Client
    from leadkit.store.sqlite import LEAD_BASE_CONNECTIONS, SQLiteStore

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    store = SQLiteStore(tmp_path)
    store.init()
    before = open_files()
    bases = []
    for i in range(LEAD_BASE_CONNECTIONS * 3):
        base = store.lead_base(store.save_client(Client(client_id=f"c{i:03d}", name=f"c{i}")))
        base.import_leads([NewLead(f"https://www.linkedin.com/in/p{i}")])
        bases.append(base)
    assert store._pool.open_count() <= LEAD_BASE_CONNECTIONS
    assert open_files() - before <= 3 * LEAD_BASE_CONNECTIONS
    # an evicted base opens again when used, with its data
    assert [lead.profile_url for lead in bases[0].list_leads()] == ["https://www.linkedin.com/in/p0"]
    assert bases[1].count_leads_by_status() == {"": 1}
    store.close()
    assert open_files() < before  # the master's files too


def test_airtable_progress_saves_are_coalesced_and_never_lost(sandbox: Sandbox) -> None:
    """A Running save is held a moment: the end of the stage that follows goes out in the same request; a held
    save nobody follows is written by the timer; a read writes it first."""
    from leadkit.store.airtable import AirtableStore

    store = AirtableStore(
        sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES)), airtable_settings(sandbox)
    )
    store.save_coalesce_s = 0.3
    [(rec, _)], [(other, _)] = (
        store.open_client_runs([client_run("250925-201845", "Globex")]),
        store.open_client_runs([client_run("250925-201845", "Initech")]),
    )
    sandbox.state.stats.reset()
    store.save_client_run(rec, [RunEvent(rec.run_id, "Globex", "harvest", EventKind.COMPLETED, "batch 1", at=at(1))])
    store.save_client_run(rec, [RunEvent(rec.run_id, "Globex", "harvest", EventKind.COMPLETED, "batch 2", at=at(2))])
    rec.status = ClientRunStatus.COMPLETED
    store.save_client_run(rec, [RunEvent(rec.run_id, "Globex", "harvest", EventKind.COMPLETED, "end", at=at(3))])
    assert sandbox.state.stats.count(method="PATCH", path="Client Run Results") == 1
    store.save_client_run(other, [RunEvent(other.run_id, "Initech", "harvest", EventKind.STARTED, at=at(4))])
    assert sandbox.state.stats.count(method="PATCH", path="Client Run Results") == 1  # held
    deadline = time.monotonic() + 10
    while sandbox.state.stats.count(method="PATCH", path="Client Run Results") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox.state.stats.count(method="PATCH", path="Client Run Results") == 2  # the timer wrote it
    reader = AirtableStore(store.base_id, airtable_settings(sandbox))
    assert [e.message for e in reader.list_events(client_id="Globex")] == ["batch 1", "batch 2", "end"]
    assert [e.kind for e in reader.list_events(client_id="Initech")] == [EventKind.STARTED]
    store.save_client_run(other, [RunEvent(other.run_id, "Initech", "harvest", EventKind.COMPLETED, at=at(5))])
    assert len(store.list_events(client_id="Initech")) == 2  # the read wrote the held save first
