"""A slow store read in one session's refresh freezes no other session: views read in a worker thread.

The store's auth-check read is made to block (on the server, inside the dashboard's own process) the first time
it is called after the test arms it: session A's periodic refresh of the Auth checks view walks into it. While
that read is held, session B loads the Runs view in another page. Had the refresh read on the server's event
loop, the loop would be stuck in A's read and B would get no page at all; the test would time out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.models import AuthCheck

from .conftest import DemoData, watch_errors

pytestmark = pytest.mark.browser


class Gate:
    """Wraps a store method: once armed, the next call blocks until released (at most `hold_s`)."""

    def __init__(self, method: Any, hold_s: float = 60.0) -> None:
        self.method = method
        self.hold_s = hold_s
        self.armed = threading.Event()
        self.entered = threading.Event()
        self.left = threading.Event()
        self.release = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed.is_set() and not self.entered.is_set():
            self.entered.set()
            try:
                self.release.wait(self.hold_s)
                return self.method(*args, **kwargs)
            finally:
                self.left.set()
        return self.method(*args, **kwargs)


@pytest.fixture
def gated(demo: DemoData, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DashboardHandle, Gate]]:
    store = demo.ws.store
    gate = Gate(store.list_auth_checks)
    monkeypatch.setattr(store, "list_auth_checks", gate)
    handle = start_dashboard(demo.ws, port=0, refresh_s=1.0)
    try:
        yield handle, gate
    finally:
        gate.release.set()
        handle.stop()


def test_a_slow_read_in_one_sessions_refresh_does_not_freeze_another_session(
    page: Page, gated: tuple[DashboardHandle, Gate], demo: DemoData
) -> None:
    handle, gate = gated
    errors = watch_errors(page)
    page.goto(f"{handle.url}?view=auth")
    expect(page.locator(".lk-auth-history .tabulator-row").first).to_be_visible(timeout=30_000)

    gate.armed.set()  # session A's next periodic refresh (every second) blocks in the auth-check read
    # the store changes, so that refresh reads it (an unchanged store is served from the shared read)
    demo.ws.store.add_auth_checks([AuthCheck("airtable", True, None, 200, 11.0, "The credential works.")])
    assert gate.entered.wait(15), "session A's periodic refresh never read the auth checks"

    other = page.context.new_page()
    errors_b = watch_errors(other)
    try:
        other.goto(f"{handle.url}?view=runs", timeout=15_000)
        expect(other.locator(".lk-runs-table .tabulator-row").first).to_be_visible(timeout=15_000)
        # B was served and drawn while A's read was still held
        assert not gate.left.is_set(), "A's slow read ended before B was shown: the test proved nothing"
    finally:
        gate.release.set()
        other.close()
    assert gate.left.wait(15)
    # A's refresh finishes after the release and its view keeps working
    expect(page.locator(".lk-auth-history .tabulator-row").first).to_be_visible()
    page.get_by_role("button", name="Runs", exact=True).click()
    expect(page.locator(".lk-runs-table .tabulator-row").first).to_be_visible(timeout=15_000)
    assert errors == [] and errors_b == [], f"browser errors: {errors} {errors_b}"
