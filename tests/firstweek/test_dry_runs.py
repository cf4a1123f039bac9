"""Dry runs are marked: a real `leadkit batch --dry-run` records a Run with `dry_run` set, which `runs` and `show`
say (text and --json) and a real batch does not; a store from before the flag (an older SQLite file, a base
without the `Dry Run` field) still opens and reads its runs as real ones; dry runs are left out of the success
counts and of the silence checks (`leadkit watch`)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from dashboards import data as dd
from leadkit.alerts.rules import find_silence, silent_clients
from leadkit.cli import run
from leadkit.config import Settings
from leadkit.errors import SchemaError
from leadkit.history import real_client_run_counts
from leadkit.models import ClientRunStatus, EventKind, Run, RunEvent, RunStatus, Source, utcnow
from leadkit.runids import RunId
from leadkit.store.schema import MASTER_TABLES, JobTracking
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = run(list(args))
    return code, capsys.readouterr().out


def test_a_dry_run_is_marked_in_runs_and_show(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "batch", "--dry-run", "--clients", "Acme-Co", "--json")
    assert code == 0, out
    dry = json.loads(out)["run_id"]
    code, out = cli(capsys, "batch", "--stages", "eligibility", "--clients", "Acme-Co", "--json")
    assert code == 0, out
    real = json.loads(out)["run_id"]

    code, out = cli(capsys, "runs", "--json")
    assert {r["run_id"]: r["dry_run"] for r in json.loads(out)} == {dry: True, real: False}
    code, out = cli(capsys, "runs")
    lines = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert "Completed (dry run)" in lines[dry] and "dry run" not in lines[real]
    for run_id, flag in ((dry, True), (real, False)):
        code, out = cli(capsys, "show", run_id, "--json")
        assert json.loads(out)["dry_run"] is flag
        code, out = cli(capsys, "show", run_id)
        assert ("dry run" in out.splitlines()[0]) is flag, out.splitlines()[0]
    assert workspace.store.get_run(dry).dry_run and not workspace.store.get_run(real).dry_run  # type: ignore[union-attr]

    # the dashboard says it too: its runs table and a run's page mark the dry run, and the success rate leaves it out
    table = dd.runs_page(workspace, dd.run_filter(), 1).rows
    shown = dict(zip(table["Run ID"], table["Status"], strict=True))
    assert shown == {dry: "Completed (dry run)", real: "Completed"}
    assert dd.run_detail(workspace, dry).summary["Status"] == "Completed (dry run)"
    assert dd.run_detail(workspace, real).summary["Status"] == "Completed"


def test_an_older_sqlite_store_reads_its_runs_as_real(workspace: Workspace) -> None:
    run_id = workspace.records.start_run().run_id
    path = workspace.home / "leadkit.sqlite"
    workspace.close()
    conn = sqlite3.connect(path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute("ALTER TABLE runs DROP COLUMN dry_run")  # the file as the previous release left it
    conn.execute(f"PRAGMA user_version = {version - 1}")
    conn.commit()
    conn.close()
    ws = Workspace.open(workspace.home)
    try:
        (got,) = ws.store.list_runs()
        assert got.run_id == run_id and got.dry_run is False
        dry = ws.records.start_run(dry_run=True)
        assert ws.store.get_run(dry.run_id).dry_run is True  # type: ignore[union-attr]
    finally:
        ws.close()


def test_an_airtable_base_without_the_field_still_works_and_provision_adds_it(tmp_path: Path) -> None:
    from leadkit.store.airtable import AirtableStore, make_api
    from leadkit.store.provision import check_schema, provision

    with Sandbox(rate_limit=0) as sb:
        settings = Settings(
            leadkit_home=tmp_path,
            airtable_api_key=SecretStr(sb.token),
            airtable_endpoint_url=sb.airtable_url,
            airtable_max_requests_per_s=1000.0,
        )
        old = [
            {
                "name": t.name,
                "fields": [f.meta() for f in t.fields if (t.name, f.name) != (JobTracking.TABLE, JobTracking.DRY_RUN)],
            }
            for t in MASTER_TABLES
        ]
        base = sb.airtable.create_base("Master from before", old)
        api = make_api(settings)
        assert check_schema(api, base, "master") == []  # not asked for: the base works as it is
        store = AirtableStore(base, settings)
        store.init()
        assert store.insert_run(Run("261201-080000"))
        (got,) = store.list_runs()
        assert got.run_id == "261201-080000" and got.dry_run is False
        with pytest.raises(SchemaError, match="Dry Run"):  # the sandbox refuses the unknown field, as Airtable does
            store.insert_run(Run("261201-090000", dry_run=True))

        assert provision(api, base, "master") == [f"field 'Dry Run' in table '{JobTracking.TABLE}'"]
        assert store.insert_run(Run("261201-100000", dry_run=True))
        assert {r.run_id: r.dry_run for r in store.list_runs()} == {"261201-080000": False, "261201-100000": True}
        store.close()


def _finished_run(
    ws: Workspace, client_id: str, posts: int, status: ClientRunStatus, *, dry: bool, ago: timedelta
) -> str:
    records = ws.records
    batch = records.start_run(dry_run=dry)
    rec = records.open_many(RunId.parse(batch.run_id), [client_id], Source.BATCH)[0]
    event = RunEvent(batch.run_id, client_id, "harvest", EventKind.COMPLETED, "ok", {"posts_harvested": posts})
    records.update(rec, [event], status=status)
    records.finish_run(batch)
    at = (utcnow() - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ws.store.db.conn.execute("UPDATE client_runs SET started_at = ? WHERE run_id = ?", (at, batch.run_id))  # type: ignore[attr-defined]
    ws.store.db.conn.execute("UPDATE runs SET ended_at = ? WHERE run_id = ?", (at, batch.run_id))  # type: ignore[attr-defined]
    return batch.run_id


def test_dry_runs_are_left_out_of_success_counts_and_silence_checks(workspace: Workspace) -> None:
    client = next(c for c in workspace.store.list_clients() if c.active and c.service_level >= 2 and c.post_access)
    cid = client.client_id
    real = _finished_run(workspace, cid, 9, ClientRunStatus.COMPLETED, dry=False, ago=timedelta(days=5))
    dry = _finished_run(workspace, cid, 0, ClientRunStatus.FAILED, dry=True, ago=timedelta(minutes=1))
    now = utcnow()

    # the dry run's Failed client is no failure of the service: the real counts hold only the real run's
    assert workspace.store.count_client_runs(since=now - timedelta(days=7)).by_status == {"Completed": 1, "Failed": 1}
    counts = real_client_run_counts(workspace.store, since=now - timedelta(days=7))
    assert counts.by_status == {"Completed": 1} and counts.success_rate == 1.0

    # a dry run that finished a minute ago is not a batch finishing: the stream is silent since the real run
    silence = find_silence(workspace.store, client.stream, timedelta(hours=3), now)
    assert silence is not None and silence.last_run is not None and silence.last_run.run_id == real
    # a dry run gathers no posts by design: not a client gone silent
    assert [n.key for n in silent_clients(workspace.store, timedelta(hours=72), now)] == []
    assert workspace.store.get_run(dry).status is RunStatus.FAILED  # type: ignore[union-attr]
