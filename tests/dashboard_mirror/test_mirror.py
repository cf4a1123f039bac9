"""The dashboard's local mirror of an Airtable workspace (`leadkit.store.mirror`), on the Airtable
sandbox (Airtable's limits), counted by the sandbox:
- once read, an unchanged table costs one request per read, and what changed elsewhere arrives by it;
- a write made on this host reaches the mirror through the keeper's poll of the change journal, asking only the
  written tables; a client removed here leaves the mirror;
- Client health's lead counts come from the mirror's lead summaries, kept as a client's base is written here;
- the mirror is private (folder 0700, files 0600) and holds no credential.
"""

from __future__ import annotations

import stat
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from leadkit.config import get_settings
from leadkit.health import workspace_health
from leadkit.models import AuthCheck, Client, ClientRunStatus, NewLead
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.store import mirror as mirror_module
from leadkit.store.airtable import make_api
from leadkit.store.mirror import MIRROR_DIR, MIRRORED_TABLES, AirtableMirror, MirrorKeeper
from leadkit.store.provision import provision
from leadkit.store.schema import AuthChecks, ClientRunResults, JobTracking
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

CLIENTS = ["Acme-Co", "Globex"]


@dataclass
class Board:
    sandbox: Sandbox
    ws: Workspace
    setup_home: Path  # a home whose tally is not the workspace's: writes made "elsewhere"


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    with Sandbox() as sandbox:
        placeholder = [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
        master = sandbox.airtable.create_base("Master Clients", placeholder)
        home = tmp_path / "ws"
        settings = get_settings().model_copy(
            update={
                "leadkit_home": home,
                "leadkit_store": f"airtable://{master}",
                "airtable_api_key": SecretStr(sandbox.token),
                "airtable_endpoint_url": sandbox.airtable_url,
            }
        )
        setup = settings.model_copy(update={"leadkit_home": tmp_path / "setup"})
        provision(make_api(setup), master, "master")
        ws = Workspace.create(home, settings=settings)
        for name in CLIENTS:
            base_id = sandbox.airtable.create_base(f"{name} leads", placeholder)
            provision(make_api(setup), base_id, "client")
            client = Client(client_id=name, name=name, service_level=2, post_access=True, daily_target=20)
            client.base_id = base_id
            ws.store.save_client(client)
        records = RunRecordService(ws.store)
        run = records.start_run()
        for record in records.open_many(RunId.parse(run.run_id), CLIENTS, "batch"):
            records.update(record, status=ClientRunStatus.COMPLETED)
        records.finish_run(run)
        try:
            yield Board(sandbox, ws, tmp_path / "setup")
        finally:
            ws.close()


def _by_table(sandbox: Sandbox) -> Counter[str]:
    return Counter(unquote(r["path"]).split("/")[3] for r in sandbox.stats()["requests"])


def test_an_unchanged_table_costs_one_request_and_a_change_made_elsewhere_arrives(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 250 auth checks: a full read of that table is 3 pages of 100
    board.ws.store.add_auth_checks(
        [AuthCheck("apify", True, None, 200, 100.0, "", checked_at=datetime.now(UTC)) for _ in range(250)]
    )
    monkeypatch.setattr(mirror_module, "SKEW_S", 0.0)  # the records above are older than the margin would allow
    mirror = AirtableMirror(board.ws.store, board.ws.home)
    board.sandbox.state.stats.reset()
    mirror.sync_tables(MIRRORED_TABLES)
    assert _by_table(board.sandbox)[AuthChecks.TABLE] == 3
    assert len(mirror.store.list_runs()) == 1
    assert len(mirror.store.list_auth_checks()) == 250
    board.sandbox.state.stats.reset()
    mirror.sync_tables(MIRRORED_TABLES)
    # nothing changed: one request per table (the incremental read, answered with no record), not 3 pages
    assert _by_table(board.sandbox) == Counter({t: 1 for t in MIRRORED_TABLES})
    assert len(mirror.store.list_auth_checks()) == 250
    # a run written elsewhere (a tally that is not this workspace's): read by the next incremental read
    api = make_api(board.ws.settings.model_copy(update={"leadkit_home": board.setup_home}))
    stamp = datetime.now(UTC).isoformat()
    api.table(board.ws.store.base_id, JobTracking.TABLE).create(
        {JobTracking.RUN_ID: "991231-235959", JobTracking.STATUS: "Running", JobTracking.START_TIME: stamp}
    )
    board.sandbox.state.stats.reset()
    mirror.sync_tables([JobTracking.TABLE])
    assert _by_table(board.sandbox) == Counter({JobTracking.TABLE: 1})
    assert "991231-235959" in {r.run_id for r in mirror.store.list_runs()}
    mirror.close()


def test_writes_made_here_reach_the_mirror_through_the_journal_asking_only_the_written_tables(board: Board) -> None:
    ws = board.ws
    mirror = AirtableMirror(ws.store, ws.home)
    keeper = MirrorKeeper(mirror, ws.home, sync_s=3600.0)
    keeper.want(MIRRORED_TABLES, leads=True)
    (summary,) = [h for h in workspace_health(Workspace(ws.settings, mirror.store)) if h["client_id"] == "Acme-Co"]
    assert summary["leads_total"] == 0
    board.sandbox.state.stats.reset()
    keeper.poll()  # nothing written: no request at all
    assert board.sandbox.stats()["requests"] == []

    # a run that ends here, and leads imported into a client's base here
    records = RunRecordService(ws.store)
    run = records.start_run()
    for record in records.open_many(RunId.parse(run.run_id), ["Acme-Co"], "batch"):
        records.update(record, status=ClientRunStatus.FAILED, reason="the harvest stage failed")
    records.finish_run(run)
    acme = ws.store.get_client("Acme-Co")
    ws.store.lead_base(acme).import_leads(
        [NewLead(f"https://www.linkedin.com/in/lead-{n}/", f"Lead {n}") for n in range(3)]
    )
    board.sandbox.state.stats.reset()
    keeper.poll()
    asked = _by_table(board.sandbox)
    # the written tables and the written base only: not every table
    assert set(asked) <= {JobTracking.TABLE, ClientRunResults.TABLE, "Leads"}, asked
    assert asked["Leads"] == 1, asked
    latest = mirror.store.latest_client_runs(["Acme-Co"])["Acme-Co"]
    assert (latest.run_id, latest.status) == (run.run_id, ClientRunStatus.FAILED)
    (summary,) = [h for h in workspace_health(Workspace(ws.settings, mirror.store)) if h["client_id"] == "Acme-Co"]
    assert summary["leads_total"] == 3

    # a client removed here leaves the mirror (its DELETE is in the journal)
    ws.store.remove_client("Globex")
    keeper.poll()
    assert [c.client_id for c in mirror.store.list_clients()] == ["Acme-Co"]
    keeper.stop()
    mirror.close()


def test_the_mirror_is_private_and_holds_no_credential(board: Board) -> None:
    mirror = AirtableMirror(board.ws.store, board.ws.home)
    keeper = MirrorKeeper(mirror, board.ws.home, sync_s=3600.0)
    keeper.want(MIRRORED_TABLES, leads=True)
    folder = board.ws.home / MIRROR_DIR
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and len(files) >= 3  # master and the two lead bases
    token = board.sandbox.token.encode()
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert token not in path.read_bytes(), path
    mirror.close()


def test_an_incremental_read_reaches_back_past_clock_skew(board: Board) -> None:
    """A record modified just before the previous read started (Airtable's clock behind this host's) is still
    read: the window starts `SKEW_S` before the previous read."""
    mirror = AirtableMirror(board.ws.store, board.ws.home)
    mirror.sync_tables([JobTracking.TABLE])
    api = make_api(board.ws.settings.model_copy(update={"leadkit_home": board.setup_home}))
    api.table(board.ws.store.base_id, JobTracking.TABLE).create(
        {
            JobTracking.RUN_ID: "991231-000000",
            JobTracking.STATUS: "Running",
            JobTracking.START_TIME: "2026-01-01T00:00:00.000Z",
        }
    )
    # as if this host's clock ran a minute ahead of Airtable's when the last read started
    with mirror._lock:
        mirror._conn.execute(
            "UPDATE mirror_synced SET since = ? WHERE tbl = ?",
            ((datetime.now(UTC) + timedelta(seconds=60)).isoformat(), JobTracking.TABLE),
        )
    time.sleep(0.01)
    mirror.sync_tables([JobTracking.TABLE])
    assert "991231-000000" in {r.run_id for r in mirror.store.list_runs()}
    mirror.close()
