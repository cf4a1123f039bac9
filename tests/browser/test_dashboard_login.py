"""The dashboard's login, in a real Chromium: a page asked for without a login goes to the form, and the form
returns to that page (its query kept), not to the overview."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from leadkit.dashboard_server import start_dashboard
from leadkit.workspace import Workspace

pytestmark = pytest.mark.browser


def test_login_form_returns_to_the_page_asked_for(page: Page, workspace: Workspace) -> None:
    handle = start_dashboard(workspace, port=0, basic_auth="ops:correct-horse", refresh_s=0)
    try:
        page.goto(f"{handle.url}?view=alerts")
        expect(page.locator("input[name=username]")).to_be_visible()
        assert "/login" in page.url
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", "correct-horse")
        page.locator("button[type=submit]").click()
        page.wait_for_url("**/?view=alerts", timeout=15_000)
        page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
        expect(page.locator(".lk-alert-channels")).to_be_visible(timeout=15_000)
    finally:
        handle.stop()
