"""The store contract: every test runs on SQLite and on Airtable (through the sandbox) and must pass on both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadkit.errors import DataError, MissingRecordError
from leadkit.models import (
    AuthCheck,
    Client,
    ClientRun,
    ClientRunStatus,
    EventKind,
    Failure,
    HarvestStatus,
    Lease,
    NewLead,
    Run,
    RunEvent,
    RunStatus,
    Source,
)
from leadkit.store.base import RunFilter, Store

from .conftest import StoreKit

T0 = datetime(2025, 9, 25, 20, 18, 45, 123000, tzinfo=UTC)  # whole milliseconds: what Airtable keeps

NASTY_IDS = [
    "O'Brien",
    'Quote"Co',
    "back\\slash",
    "brace{Client ID}",
    "' OR TRUE() OR '",
    "\\' OR 1 OR \\'",
    "x', '') & '",
]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def client_run(run_id: str, client_id: str, *, source: Source = Source.BATCH, start: float = 0) -> ClientRun:
    return ClientRun(
        run_id=run_id,
        client_id=client_id,
        source=source,
        client_name=f"{client_id} Inc",
        started_at=at(start),
        heartbeat_at=at(start),
    )


# clients ------------------------------------------------------------------------------------------------


def test_clients_crud(kit: StoreKit) -> None:
    store = kit.store
    assert store.list_clients() == []
    globex = kit.new_client("Globex", name="Globex Corp", service_level=2, post_access=True, daily_target=30)
    acme = kit.new_client("Acme-Co", name="Acme Co", status="Paused", stream=2, batch_size=5, max_batches=3)
    assert store.get_client("Globex") == globex
    assert store.get_client("Acme-Co") == acme
    assert [c.client_id for c in store.list_clients()] == ["Acme-Co", "Globex"]

    globex.status = "Paused"
    globex.daily_target = 12
    store.save_client(globex)
    assert store.get_client("Globex") == globex
    assert len(store.list_clients()) == 2

    with pytest.raises(MissingRecordError, match="Initech"):
        store.get_client("Initech")


@pytest.mark.parametrize("nasty", NASTY_IDS)
def test_client_ids_are_matched_literally(kit: StoreKit, nasty: str) -> None:
    store = kit.store
    store.save_client(Client(client_id="Umbrella", name="Umbrella"))
    with pytest.raises(MissingRecordError):
        store.get_client(nasty)
    store.save_client(Client(client_id=nasty, name="Nasty"))
    assert store.get_client(nasty).name == "Nasty"
    assert store.get_client("Umbrella").name == "Umbrella"
    assert len(store.list_clients()) == 2


# runs ---------------------------------------------------------------------------------------------------


def test_insert_run_once(store: Store) -> None:
    run = Run(run_id="250925-201845", started_at=T0, started_by="cron", clients_total=3)
    assert store.insert_run(run) is True
    again = Run(run_id="250925-201845", started_at=at(5), started_by="someone else", clients_total=9)
    assert store.insert_run(again) is False
    assert store.get_run("250925-201845") == run
    assert store.get_run("250925-201846") is None


def test_update_run(store: Store) -> None:
    run = Run(run_id="250925-201845", started_at=T0)
    store.insert_run(run)
    run.status = RunStatus.COMPLETED_WITH_ERRORS
    run.ended_at = at(60)
    run.clients_failed = 1
    run.notes = "one client failed"
    store.update_run(run)
    assert store.get_run(run.run_id) == run
    with pytest.raises(MissingRecordError):
        store.update_run(Run(run_id="250925-999999", started_at=T0))


def test_list_and_count_runs(store: Store) -> None:
    for i in range(7):
        status = RunStatus.FAILED if i % 3 == 0 else RunStatus.COMPLETED
        store.insert_run(Run(run_id=f"250925-20000{i}", status=status, started_at=at(i * 60)))
    runs = store.list_runs()
    assert [r.run_id for r in runs] == [f"250925-20000{i}" for i in reversed(range(7))]
    assert store.count_runs() == 7
    assert [r.run_id for r in store.list_runs(limit=2, offset=2)] == ["250925-200004", "250925-200003"]
    failed = RunFilter(status="Failed")
    assert [r.run_id for r in store.list_runs(failed)] == ["250925-200006", "250925-200003", "250925-200000"]
    assert store.count_runs(failed) == 3
    window = RunFilter(since=at(120), until=at(300))
    assert [r.run_id for r in store.list_runs(window)] == ["250925-200004", "250925-200003", "250925-200002"]
    assert store.count_runs(window) == 3
    assert store.list_runs(limit=5, offset=7) == []


def test_runs_filtered_by_client(store: Store) -> None:
    for i in range(3):
        store.insert_run(Run(run_id=f"250925-20000{i}", started_at=at(i)))
    store.open_client_runs([client_run("250925-200000", "Globex"), client_run("250925-200002", "Globex")])
    store.open_client_runs([client_run("250925-200001", "Initech")])
    only = RunFilter(client_id="Globex")
    assert [r.run_id for r in store.list_runs(only)] == ["250925-200002", "250925-200000"]
    assert store.count_runs(only) == 2
    assert store.count_runs(RunFilter(client_id="' OR TRUE() OR '")) == 0


def test_runs_with_failures_whatever_their_status(store: Store) -> None:
    for i in range(3):
        store.insert_run(Run(run_id=f"250925-20000{i}", status=RunStatus.COMPLETED_WITH_ERRORS, started_at=at(i)))
    (failed, _), (fine, _) = store.open_client_runs(
        [client_run("250925-200001", "Globex"), client_run("250925-200002", "Globex")]
    )
    failed.status = ClientRunStatus.FAILED
    store.save_client_run(failed)
    fine.status = ClientRunStatus.COMPLETED
    store.save_client_run(fine)
    store.open_client_runs([client_run("250925-200000", "Initech")])  # still Running: no failure yet
    with_failures = RunFilter(has_failures=True)
    assert [r.run_id for r in store.list_runs(with_failures)] == ["250925-200001"]
    assert store.count_runs(with_failures) == 1
    assert store.count_runs(RunFilter(has_failures=True, client_id="Initech")) == 0


# client runs --------------------------------------------------------------------------------------------


def test_open_client_runs_is_idempotent(store: Store) -> None:
    records = [client_run("250925-201845", f"Client-{i:02d}", start=i) for i in range(12)]
    opened = store.open_client_runs(records)
    assert [created for _, created in opened] == [True] * 12
    for (stored, _), given in zip(opened, records, strict=True):
        assert (stored.run_id, stored.client_id, stored.source) == (given.run_id, given.client_id, Source.BATCH)
        assert stored.status is ClientRunStatus.RUNNING
        assert stored.started_at == given.started_at
        assert stored.record_id

    first = opened[0][0]
    first.status = ClientRunStatus.COMPLETED
    first.ended_at = at(30)
    store.save_client_run(first)

    again = [
        client_run("250925-201845", "Client-00", source=Source.RECOVERY, start=99),
        client_run("250925-201845", "New"),
    ]
    reopened = store.open_client_runs(again)
    assert [created for _, created in reopened] == [False, True]
    existing = reopened[0][0]
    assert existing.record_id == first.record_id
    assert existing.status is ClientRunStatus.COMPLETED  # never reset by a second open
    assert existing.source is Source.BATCH
    assert existing.started_at == at(0)
    assert len(store.list_client_runs(run_id="250925-201845")) == 13
    assert store.get_client_run("250925-201845", "Client-00") == existing


def test_open_client_runs_writes_each_records_opened_event(store: Store) -> None:
    """The `opened` callback's event goes in with the open (a created record's first event, or a note on the
    record that existed), on both backends; `new` opens records that cannot exist yet the same way."""

    def note(rec: ClientRun, created: bool) -> RunEvent:
        kind = EventKind.OPENED if created else EventKind.REOPENED
        return RunEvent(rec.run_id, rec.client_id, "records", kind, f"created={created}", at=at(1))

    first = [client_run("250925-201845", f"Client-{i:02d}") for i in range(11)]
    opened = store.open_client_runs(first, opened=note, new=True)
    assert [created for _, created in opened] == [True] * 11
    again = store.open_client_runs(
        [client_run("250925-201845", "Client-03"), client_run("250925-201845", "New")], opened=note
    )
    assert [created for _, created in again] == [False, True]
    assert [(e.kind, e.message) for e in store.list_events(client_id="Client-03")] == [
        (EventKind.OPENED, "created=True"),
        (EventKind.REOPENED, "created=False"),
    ]
    assert [e.kind for e in store.list_events(client_id="New")] == [EventKind.OPENED]
    assert [e.kind for e in store.list_events(client_id="Client-10")] == [EventKind.OPENED]
    assert len(store.list_client_runs(run_id="250925-201845")) == 12


def test_recovery_source_is_kept(store: Store) -> None:
    [(stored, created)] = store.open_client_runs([client_run("250925-201845", "Globex", source=Source.RECOVERY)])
    assert created
    assert stored.source is Source.RECOVERY
    got = store.get_client_run("250925-201845", "Globex")
    assert got is not None and got.source is Source.RECOVERY


def test_save_client_run_with_events_metrics_and_failure(store: Store) -> None:
    [(record, _)] = store.open_client_runs([client_run("250925-201845", "Acme-Co")])
    events = [
        RunEvent("250925-201845", "Acme-Co", "eligibility", EventKind.COMPLETED, "due", at=at(1)),
        RunEvent(
            "250925-201845",
            "Acme-Co",
            "harvest",
            EventKind.COMPLETED,
            "batch 1",
            {"posts_harvested": 7, "profiles_submitted": 20, "apify_cost_usd": 0.25},
            at=at(2),
        ),
    ]
    record.status = ClientRunStatus.COMPLETED_WITH_ERRORS
    record.ended_at = at(3)
    record.heartbeat_at = at(3)
    record.metrics = {"posts_harvested": 7.0, "profiles_submitted": 20.0, "apify_cost_usd": 0.25}
    record.notebook = "runs/250925-201845/Acme-Co.ipynb"
    record.reason = "one batch failed"
    record.failure = Failure(
        category="upstream",
        fingerprint="apify 502",
        message="Apify answered 502",
        hint="Re-run later",
        run_id="250925-201845",
        client_id="Acme-Co",
        stage="harvest",
        at=at(2),
        notebook=record.notebook,
        cell=4,
        traceback="Traceback...",
    )
    store.save_client_run(record, events)
    assert store.get_client_run("250925-201845", "Acme-Co") == record

    more = [RunEvent("250925-201845", "Acme-Co", "harvest", EventKind.FAILED, "batch 2", at=at(2.5))]
    store.save_client_run(record, more)
    got = store.list_events(run_id="250925-201845", client_id="Acme-Co")
    assert [(e.stage, e.kind, e.message) for e in got] == [
        ("eligibility", EventKind.COMPLETED, "due"),
        ("harvest", EventKind.COMPLETED, "batch 1"),
        ("harvest", EventKind.FAILED, "batch 2"),
    ]
    assert got[1].metrics == {"posts_harvested": 7, "profiles_submitted": 20, "apify_cost_usd": 0.25}
    assert got[1].at == at(2)


def test_save_missing_client_run_writes_nothing(store: Store) -> None:
    ghost = client_run("250925-201845", "Globex")
    with pytest.raises(MissingRecordError):
        store.save_client_run(ghost, [RunEvent("250925-201845", "Globex", "x", EventKind.INFO, at=at(1))])
    assert store.get_client_run("250925-201845", "Globex") is None
    assert store.list_events(run_id="250925-201845") == []


def test_list_client_runs_filters_and_paging(store: Store) -> None:
    store.open_client_runs([client_run("250925-100000", c, start=i) for i, c in enumerate(["A", "B", "C"])])
    store.open_client_runs([client_run("250926-100000", c, start=100 + i) for i, c in enumerate(["A", "B"])])
    b = store.get_client_run("250926-100000", "B")
    assert b is not None
    b.status = ClientRunStatus.FAILED
    store.save_client_run(b)

    every = store.list_client_runs()
    assert [(r.run_id, r.client_id) for r in every] == [
        ("250926-100000", "B"),
        ("250926-100000", "A"),
        ("250925-100000", "C"),
        ("250925-100000", "B"),
        ("250925-100000", "A"),
    ]
    assert [r.client_id for r in store.list_client_runs(run_id="250925-100000")] == ["C", "B", "A"]
    assert [r.run_id for r in store.list_client_runs(client_id="A")] == ["250926-100000", "250925-100000"]
    assert [r.client_id for r in store.list_client_runs(status="Failed")] == ["B"]
    assert [r.client_id for r in store.list_client_runs(since=at(50))] == ["B", "A"]
    assert [r.client_id for r in store.list_client_runs(limit=2, offset=1)] == ["A", "C"]
    assert store.list_client_runs(client_id="' OR TRUE() OR '") == []


@pytest.mark.parametrize("nasty", NASTY_IDS)
def test_client_run_keys_are_matched_literally(store: Store, nasty: str) -> None:
    store.open_client_runs([client_run("250925-201845", "Globex")])
    assert store.get_client_run("250925-201845", nasty) is None
    assert store.list_client_runs(client_id=nasty) == []
    [(rec, created)] = store.open_client_runs([client_run("250925-201845", nasty)])
    assert created and rec.client_id == nasty
    assert store.get_client_run("250925-201845", nasty) == rec
    assert [r.client_id for r in store.list_client_runs(client_id=nasty)] == [nasty]
    assert len(store.list_client_runs()) == 2


def test_events_order_and_filters(store: Store) -> None:
    store.open_client_runs([client_run("250925-201845", "Globex"), client_run("250925-201845", "Initech")])
    store.add_events(
        [
            RunEvent("250925-201845", "Globex", "harvest", EventKind.STARTED, at=at(2)),
            RunEvent("250925-201845", "Initech", "harvest", EventKind.STARTED, at=at(1)),
            RunEvent("250925-201845", "Globex", "harvest", EventKind.COMPLETED, at=at(4)),
            RunEvent("250925-201845", "", "batch", EventKind.INFO, "batch-level note", at=at(3)),
        ]
    )
    store.add_events([RunEvent("250925-201845", "Globex", "report", EventKind.SKIPPED, at=at(5))])
    everything = store.list_events()
    assert [(e.client_id, e.at) for e in everything] == [
        ("Initech", at(1)),
        ("Globex", at(2)),
        ("", at(3)),
        ("Globex", at(4)),
        ("Globex", at(5)),
    ]
    assert [e.kind for e in store.list_events(client_id="Globex")] == [
        EventKind.STARTED,
        EventKind.COMPLETED,
        EventKind.SKIPPED,
    ]
    assert [e.at for e in store.list_events(run_id="250925-201845", since=at(3))] == [at(3), at(4), at(5)]
    assert store.list_events(run_id="250925-000000") == []


# diagnostics --------------------------------------------------------------------------------------------


def test_failures_newest_first(store: Store) -> None:
    for i in range(3):
        store.add_failure(
            Failure(
                category="auth",
                fingerprint=f"fp{i}",
                message=f"token refused {i}",
                hint="check the token",
                run_id="250925-201845",
                client_id="Globex",
                at=at(i),
            )
        )
    store.add_failure(Failure(category="bug", fingerprint="x", message="boom", hint="h", at=at(10)))
    got = store.list_failures()
    assert [f.fingerprint for f in got] == ["x", "fp2", "fp1", "fp0"]
    assert got[0].run_id is None and got[1].client_id == "Globex"
    assert [f.fingerprint for f in store.list_failures(since=at(1), limit=2)] == ["x", "fp2"]


def test_auth_checks(store: Store) -> None:
    store.add_auth_checks(
        [
            AuthCheck("airtable", True, None, 200, 12.5, "", checked_at=at(1)),
            AuthCheck("apify", False, "auth", 401, 30.0, "check APIFY_TOKEN", checked_at=at(2), detail="401"),
        ]
    )
    store.add_auth_checks([AuthCheck("airtable", False, "config", 200, 5.0, "html", checked_at=at(3))])
    got = store.list_auth_checks()
    assert [(c.name, c.ok, c.status) for c in got] == [
        ("airtable", False, 200),
        ("apify", False, 401),
        ("airtable", True, 200),
    ]
    assert got[1] == AuthCheck("apify", False, "auth", 401, 30.0, "check APIFY_TOKEN", checked_at=at(2), detail="401")
    assert len(store.list_auth_checks(since=at(2))) == 2
    assert len(store.list_auth_checks(limit=1)) == 1


def test_lease_compare_and_set(store: Store) -> None:
    now = datetime.now(UTC)
    mine = Lease("stream-1", "host-a", 101, "250925-201845", now, now, 900.0)
    theirs = Lease("stream-1", "host-b", 202, "250925-201900", now, now, 900.0)
    assert store.get_lease("stream-1") is None
    assert store.swap_lease("stream-1", None, mine) is True
    assert store.swap_lease("stream-1", None, theirs) is False
    assert store.get_lease("stream-1") == mine
    beat = Lease("stream-1", "host-a", 101, "250925-201845", now, now + timedelta(microseconds=1500), 900.0)
    assert store.swap_lease("stream-1", mine, beat) is True
    assert store.swap_lease("stream-1", mine, theirs) is False  # stale expectation
    assert store.get_lease("stream-1") == beat
    assert store.get_lease("stream-2") is None
    assert store.swap_lease("stream-1", beat, None) is True
    assert store.get_lease("stream-1") is None
    assert store.swap_lease("stream-1", None, theirs) is True
    assert store.get_lease("stream-1") == theirs


# leads --------------------------------------------------------------------------------------------------


def test_import_leads_dedupes_url_variants(kit: StoreKit) -> None:
    client = kit.new_client("Acme-Co")
    base = kit.store.lead_base(client)
    first = base.import_leads(
        [
            NewLead("https://www.linkedin.com/in/jane-doe/", "Jane Doe", "Globex"),
            NewLead("https://www.linkedin.com/in/john-roe", "John Roe", "Initech"),
        ]
    )
    assert (first.created, first.existing) == (2, 0)
    again = base.import_leads(
        [
            NewLead("http://linkedin.com/in/Jane-Doe", "Jane D."),
            NewLead("https://www.linkedin.com/in/john-roe/recent-activity/all/"),
            NewLead("https://www.linkedin.com/in/new-person", "New Person"),
            NewLead("https://linkedin.com/in/new-person/"),
        ]
    )
    assert (again.created, again.existing) == (1, 3)
    leads = base.list_leads()
    assert sorted(lead.profile_url for lead in leads) == [
        "https://www.linkedin.com/in/jane-doe/",
        "https://www.linkedin.com/in/john-roe",
        "https://www.linkedin.com/in/new-person",
    ]
    jane = next(lead for lead in leads if "jane" in lead.profile_url)
    assert (jane.name, jane.company, jane.harvest_status, jane.posts) == ("Jane Doe", "Globex", None, [])
    assert base.get_lead(jane.lead_id) == jane


def test_update_and_list_leads_by_status(kit: StoreKit) -> None:
    base = kit.store.lead_base(kit.new_client("Globex"))
    base.import_leads([NewLead(f"https://www.linkedin.com/in/lead-{i}") for i in range(12)])
    leads = base.list_leads()
    assert len(leads) == 12
    posts = [{"postUrl": "https://www.linkedin.com/posts/x-activity-1", "text": "hello 'quoted' {braces}"}]
    updates = {
        lead.lead_id: {"harvest_status": HarvestStatus.PENDING, "harvest_run_id": "250925-201845-Globex"}
        for lead in leads[:11]
    }
    updates[leads[0].lead_id] = {
        "harvest_status": "Done",
        "posts_found": 1,
        "posts": posts,
        "last_check_at": at(9),
        "posts_actioned": 0,
    }
    base.update_leads(updates)
    assert [lead.lead_id for lead in base.list_leads(status="Done")] == [leads[0].lead_id]
    assert len(base.list_leads(status="Pending")) == 10
    assert [lead.lead_id for lead in base.list_leads(status="")] == [leads[11].lead_id]
    assert len(base.list_leads(status="blank")) == 1
    assert len(base.list_leads(status="Pending", limit=3)) == 3
    done = base.get_lead(leads[0].lead_id)
    assert (done.posts_found, done.posts, done.last_check_at, done.posts_actioned) == (1, posts, at(9), 0)

    base.update_leads({leads[0].lead_id: {"harvest_status": None, "last_error": "Apify answered 502"}})
    cleared = base.get_lead(leads[0].lead_id)
    assert cleared.harvest_status is None and cleared.last_error == "Apify answered 502"
    with pytest.raises(DataError, match="profile_url"):
        base.update_leads({leads[1].lead_id: {"profile_url": "https://elsewhere"}})


def test_missing_lead(kit: StoreKit) -> None:
    base = kit.store.lead_base(kit.new_client("Initech"))
    with pytest.raises(MissingRecordError, match="Initech"):
        base.get_lead("recAAAAAAAAAAAAAA")
    with pytest.raises(MissingRecordError):
        base.get_lead("' OR TRUE() OR '")


def test_lead_urls_are_matched_literally(kit: StoreKit) -> None:
    base = kit.store.lead_base(kit.new_client("Umbrella"))
    nasty = [
        "https://www.linkedin.com/in/o'brien",
        "https://www.linkedin.com/in/back\\slash",
        "https://www.linkedin.com/in/{LinkedIn Profile URL}",
        "https://www.linkedin.com/in/x' OR TRUE() OR '",
    ]
    assert base.import_leads([NewLead(url) for url in nasty]).created == 4
    assert base.import_leads([NewLead(url) for url in nasty]).existing == 4
    assert sorted(lead.profile_url for lead in base.list_leads()) == sorted(nasty)


def test_clients_leads_stay_in_their_own_base(kit: StoreKit) -> None:
    acme = kit.store.lead_base(kit.new_client("Acme-Co"))
    globex = kit.store.lead_base(kit.new_client("Globex"))
    acme.import_leads([NewLead("https://www.linkedin.com/in/acme-only")])
    assert globex.list_leads() == []
    assert globex.import_leads([NewLead("https://www.linkedin.com/in/acme-only")]).created == 1
    assert len(acme.list_leads()) == 1


def _second_process_view(store: Store) -> Store:
    """Another instance on the same store, as a notebook kernel would open it."""
    from leadkit.store.airtable import AirtableStore
    from leadkit.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.home)
    assert isinstance(store, AirtableStore)
    return AirtableStore(store.base_id, store.settings)


def test_adopting_a_handed_over_client_run_keeps_every_event(store: Store) -> None:
    opened, _ = store.open_client_runs([client_run("250925-201845", "Acme-Co")])[0]
    first = RunEvent(
        "250925-201845", "Acme-Co", "records", EventKind.OPENED, "opened by batch", {"opens_batch": 1}, at(1)
    )
    store.add_events([first])
    kernel = _second_process_view(store)
    kernel.init()
    try:
        kernel.adopt_client_run(opened, [first])
        done = RunEvent("250925-201845", "Acme-Co", "eligibility", EventKind.SKIPPED, "not due", {}, at(2))
        opened.status = ClientRunStatus.SKIPPED
        kernel.save_client_run(opened, [done])
    finally:
        kernel.close()
    events = store.list_events(run_id="250925-201845", client_id="Acme-Co")
    assert [(e.stage, e.kind) for e in events] == [("records", EventKind.OPENED), ("eligibility", EventKind.SKIPPED)]
    stored = store.get_client_run("250925-201845", "Acme-Co")
    assert stored is not None and stored.status is ClientRunStatus.SKIPPED
