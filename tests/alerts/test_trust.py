"""Alerts you can trust: set in the workspace's .env and read from any folder, channels named without their
secrets, one message per (kind, key) even when two processes find it at once, one group for one upstream problem,
silence judged from the streams a run covered, bodies that say what happened and link the dashboard."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadkit.alerts import after_batch
from leadkit.alerts.engine import Notice, alert_settings, fresh, send
from leadkit.classify import failure_from
from leadkit.config import env_template
from leadkit.errors import UpstreamError
from leadkit.models import ClientRunStatus, Source
from leadkit.runids import RunId
from leadkit.workspace import Workspace

from . import cli, cli_json
from .conftest import after, batch
from .receivers import Webhook, channel, free_port

#: A canary token, long and random-looking enough to be any scheme's token, found nowhere after the test.
TOKEN = "CnryTok9x7Q2mZ4wL8vR3kP6sJ1hF5dG0aB"
USER_KEY = "CnryUsr4t8Y2nM6qW1eR5uI9oP3aS7dF0g"
PROWL_KEY = "cnry" + "0123456789abcdef" * 2 + "0123"  # Prowl wants 40 characters
#: Channels whose URL carries a token in the host, the path or the query (Apprise schemes), each with a canary.
SECRET_URLS = {
    "pushbullet": f"pbul://{TOKEN}",
    "slack": f"slack://T1JJ3T3L2/A1BRTD4JD/{TOKEN}",
    "pushover": f"pover://{USER_KEY}@{TOKEN}",
    "prowl": f"prowl://{PROWL_KEY}",
    "telegram": f"tgram://123456789:{TOKEN}/987654321",
    "discord": f"discord://1234567890123/{TOKEN}",
    "gotify": f"gotify://127.0.0.1:9/{TOKEN}",
    "mattermost": f"mmost://127.0.0.1:9/{TOKEN}",
    "ifttt": f"ifttt://{TOKEN}@event",
    "opsgenie": f"opsgenie://{TOKEN}",
    "ntfy": f"ntfy://leadkit:{TOKEN}@127.0.0.1:9/topic",
    "apprise-api": f"apprise://127.0.0.1:9/{TOKEN}",
    "json-path": f"json://127.0.0.1:9/{TOKEN}",
    "xml-path": f"xml://127.0.0.1:9/{TOKEN}",
    "form-query": f"form://127.0.0.1:9/hook?token={TOKEN}",
    "mailto-password": f"mailto://leadkit:{TOKEN}@127.0.0.1:9?to=ops@example.com&from=leadkit@example.com",
}
CANARIES = (TOKEN, USER_KEY, PROWL_KEY)


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LEADKIT_ALERT_URLS", "LEADKIT_ALERT_WINDOW", "LEADKIT_ALERTS_OFF", "LEADKIT_DASHBOARD_URL"):
        monkeypatch.delenv(name, raising=False)


def test_env_template_lists_every_setting_alert_channels_included() -> None:
    template = env_template()
    for name in ("LEADKIT_ALERT_URLS", "LEADKIT_ALERT_WINDOW", "LEADKIT_DASHBOARD_URL", "LEADKIT_DASHBOARD_AUTH"):
        assert f"# {name}=" in template, name
    assert "# APIFY_TOKEN=" in template


def test_a_failing_client_alerts_through_a_channel_set_only_in_the_workspace_env_from_any_folder(
    workspace: Workspace, hook: Webhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch)
    with (workspace.home / ".env").open("a", encoding="utf-8") as env:
        env.write(f"\nLEADKIT_ALERT_URLS={hook.url()}\nLEADKIT_DASHBOARD_URL=https://leadkit.example.com/dash\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./.env here: only the workspace's .env (found through LEADKIT_HOME) has it
    run, sent = after(workspace, {"Acme-Co": 2, "Globex": "upstream"})
    assert len(hook.posts) == 1 and [a.channel for a in sent] == [channel(hook.url())]
    body = hook.posts[0]["message"]
    assert "Apify answered 502 Bad Gateway" in body  # the message, not the <n>-normalised fingerprint
    assert "hint:" in body and "Dashboard: https://leadkit.example.com/dash/" in body
    # a separate process started in yet another folder reads it too
    env = {**os.environ, "LEADKIT_HOME": str(workspace.home)}
    env.pop("LEADKIT_ALERT_URLS", None)
    done = subprocess.run(
        [sys.executable, "-m", "leadkit.cli", "doctor", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks[f"alerts:{channel(hook.url())}"]["level"] == "ok"


def test_without_a_dashboard_url_no_line_pretends_to_be_a_link(
    alerting: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    after(alerting, {"Globex": "upstream"})
    assert "Dashboard:" not in hook.posts[0]["message"]


def test_canary_tokens_of_every_token_bearing_scheme_appear_nowhere(
    workspace: Workspace, hook: Webhook, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch)
    dead = f"http://127.0.0.1:{free_port()}"  # every service beyond loopback is reached through a dead proxy
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("LEADKIT_ALERT_URLS", " ".join([*SECRET_URLS.values(), hook.url()]))
    caplog.set_level(logging.DEBUG)
    names = {scheme: channel(url) for scheme, url in SECRET_URLS.items()}
    assert len(set(names.values())) == len(names)  # every channel is told apart
    run, sent = after(workspace, {"Acme-Co": 1, "Globex": "upstream"})
    assert {a.channel for a in sent} == {*names.values(), channel(hook.url())}
    assert len(hook.posts) == 1  # the alert really went out
    outputs = [cli(*args)[1] for args in (["alerts"], ["alerts", "--json"], ["doctor", "--json"], ["watch"])]
    outputs.append(cli("alerts", "test", "--json")[1])
    texts = outputs + [caplog.text] + [r.getMessage() for r in caplog.records]
    for alert in workspace.store.list_alerts(limit=1000):
        texts += [alert.subject, alert.body, alert.channel, alert.error or "", alert.key]
    for path in workspace.home.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    for canary in CANARIES:
        assert not [t for t in texts if canary in t], canary
    for scheme, name in names.items():
        assert name in outputs[1], scheme  # each channel is listed, by its safe name


def test_two_processes_finding_the_same_failure_send_one_message(
    alerting: Workspace, hook: Webhook, tmp_path: Path
) -> None:
    """Process A claims the notice, then process B (a real second process) finds the same failure before A has
    recorded its alert: B sends nothing. Without a claim both pass the window check and both send."""
    run, records = batch(alerting, {"Acme-Co": 3, "Globex": "upstream"})
    settings = alert_settings()
    notice = Notice("batch_failed", records[0].failure.fingerprint if records[0].failure else "x", ["  x"])
    mine = fresh(alerting.store, [notice], settings)
    assert mine == [notice]
    code = (
        "from leadkit.workspace import Workspace\n"
        "from leadkit.alerts import after_batch\n"
        "ws = Workspace.open()\n"
        f"run = ws.store.get_run({run.run_id!r})\n"
        "print(len(after_batch(ws, run, ws.store.list_client_runs(run_id=run.run_id))))\n"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "0" and hook.posts == []
    send(alerting.store, "leadkit: the failure", mine, settings)
    assert len(hook.posts) == 1


def test_one_upstream_problem_over_three_runs_is_one_group_and_one_alert(
    alerting: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADKIT_ALERT_WINDOW", "1d")
    apify_ids = ["HG7ML7M8z78YcAPEB", "kQ2pW9xRt4ZbN1cVm", "Zx8Cv7Bn6Mq5Wl4Kj"]
    fingerprints = set()
    for number, apify_id in enumerate(apify_ids):
        records = alerting.records
        run = records.start_run()
        opened = records.open_many(RunId.parse(run.run_id), ["Globex"], Source.BATCH)[0]
        exc = UpstreamError(
            f"Apify run {apify_id} of harvestapi~linkedin-profile-posts ended FAILED; its dataset "
            f"ds{apify_id[::-1]} was not read (127.0.0.1:{40000 + number}, at 2026-12-0{number + 1}T10:00:00Z)"
        )
        failure = failure_from(exc, run_id=run.run_id, client_id="Globex", stage="harvest")
        fingerprints.add(failure.fingerprint)
        records.update(opened, status=ClientRunStatus.FAILED, failure=failure, reason=failure.message)
        run = records.finish_run(run)
        after_batch(alerting, run, alerting.store.list_client_runs(run_id=run.run_id))
    assert len(fingerprints) == 1, fingerprints
    assert len(hook.posts) == 1
    assert len({a.key for a in alerting.store.list_alerts(kind="batch_failed")}) == 1


def test_watch_is_quiet_after_a_batch_that_covered_every_stream(
    workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_env(monkeypatch)
    monkeypatch.setenv("LEADKIT_ALERT_URLS", hook.url())
    store = workspace.store
    clients = [c for c in store.list_clients() if c.active]
    for client in clients[len(clients) // 2 :]:
        client.stream = 2
        store.save_client(client)
    assert {c.stream for c in store.list_clients() if c.active} == {1, 2}
    run, _ = batch(workspace, {c.client_id: 2 for c in clients})  # a plain batch: one Run, stream 1
    assert run.stream == 1
    code, report = cli_json("watch")
    assert code == 0 and report["silent_streams"] == [], report
    assert hook.posts == []


def test_subject_names_the_streams_a_run_covered(alerting: Workspace, hook: Webhook) -> None:
    store = alerting.store
    globex = store.get_client("Globex")
    globex.stream = 2
    store.save_client(globex)
    after(alerting, {"Acme-Co": "upstream", "Globex": "upstream"})
    assert hook.posts[0]["title"].endswith("(streams 1, 2)")
