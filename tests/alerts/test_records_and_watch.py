"""Alert records on both backends (the Airtable tables provisioned like the others), `leadkit watch` after a
stuck lease, a stale lease and no batch at all, the silent-client rule, and canary secrets kept out of
every output, file and record."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from leadkit.alerts import watch
from leadkit.config import Settings
from leadkit.models import (
    Alert,
    ClientRunStatus,
    EventKind,
    FailureTriage,
    Lease,
    RunEvent,
    Source,
    TriageStatus,
    utcnow,
)
from leadkit.runids import RunId
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from . import cli, cli_json
from .conftest import after, batch
from .receivers import Webhook, forget_alerts, free_port


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=["tokAlertsTests0000000000000001"], rate_limit=0) as sb:
        yield sb


def test_alert_records_and_triage_on_airtable_provisioned_like_the_others(sandbox: Sandbox, tmp_path: Path) -> None:
    from leadkit.store.airtable import AirtableStore, make_api
    from leadkit.store.provision import check_schema, provision

    settings = Settings(
        leadkit_home=tmp_path,
        airtable_api_key=SecretStr(sandbox.token),
        airtable_endpoint_url=sandbox.airtable_url,
        airtable_max_requests_per_s=1000.0,
    )
    base = sandbox.airtable.create_base(
        "Master", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    provision(make_api(settings), base, "master")
    assert check_schema(make_api(settings), base, "master") == []
    store = AirtableStore(base, settings)
    store.init()
    now = utcnow()
    rows = [
        Alert(
            "batch_failed",
            "config: x",
            "s1",
            "b1",
            "json://127.0.0.1:1",
            False,
            "refused",
            ["Globex"],
            "r1",
            "m1",
            now - timedelta(hours=2),
        ),
        Alert("resolved", "config: x", "s2", "b2", "json://127.0.0.1:1", True, None, ["Globex"], "r2", "m2", now),
    ]
    store.add_alerts(rows)
    got = store.list_alerts()
    assert [(a.kind, a.delivered, a.error, a.clients, a.run_id) for a in got] == [
        ("resolved", True, None, ["Globex"], "r2"),
        ("batch_failed", False, "refused", ["Globex"], "r1"),
    ]
    assert [a.kind for a in store.list_alerts(kind="batch_failed", key="config: x")] == ["batch_failed"]
    assert [a.kind for a in store.list_alerts(since=now - timedelta(minutes=1))] == ["resolved"]
    assert len(store.list_alerts(limit=1)) == 1
    store.save_triage(FailureTriage("config: x", TriageStatus.INVESTIGATING, "looking", ["Globex"], "config"))
    store.save_triage(FailureTriage("config: x", TriageStatus.FIXED, "route fixed", ["Globex"], "config"))
    assert [(t.status, t.note) for t in store.list_triage()] == [(TriageStatus.FIXED, "route fixed")]
    store.close()


def _lease(pid: int, *, age: timedelta = timedelta(0), ttl_s: float = 120.0) -> Lease:
    now = utcnow()
    return Lease("batch-stream-1", socket.gethostname(), pid, "", now - timedelta(hours=5), now - age, ttl_s)


def test_watch_after_no_batch_at_all(workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADKIT_ALERT_URLS", hook.url())
    code, out = cli("watch")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("no batch finished for stream 1 in 3h (checked ") and "UTC" in first
    assert "last run: none" in out and "no run at all" in out
    assert [p["title"] for p in hook.posts] == [first] and hook.posts[0]["message"].startswith("no batch finished")
    code, _ = cli("watch")
    assert code == 1 and len(hook.posts) == 1  # deduped within the window


def test_watch_after_a_stuck_lease_and_a_stale_one(
    workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADKIT_ALERT_URLS", hook.url())
    monkeypatch.setenv("LEADKIT_MAX_SILENCE", "1h")
    run, _ = batch(workspace, {"Acme-Co": 3})
    run.ended_at = utcnow() - timedelta(hours=4)
    workspace.store.update_run(run)
    assert workspace.store.swap_lease("batch-stream-1", None, _lease(os.getpid()))  # held by a live process
    code, report = cli_json("watch")
    assert code == 1 and report["silent_streams"][0]["last_run"] == run.run_id
    assert report["silent_streams"][0]["lease_holder"] == f"{socket.gethostname()}:{os.getpid()}"
    assert "held by a live process" in report["silent_streams"][0]["cause"]
    assert f"last run: {run.run_id}" in hook.posts[0]["message"]

    held = workspace.store.get_lease("batch-stream-1")
    forget_alerts(workspace.store)
    dead = _lease(2**22 + 12345, age=timedelta(hours=2))
    assert workspace.store.swap_lease("batch-stream-1", held, dead)
    code, out = cli("watch")
    assert code == 1 and "the lease is stale" in out and len(hook.posts) == 2

    workspace.store.swap_lease("batch-stream-1", dead, None)
    after(workspace, {"Acme-Co": 2})  # a batch finished just now: no silence
    code, out = cli("watch")
    assert code == 0 and out.startswith("ok:")


def _client_run(ws: Workspace, client_id: str, posts: int, *, ago: timedelta, failed: bool = False) -> None:
    records = ws.records
    run = records.start_run()
    rec = records.open_many(RunId.parse(run.run_id), [client_id], Source.BATCH)[0]
    event = RunEvent(run.run_id, client_id, "harvest", EventKind.COMPLETED, "ok", {"posts_harvested": posts})
    records.update(rec, [event], status=ClientRunStatus.FAILED if failed else ClientRunStatus.COMPLETED)
    records.finish_run(run)
    at = (utcnow() - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ws.store.db.conn.execute("UPDATE client_runs SET started_at = ? WHERE run_id = ?", (at, run.run_id))


def test_silent_client_once_a_day_and_not_while_its_failure_is_alerted(
    workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADKIT_ALERT_URLS", hook.url())
    harvesting = [
        c.client_id for c in workspace.store.list_clients() if c.active and c.service_level >= 2 and c.post_access
    ]
    assert len(harvesting) >= 2
    quiet, failing = harvesting[:2]
    for client in (quiet, failing):
        _client_run(workspace, client, 9, ago=timedelta(days=5))
        _client_run(workspace, client, 0, ago=timedelta(hours=30))
    result = watch(workspace)
    assert [n.key for n in result.silent] == sorted([quiet, failing])
    assert any("leadkit: 2 client(s) gathered no posts for 3d" == p["title"] for p in hook.posts)
    text = next(p["message"] for p in hook.posts if "gathered no posts" in p["title"])
    assert "last posts: 9 in run" in text

    count = len(hook.posts)
    watch(workspace)
    assert len(hook.posts) == count  # once a day per client

    after(workspace, {failing: "config"})  # an alerted failure is the cause: no silent-client alert for it
    workspace.store.db.conn.execute("DELETE FROM alerts WHERE kind = 'silent_client'")
    result = watch(workspace)
    assert [n.key for n in result.silent] == [quiet]


CANARY_PW = "CanaryPw7781xq"
CANARY_PATH = "CanaryPathT0ken9931"
CANARY_QUERY = "CanaryQueryS3cret442"


def test_canary_secrets_in_alert_urls_reach_no_output_file_or_record(
    workspace: Workspace, hook: Webhook, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()
    urls = (
        f"json://leadkit:{CANARY_PW}@127.0.0.1:{hook.port}/{CANARY_PATH}?token={CANARY_QUERY}, "
        f"json://leadkit:{CANARY_PW}@127.0.0.1:{dead}/{CANARY_PATH}?token={CANARY_QUERY}"
    )
    monkeypatch.setenv("LEADKIT_ALERT_URLS", urls)
    caplog.set_level(logging.DEBUG)
    outputs = []
    run, sent = after(workspace, {"Acme-Co": 1, "Globex": "config"})
    assert {a.delivered for a in sent} == {True, False}
    for args in (["alerts", "--json"], ["alerts"], ["alerts", "test"], ["doctor", "--json"], ["watch"], ["failures"]):
        outputs.append(cli(*args)[1])
    assert hook.paths and all(p.startswith(f"/{CANARY_PATH}") for p in hook.paths)  # it was really used
    texts = outputs + [caplog.text] + [r.getMessage() for r in caplog.records]
    for alert in workspace.store.list_alerts():
        texts += [alert.subject, alert.body, alert.channel, alert.error or "", alert.key]
    for path in workspace.home.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    for canary in (CANARY_PW, CANARY_PATH, CANARY_QUERY):
        assert not [t for t in texts if canary in t], canary
    # Apprise's records stay with Apprise (pytest itself hooks non-propagating loggers, so look at the logger)
    assert logging.getLogger("apprise").propagate is False
    assert f"127.0.0.1:{dead}/~" in outputs[1]  # the channel is shown by scheme, host and a fingerprint
