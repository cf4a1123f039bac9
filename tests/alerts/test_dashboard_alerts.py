"""The dashboard's Alerts view in headless Chromium: channel state with the last failed delivery, the history,
triage of a failure group by a logged-in user, and the alert state on the overview."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect

from leadkit.dashboard_server import start_dashboard
from leadkit.models import TriageStatus
from leadkit.workspace import Workspace

from .conftest import after
from .receivers import Webhook, channel, free_port

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)


def watch_errors(page: Page) -> list[str]:
    """Every console error and uncaught page error (with its stack) of `page`, unfiltered."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console error: {msg.text}")

    def on_page_error(exc: Error) -> None:
        errors.append(f"page error: {exc.message}\n{exc.stack or ''}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return errors


def test_alerts_view_channels_history_and_triage(
    page: Page, workspace: Workspace, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"json://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LEADKIT_ALERT_URLS", f"{hook.url()} {dead}/alerts")
    after(workspace, {"Acme-Co": 2, "Globex": "config"})
    workspace.store.save_client(workspace.store.get_client("Initech"))
    errors = watch_errors(page)
    handle = start_dashboard(workspace, port=0, basic_auth="ops:correct-horse", refresh_s=0)
    try:
        page.goto(f"{handle.url}?view=alerts")
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", "correct-horse")
        page.locator("button[type=submit], input[type=submit]").first.click()
        page.goto(f"{handle.url}?view=alerts")
        page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
        channels = page.locator(".lk-alert-channels .tabulator-row")
        expect(channels).to_have_count(2)
        expect(channels.filter(has_text=channel(f"{dead}/alerts"))).to_contain_text("NO")
        expect(channels.filter(has_text=channel(hook.url()))).to_contain_text("yes")
        history = page.locator(".lk-alert-history .tabulator-row")
        expect(history).to_have_count(2)
        expect(history.first).to_contain_text("Globex")
        expect(page.locator(".lk-triage-help")).to_contain_text("Logged in as ops")

        page.locator("input[type=text]").nth(0).fill("config:")
        page.locator("select").first.select_option("IGNORED")
        page.locator("input[type=text]").nth(1).fill("proxy route, ticket 7")
        page.locator("input[type=text]").nth(1).press("Enter")
        page.locator(".lk-triage-set button").click()
        expect(page.locator(".lk-triage-done")).to_contain_text("IGNORED: config:")
        triage = workspace.store.list_triage()
        assert [(t.status, t.note) for t in triage] == [(TriageStatus.IGNORED, "proxy route, ticket 7")]

        page.goto(f"{handle.url}?view=overview")
        expect(page.locator(".lk-numbers")).to_contain_text("Alerts (24h)")
        expect(page.locator(".lk-numbers")).to_contain_text("1 ok, 1 failing")
    finally:
        handle.stop()
    assert errors == []


def test_alerts_recorded_with_no_channel_are_a_red_tile_on_the_overview(
    page: Page, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADKIT_ALERT_URLS", raising=False)
    handle = start_dashboard(workspace, port=0, refresh_s=0)
    errors = watch_errors(page)
    try:
        page.goto(f"{handle.url}?view=overview")
        expect(page.locator(".lk-numbers")).to_contain_text("Alerts (24h)")
        expect(page.locator(".lk-unsent-alerts")).to_be_hidden()  # nothing recorded yet: no tile
        after(workspace, {"Globex": "config"})
        assert [a.channel for a in workspace.store.list_alerts()] == [""]  # recorded, sent nowhere
        page.goto(f"{handle.url}?view=overview")
        tile = page.locator(".lk-unsent-alerts")
        expect(tile).to_be_visible()
        expect(tile).to_contain_text("Alerts sent nowhere in the last 24 h: 1")
        expect(tile).to_contain_text("LEADKIT_ALERT_URLS")
    finally:
        handle.stop()
    assert errors == []
