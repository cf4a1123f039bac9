"""Fewer master-base requests, counted on the sandbox: a new run's ClientRuns open in one upsert per 10, a held
progress save rides on the heartbeat, and a held save whose process was killed is written by whoever settles
its record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from leadkit.models import ClientRun, ClientRunStatus, EventKind, RunEvent
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import MASTER_TABLES, ClientRunResults
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec
from .test_contract import at, client_run

RUN = "250925-201845"


def _patches(sandbox: Sandbox) -> int:
    return sandbox.state.stats.count(method="PATCH", path="Client Run Results")


def _opened(rec: ClientRun, created: bool) -> RunEvent:
    return RunEvent(rec.run_id, rec.client_id, "records", EventKind.OPENED, f"created={created}", at=at(0))


def test_a_new_runs_client_runs_open_in_one_request_per_ten_and_a_repeat_creates_none(sandbox: Sandbox) -> None:
    master = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    store = AirtableStore(master, airtable_settings(sandbox))
    records = [client_run(RUN, f"Client-{i:02d}") for i in range(12)]
    sandbox.state.stats.reset()
    opened = store.open_client_runs(records, opened=_opened, new=True)
    assert _patches(sandbox) == 2  # 10 + 2, the events included
    assert sandbox.state.stats.count(path="Client Run Results") == 2
    assert [created for _, created in opened] == [True] * 12
    # the answer was lost, say: the caller opens them again, the same way
    again = AirtableStore(master, airtable_settings(sandbox)).open_client_runs(records, opened=_opened, new=True)
    assert [created for _, created in again] == [False] * 12
    rows = sandbox.airtable.records(master, ClientRunResults.TABLE)
    assert len(rows) == 12  # counted on the server: no duplicate
    reader = AirtableStore(master, airtable_settings(sandbox))
    assert [e.message for e in reader.list_events(client_id="Client-11")] == ["created=True"]


def test_a_held_progress_save_goes_out_with_the_heartbeat(sandbox: Sandbox, tmp_path: Path) -> None:
    master = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    store = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    assert store.save_coalesce_s == 300.0  # the default: a third of the 900-s stale TTL
    [(rec, _)] = store.open_client_runs([client_run(RUN, "Globex")])
    sandbox.state.stats.reset()
    rec.metrics = {"posts_found": 4.0}
    store.save_client_run(rec, [RunEvent(RUN, "Globex", "harvest", EventKind.COMPLETED, "batch 1", at=at(1))])
    assert _patches(sandbox) == 0  # held
    assert list((tmp_path / "held-saves" / master).iterdir())  # and kept in the workspace
    assert store.touch_client_run(rec, at(2))
    assert _patches(sandbox) == 1
    assert not list((tmp_path / "held-saves" / master).iterdir())
    row = next(r for r in sandbox.airtable.records(master, ClientRunResults.TABLE))
    assert row["fields"][ClientRunResults.HEARTBEAT].startswith(at(2).strftime("%Y-%m-%dT%H:%M:%S"))
    assert "batch 1" in row["fields"][ClientRunResults.EVENTS_JSON]
    assert store.touch_client_run(rec, at(3))  # nothing held: the bare heartbeat, one request
    assert _patches(sandbox) == 2
    assert sandbox.state.stats.count(method="GET", path="Client Run Results") == 0


def test_a_save_handed_over_to_another_process_is_written_at_once_and_not_over_its_writes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A resumed batch reopens a record (Running again) and hands it to a kernel, which completes it. Held back,
    the batch's save went out after the kernel's and set the record Running again, with the batch's older events
    (chaos seed 20261210 #43: two paid runs named in no events, two ClientRuns left Running)."""
    master = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    batch = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    [(rec, _)] = batch.open_client_runs([client_run(RUN, "Globex")])
    sandbox.state.stats.reset()
    event = RunEvent(RUN, "Globex", "batch", EventKind.INFO, "resumed (was Failed)", at=at(1))
    batch.save_client_run(rec, [event], hand_over=True)
    assert _patches(sandbox) == 1  # written at once, not held
    assert not (tmp_path / "held-saves").exists() or not list((tmp_path / "held-saves").rglob("*.json"))
    kernel = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    done = kernel.get_client_run(RUN, "Globex")
    assert done is not None
    done.status = ClientRunStatus.COMPLETED
    kernel.save_client_run(done, [RunEvent(RUN, "Globex", "harvest", EventKind.COMPLETED, "Apify run x", at=at(2))])
    batch.write_held()  # the batch's next read or exit: nothing of its own is left to overwrite the kernel's
    row = next(r for r in sandbox.airtable.records(master, ClientRunResults.TABLE))
    assert row["fields"][ClientRunResults.STATUS] == ClientRunStatus.COMPLETED.value
    assert "Apify run x" in row["fields"][ClientRunResults.EVENTS_JSON]


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pydantic import SecretStr
    from leadkit.config import Settings
    from leadkit.models import ClientRun, EventKind, RunEvent, Source
    from leadkit.store.airtable import AirtableStore
    from datetime import UTC, datetime

    url, token, master, home, run, client = sys.argv[1:]
    settings = Settings(
        leadkit_home=Path(home), airtable_api_key=SecretStr(token), airtable_endpoint_url=url,
        airtable_max_requests_per_s=1000.0, airtable_token_max_requests_per_s=1000.0,
    )
    store = AirtableStore(master, settings)
    now = datetime.now(UTC)
    [(rec, _)] = store.open_client_runs(
        [ClientRun(run_id=run, client_id=client, source=Source.BATCH, started_at=now, heartbeat_at=now)]
    )
    for n in (1, 2):
        rec.metrics = {"posts_found": float(n)}
        store.save_client_run(rec, [RunEvent(run, client, "harvest", EventKind.COMPLETED, f"batch {n}", at=now)])
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_a_held_save_of_a_killed_process_is_written_by_whoever_settles_its_record(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    master = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    settler = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    settler.open_client_runs([client_run(RUN, "Globex")])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, sandbox.airtable_url, sandbox.token, master, str(tmp_path), RUN, "Globex"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _patches(sandbox)
        holder.send_signal(signal.SIGKILL)  # no exit handler runs: the held save is only in the workspace
        holder.wait(timeout=30)
    finally:
        holder.kill()
    assert _patches(sandbox) == before
    [left] = (tmp_path / "held-saves" / master).iterdir()
    assert [e["message"] for e in json.loads(left.read_text())["events"]] == ["batch 1", "batch 2"]
    row = sandbox.airtable.records(master, ClientRunResults.TABLE)[0]
    assert "batch" not in row["fields"].get(ClientRunResults.EVENTS_JSON, "")

    assert settler.write_left_save(RUN, "Globex")
    assert _patches(sandbox) == before + 1
    stored = settler.get_client_run(RUN, "Globex")
    assert stored is not None and stored.status is ClientRunStatus.RUNNING
    assert stored.metrics.get("posts_found") == 2.0
    assert [e.message for e in settler.list_events(client_id="Globex") if e.stage == "harvest"] == [
        "batch 1",
        "batch 2",
    ]
    assert not left.exists()
    assert not settler.write_left_save(RUN, "Globex")  # nothing left: no request
    assert _patches(sandbox) == before + 1


def test_a_left_save_of_a_record_that_ended_is_dropped_unwritten(sandbox: Sandbox, tmp_path: Path) -> None:
    master = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    holder = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    [(rec, _)] = holder.open_client_runs([client_run(RUN, "Initech")])
    holder.save_client_run(rec, [RunEvent(RUN, "Initech", "harvest", EventKind.COMPLETED, "batch 1", at=at(1))])
    spooled = list((tmp_path / "held-saves" / master).iterdir())
    holder._held.clear()  # as if its process died with the save held
    other = AirtableStore(master, airtable_settings(sandbox, leadkit_home=tmp_path))
    ended = other.get_client_run(RUN, "Initech")
    assert ended is not None
    ended.status, ended.ended_at = ClientRunStatus.FAILED, at(5)
    other.save_client_run(ended)
    before = _patches(sandbox)
    assert not other.write_left_save(RUN, "Initech")
    assert _patches(sandbox) == before  # an ended record is never set Running again
    assert not spooled[0].exists()
    again = other.get_client_run(RUN, "Initech")
    assert again is not None and again.status is ClientRunStatus.FAILED
