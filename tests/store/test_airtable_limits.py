"""Airtable's hard limits kept (100,000-character cells, 50 requests/s per token), the request tally and the
archive of old records, on the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from leadkit.errors import AuthError
from leadkit.models import AuthCheck, ClientRun, ClientRunStatus, EventKind, RunEvent, Source
from leadkit.store.airtable import AirtableStore
from leadkit.store.airtable.archive import ARCHIVE_FILE, Archive, archive_old
from leadkit.store.airtable.usage import read_tally, usage_report
from leadkit.store.schema import MASTER_TABLES, MAX_LONG_TEXT, AuthChecks, ClientRunResults, RunEvents
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec


def _store(sandbox: Sandbox, home: Path | None = None) -> AirtableStore:
    base = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    overrides = {"leadkit_home": home} if home is not None else {}
    return AirtableStore(base, airtable_settings(sandbox, **overrides))


def _client_run(run_id: str, client_id: str, started: datetime) -> ClientRun:
    return ClientRun(run_id, client_id, Source.BATCH, client_id, started_at=started, heartbeat_at=started)


def _longest_cell(sandbox: Sandbox, base: str, table: str) -> int:
    return max(
        (len(v) for r in sandbox.airtable.records(base, table) for v in r["fields"].values() if isinstance(v, str)),
        default=0,
    )


def test_the_sandbox_refuses_a_cell_over_100000_characters(sandbox: Sandbox) -> None:
    store = _store(sandbox)
    url = f"{sandbox.airtable_url}/v0/{store.base_id}/{RunEvents.TABLE}"
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    fits = httpx.post(url, headers=headers, json={"fields": {RunEvents.MESSAGE: "x" * MAX_LONG_TEXT}})
    assert fits.status_code == 200
    over = httpx.post(url, headers=headers, json={"fields": {RunEvents.MESSAGE: "x" * (MAX_LONG_TEXT + 1)}})
    assert over.status_code == 422 and over.json()["error"]["type"] == "INVALID_VALUE_FOR_COLUMN"
    assert RunEvents.MESSAGE in over.json()["error"]["message"]


def test_a_client_run_with_5000_events_keeps_every_cell_under_the_limit_and_every_event(
    sandbox: Sandbox,
) -> None:
    store = _store(sandbox)
    store.save_coalesce_s = 0  # every save as it is made
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    [(rec, _)] = store.open_client_runs([_client_run("261101-000000", "Globex", t0)])
    events = [
        RunEvent(
            rec.run_id,
            "Globex",
            "harvest",
            EventKind.INFO,
            f"lead {i}: " + "posts " * 8,
            {"n": i},
            t0 + timedelta(milliseconds=i),
        )
        for i in range(5000)
    ]
    for start in range(0, 5000, 500):  # a long harvest: ten progress saves of 500 events
        rec.status = ClientRunStatus.COMPLETED if start == 4500 else ClientRunStatus.RUNNING
        store.save_client_run(rec, events[start : start + 500])
    store.close()
    assert _longest_cell(sandbox, store.base_id, ClientRunResults.TABLE) <= MAX_LONG_TEXT
    assert _longest_cell(sandbox, store.base_id, RunEvents.TABLE) <= MAX_LONG_TEXT
    [record] = sandbox.airtable.records(store.base_id, ClientRunResults.TABLE)
    log = record["fields"][ClientRunResults.PROGRESS_LOG]
    assert log.startswith("[") and "earlier lines not shown" in log.splitlines()[0]
    assert log.rstrip().endswith("n=4999")  # the newest lines are kept
    spilled = len(sandbox.airtable.records(store.base_id, RunEvents.TABLE))
    assert spilled > 0 and len(json.loads(record["fields"][ClientRunResults.EVENTS_JSON])) + spilled == 5000

    reader = AirtableStore(store.base_id, store.settings)
    got = reader.list_events(run_id=rec.run_id, client_id="Globex")
    assert [e.metrics["n"] for e in got] == list(range(5000))

    # the last save (it spilled) repeated by another process (its answer lost, say) adds no event twice
    again = AirtableStore(store.base_id, store.settings)
    again.save_coalesce_s = 0
    again.save_client_run(rec, events[4500:])
    assert len(sandbox.airtable.records(store.base_id, RunEvents.TABLE)) == spilled
    assert len(again.list_events(run_id=rec.run_id)) == 5000


def test_a_long_failure_and_reason_are_cut_to_fit(sandbox: Sandbox) -> None:
    from leadkit.models import Failure

    store = _store(sandbox)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    [(rec, _)] = store.open_client_runs([_client_run("261101-000000", "Globex", t0)])
    rec.status = ClientRunStatus.FAILED
    rec.reason = "r" * 150_000
    rec.failure = Failure("bug", "bug: x", "m" * 120_000, "hint", at=t0, traceback="t" * 300_000)
    store.save_client_run(rec)
    store.add_failure(rec.failure)
    assert _longest_cell(sandbox, store.base_id, ClientRunResults.TABLE) <= MAX_LONG_TEXT
    got = store.get_client_run(rec.run_id, "Globex")
    assert got is not None and got.failure is not None and got.failure.traceback is not None
    assert got.failure.traceback.startswith("[cut] ttt") and got.failure.message.endswith("mmm [cut]")
    assert got.reason is not None and "cut" in got.reason[-120:]


def test_the_sandbox_limits_a_token_to_50_requests_a_second_across_bases(sandbox: Sandbox) -> None:
    bases = [sandbox.airtable.create_base(f"B{i}", tables_spec(MASTER_TABLES)) for i in range(12)]
    sandbox.airtable.set_token_rate_limit(50, penalty_s=30)
    try:
        statuses = []
        with httpx.Client(headers={"Authorization": f"Bearer {sandbox.token}"}) as http:
            for i in range(60):  # 5 per base at most: no base limit is reached, the token's is
                base = bases[i % len(bases)]
                statuses.append(http.get(f"{sandbox.airtable_url}/v0/{base}/{RunEvents.TABLE}").status_code)
        assert statuses[:50] == [200] * 50 and 429 in statuses[50:]
    finally:
        sandbox.airtable.set_token_rate_limit(0)


def test_the_store_counts_its_requests_and_client_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    store = _store(sandbox, tmp_path)
    sandbox.state.stats.reset()
    t0 = datetime.now(UTC)
    made = store.open_client_runs([_client_run("261101-000000", f"c{i}", t0) for i in range(12)])
    for rec, _ in made:
        rec.status = ClientRunStatus.COMPLETED
        store.save_client_run(rec)
    sent = sandbox.state.stats.count(base=store.base_id)
    assert store.api.usage.total() == sent  # type: ignore[attr-defined]
    report = usage_report(read_tally(tmp_path), master_base=store.base_id, plan="team")
    assert report["master_requests"] == sent and report["client_runs"] == 12
    assert report["master_requests_per_client_run"] == round(sent / 12, 2)
    assert report["monthly_cap"] == 100_000 and report["projected_requests"] >= sent


def _old_and_young(store: AirtableStore, now: datetime) -> None:
    old, young = now - timedelta(days=120), now - timedelta(days=10)
    for when, run_id in ((old, "260801-000000"), (young, "261120-000000")):
        made = store.open_client_runs([_client_run(run_id, f"c{i:03d}", when) for i in range(130)])
        for rec, _ in made:
            rec.status = ClientRunStatus.COMPLETED
            store.save_client_run(rec, [RunEvent(run_id, rec.client_id, "harvest", EventKind.COMPLETED, "ok", at=when)])
        store._add_table_events(
            [RunEvent(run_id, "", "batch", EventKind.INFO, f"note {i}", at=when) for i in range(15)]
        )
        store.add_auth_checks(
            [
                AuthCheck("airtable", True, None, 200, 100.0, "", checked_at=when + timedelta(seconds=i))
                for i in range(5)
            ]
        )


def test_archive_round_trip_survives_interruptions(sandbox: Sandbox, tmp_path: Path) -> None:
    store = _store(sandbox, tmp_path)
    now = datetime.now(UTC)
    _old_and_young(store, now)
    base = store.base_id
    archive = Archive(tmp_path / ARCHIVE_FILE)

    class Stop(Exception):
        pass

    def stop_after_first_page(table: str, moved: int) -> None:
        raise Stop(table)

    with pytest.raises(Stop):  # interrupted between pages
        archive_old(store, archive, timedelta(days=90), progress=stop_after_first_page)
    sandbox.add_fault(service="airtable", mode="json_403", times=1, path=r"records(%5B%5D|\[\])=")
    with pytest.raises(AuthError):  # interrupted after a page was copied, before it was deleted
        archive_old(store, archive, timedelta(days=90))
    result = archive_old(store, archive, timedelta(days=90))  # the re-run finishes the job
    assert result[ClientRunResults.TABLE]["archived"] <= 130

    def left(table: str) -> int:
        return len(sandbox.airtable.records(base, table))

    assert left(ClientRunResults.TABLE) == 130 and left(RunEvents.TABLE) == 15 and left(AuthChecks.TABLE) == 5
    assert archive.counts(base) == {ClientRunResults.TABLE: 130, RunEvents.TABLE: 15, AuthChecks.TABLE: 5}
    assert archive_old(store, archive, timedelta(days=90))[ClientRunResults.TABLE]["archived"] == 0
    archive.close()

    reader = AirtableStore(base, store.settings)  # a new process: reads Airtable and the archive
    old_runs = reader.list_client_runs(run_id="260801-000000")
    assert len(old_runs) == 130 and {r.status for r in old_runs} == {ClientRunStatus.COMPLETED}
    assert reader.get_client_run("260801-000000", "c007") is not None
    events = reader.list_events(run_id="260801-000000")
    assert len(events) == 130 + 15
    assert len(reader.list_client_runs()) == 260
    assert len(reader.list_auth_checks()) == 10
    assert [e.message for e in reader.list_events(since=now - timedelta(days=30)) if not e.client_id] == [
        f"note {i}" for i in range(15)
    ]
