"""The alert rules through real channels: one alert per problem per window, one resolved note, nothing for a
failure a retry recovered, triage (IGNORED quiet, FIXED regression), credentials, sweeps, leases, delivery
failures recorded and retried, and the CLI (`alerts`, `alerts test`, `failures set`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadkit.alerts import after_auth_checks, after_batch, sweep_alerts
from leadkit.models import AuthCheck, utcnow
from leadkit.workspace import Workspace

from . import cli, cli_json
from .conftest import after
from .receivers import Mailbox, Webhook, channel, forget_alerts, free_port


def test_failure_alerts_once_per_window_then_one_resolved_note(
    alerting: Workspace, mailbox: Mailbox, hook: Webhook
) -> None:
    run1, sent = after(alerting, {"Acme-Co": 12, "Globex": "config", "Initech": 3})
    assert len(hook.posts) == 1 and len(mailbox.messages) == 1
    title, text = hook.posts[0]["title"], hook.posts[0]["message"]
    assert title == f"leadkit: 1 of 3 clients failed in run {run1.run_id} (stream 1)"
    assert text.splitlines()[0] == title
    assert "[config] 1 client(s): Globex" in text and "hint:" in text
    assert f"leadkit show {run1.run_id}" in text and "Acme-Co" not in text
    assert mailbox.messages[0]["Subject"] == title and mailbox.messages[0].get_content_type() == "text/plain"
    assert {(a.kind, a.channel, a.delivered) for a in sent} == {
        ("batch_failed", channel(mailbox.url()), True),
        ("batch_failed", channel(hook.url()), True),
    }

    after(alerting, {"Acme-Co": 4, "Globex": "config"})  # the same failure again, inside the window
    assert len(hook.posts) == 1 and len(mailbox.messages) == 1

    run3, _ = after(alerting, {"Acme-Co": 1, "Globex": 7})
    assert len(hook.posts) == 2
    resolved = hook.posts[1]
    assert resolved["title"] == f"Resolved: Globex completed in run {run3.run_id}"
    assert resolved["message"].startswith("Resolved: Globex")

    after(alerting, {"Acme-Co": 1, "Globex": 2})  # nothing left to resolve, nothing failed
    assert len(hook.posts) == 2 and len(mailbox.messages) == 2

    code, rows = cli_json("alerts")
    assert code == 0 and [r["kind"] for r in rows] == ["resolved", "resolved", "batch_failed", "batch_failed"]
    assert set(rows[0]) == {"at", "kind", "key", "clients", "channel", "delivered", "error"}
    assert rows[0]["clients"] == ["Globex"] and rows[0]["delivered"] is True


def test_failure_after_resolution_alerts_again(alerting: Workspace, hook: Webhook) -> None:
    after(alerting, {"Globex": "config"})
    after(alerting, {"Globex": 3})
    after(alerting, {"Globex": "config"})
    assert [p["title"].split(":")[0] for p in hook.posts] == ["leadkit", "Resolved", "leadkit"]


def test_failure_a_retry_recovered_in_the_same_batch_sends_nothing(alerting: Workspace, hook: Webhook) -> None:
    _, sent = after(alerting, {"Acme-Co": 5, "Globex": 2}, retried=("Globex",))
    assert sent == [] and hook.posts == []
    assert alerting.store.list_failures()  # the first attempt's failure is recorded, just not alerted


def test_groups_by_fingerprint_in_one_message(alerting: Workspace, hook: Webhook) -> None:
    after(alerting, {"Acme-Co": "upstream", "Globex": "config", "Initech": "config"})
    assert len(hook.posts) == 1
    text = hook.posts[0]["message"]
    assert "[config] 2 client(s): Globex, Initech" in text and "[upstream] 1 client(s): Acme-Co" in text


def test_window_and_kinds_are_settings(alerting: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADKIT_ALERTS_OFF", "batch_failed")
    after(alerting, {"Globex": "config"})
    assert hook.posts == []
    monkeypatch.delenv("LEADKIT_ALERTS_OFF")
    monkeypatch.setenv("LEADKIT_ALERT_WINDOW", "1s")
    after(alerting, {"Globex": "config"})
    store = alerting.store
    old = store.list_alerts(kind="batch_failed")
    for a in old:  # the window has passed for these
        a.at = a.at - timedelta(seconds=5)
    forget_alerts(store)
    store.add_alerts(old)
    after(alerting, {"Globex": "config"})
    assert len(hook.posts) == 2
    monkeypatch.setenv("LEADKIT_ALERTS_OFF", "bogus")
    with pytest.raises(
        Exception, match="LEADKIT_ALERTS_OFF=.bogus.: Value error, unknown alert kind.s. bogus; accepted: batch_failed"
    ):
        cli("alerts", "test")


def test_ignored_group_stays_quiet_fixed_group_alerts_as_regression(alerting: Workspace, hook: Webhook) -> None:
    after(alerting, {"Globex": "config"})
    assert len(hook.posts) == 1
    fingerprint = alerting.store.list_failures()[0].fingerprint

    code, out = cli("failures", "set", "config:", "--status", "IGNORED", "--note", "route moved, ticket 12")
    assert code == 0 and "IGNORED" in out
    after(alerting, {"Globex": 3})  # resolved note for the first alert
    assert hook.posts[-1]["title"].startswith("Resolved:")
    count = len(hook.posts)
    after(alerting, {"Globex": "config"})
    assert len(hook.posts) == count  # IGNORED: quiet
    after(alerting, {"Globex": "config", "Initech": "config"})
    assert len(hook.posts) == count + 1 and "Initech" in hook.posts[-1]["message"]  # a new client: it changed

    code, groups = cli_json("failures")
    group = next(g for g in groups if g["fingerprint"] == fingerprint)
    assert (group["status"], group["note"], group["resolved"]) == ("IGNORED", "route moved, ticket 12", False)

    code, _ = cli("failures", "set", fingerprint[:12], "--status", "fixed")
    assert code == 0
    after(alerting, {"Globex": "config", "Initech": "config"})  # inside the window, but it was marked FIXED
    assert len(hook.posts) == count + 2
    assert "REGRESSION (was marked FIXED)" in hook.posts[-1]["message"]
    after(alerting, {"Globex": "config", "Initech": "config"})
    assert len(hook.posts) == count + 2  # alerted once as a regression, then the window holds


def test_failures_set_refuses_unknown_ambiguous_and_bad_status(alerting: Workspace) -> None:
    after(alerting, {"Acme-Co": "upstream", "Globex": "config"})
    for args, words in (
        (["nothing-like-it", "--status", "FIXED"], "no failure group"),
        (["", "--status", "FIXED"], "empty"),
        (["config:", "--status", "DONE"], "NEW, INVESTIGATING, FIXED, IGNORED"),
    ):
        with pytest.raises(Exception, match=words):
            cli("failures", "set", *args)
    with pytest.raises(Exception, match="2 failure groups"):
        after(alerting, {"Initech": "upstream"})
        alerting.store.add_failure(alerting.store.list_failures()[0].__class__("upstream", "upstream: other", "m", "h"))
        cli("failures", "set", "upstream", "--status", "FIXED")
    assert alerting.store.list_triage() == []


def test_credential_bad_once_then_good_again(alerting: Workspace, hook: Webhook) -> None:
    bad = AuthCheck("apify", False, "auth", 401, 12.0, "Create a new Apify token.", detail="token rejected")
    after_auth_checks(alerting.store, [bad, AuthCheck("airtable", True, None, 200, 5.0, "")])
    after_auth_checks(alerting.store, [bad])
    assert [p["title"] for p in hook.posts] == ["leadkit: credential check failed: apify"]
    assert "Create a new Apify token." in hook.posts[0]["message"]
    after_auth_checks(alerting.store, [AuthCheck("apify", True, None, 200, 9.0, "")])
    after_auth_checks(alerting.store, [AuthCheck("apify", True, None, 200, 9.0, "")])
    assert [p["title"] for p in hook.posts][1:] == ["Resolved: credential apify is good again"]


def test_swept_records_and_lease_takeover(alerting: Workspace, hook: Webhook) -> None:
    records = alerting.records
    run = records.start_run()
    from leadkit.runids import RunId

    records.open_many(RunId.parse(run.run_id), ["Acme-Co", "Globex"], "batch")
    swept = records.sweep(older_than=timedelta(0))
    sweep_alerts(alerting, swept)
    sweep_alerts(alerting, swept)
    assert len(hook.posts) == 1 and hook.posts[0]["title"].startswith("leadkit: 2 client run(s) swept Stale on ")
    assert "Acme-Co in run" in hook.posts[0]["message"] and "no heartbeat" in hook.posts[0]["message"]
    final = alerting.store.list_client_runs(run_id=run.run_id)
    after_batch(
        alerting, run, final, takeover_note="took over the lease of stream 1 from h process 9", lease="batch-stream-1"
    )
    assert hook.posts[-1]["title"] == "leadkit: lease batch-stream-1 taken over"
    assert "took over the lease of stream 1" in hook.posts[-1]["message"]


def test_unreachable_channel_is_recorded_retried_and_shown_by_doctor(
    workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/alerts"
    monkeypatch.setenv("LEADKIT_ALERT_URLS", f"{hook.url()} {dead}")
    hook.failing = True
    run, sent = after(workspace, {"Acme-Co": 3, "Globex": "config"})  # returns: the batch is not failed
    assert run.clients_failed == 1 and len(sent) == 2
    assert all(not a.delivered and a.error for a in sent)
    code, report = cli_json("doctor")
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert f"alerts:{channel(hook.url())}" in failed
    assert "1 message(s) wait for the next alert" in failed[f"alerts:{channel(hook.url())}"]["detail"]

    hook.failing = False
    after_auth_checks(workspace.store, [AuthCheck("apify", False, "auth", 401, 1.0, "new token")])
    titles = hook.titles()
    assert (
        titles[0].startswith("leadkit: 1 of 2 clients failed")
        and titles[1] == "leadkit: credential check failed: apify"
    )
    code, report = cli_json("doctor")
    names = {c["name"]: c["ok"] for c in report["checks"]}
    assert names[f"alerts:{channel(hook.url())}"] is True
    assert names["alerts:" + channel(dead)] is False


def test_alerts_test_reports_each_channel(
    workspace: Workspace, hook: Webhook, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADKIT_ALERT_URLS", f"{hook.url()},{mailbox.url()}")
    code, rows = cli_json("alerts", "test")
    assert code == 0 and [r["delivered"] for r in rows] == [True, True]
    assert hook.titles() == ["leadkit test alert: this channel works"] and len(mailbox.messages) == 1
    dead = f"json://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LEADKIT_ALERT_URLS", f"{hook.url()} {dead}/x")
    code, out = cli("alerts", "test")
    assert code == 2
    assert f"ok    {channel(hook.url())}" in out and f"FAIL  {channel(dead + '/x')}" in out
    monkeypatch.delenv("LEADKIT_ALERT_URLS")
    with pytest.raises(Exception, match="no alert channel is configured"):
        cli("alerts", "test")


def test_no_channel_records_the_alert_unsent(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADKIT_ALERT_URLS", raising=False)
    _, sent = after(workspace, {"Globex": "config"})
    assert [(a.channel, a.delivered, a.error) for a in sent] == [("", False, None)]
    code, out = cli("alerts")
    assert "(no channel)" in out and "batch_failed" in out


def test_texts_are_plain_and_name_clients_by_id_not_by_their_markup(
    alerting: Workspace, hook: Webhook, mailbox: Mailbox
) -> None:
    from leadkit.models import Client

    alerting.store.save_client(Client("Evil-Co", '<img src=x onerror="alert(1)">'))
    after(alerting, {"Evil-Co": "config"})
    message = hook.posts[0]["message"]
    assert "Evil-Co" in message and "<img" not in message and "onerror" not in message
    assert hook.posts[0]["type"] == "info" and mailbox.messages[0].get_content_type() == "text/plain"
    assert len(message.splitlines()) < 15  # short


def test_alert_rows_never_break_a_batch_on_a_store_without_alerts(workspace: Workspace) -> None:
    class Bare:
        url = "bare://"

    class FakeWs:
        store = Bare()

    assert after_batch(FakeWs(), None, []) == []  # type: ignore[arg-type]


def test_lease_lost_while_the_batch_runs(alerting: Workspace, hook: Webhook) -> None:
    import time

    from leadkit.batch import BatchLease
    from leadkit.models import Lease

    lease = BatchLease(alerting, 1, ttl_s=0.3)
    lease.acquire("261203-120000")
    mine = alerting.store.get_lease("batch-stream-1")
    now = utcnow()
    other = Lease("batch-stream-1", "other-host", 4242, "261203-120500", now, now, 120.0)
    assert alerting.store.swap_lease("batch-stream-1", mine, other)
    deadline = time.monotonic() + 5
    while not hook.posts and time.monotonic() < deadline:
        time.sleep(0.05)
    lease.release()
    assert [p["title"] for p in hook.posts] == ["leadkit: lease batch-stream-1 lost"]
    assert "now: other-host process 4242 (run 261203-120500)" in hook.posts[0]["message"]
    assert alerting.store.get_lease("batch-stream-1") == other  # the new holder's lease is left alone
