"""One read for every viewer: the store's calls made by an open dashboard do not grow with the number of tabs.

The store is written once a refresh interval meanwhile (a client saved as it is), so every refresh interval the
views read it again: what is counted is the store's own calls (every public method of the store, wrapped), not what the
dashboard says it did.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from leadkit.dashboard_server import DashboardHandle, start_dashboard

from .conftest import DemoData, watch_errors

pytestmark = pytest.mark.browser
VIEW, TABLE = "runs", ".lk-runs-table"
REFRESH_S = 2.0
WINDOW_S = 10.0


class Calls:
    """Counts every call of the store's public methods."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def wrap(self, name: str, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.counts[name] += 1
            return method(*args, **kwargs)

        return counted

    def take(self) -> Counter[str]:
        with self.lock:
            out, self.counts = self.counts, Counter()
        return out


@pytest.fixture
def counted(demo: DemoData, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DashboardHandle, Calls]]:
    store = demo.ws.store
    calls = Calls()
    for name in dir(store):
        method = getattr(store, name)
        if not name.startswith("_") and callable(method) and name not in ("close", "init"):
            monkeypatch.setattr(store, name, calls.wrap(name, method))
    handle = start_dashboard(demo.ws, port=0, refresh_s=REFRESH_S)
    try:
        yield handle, calls
    finally:
        handle.stop()


def _writer(demo: DemoData, stop: threading.Event) -> None:
    while not stop.wait(REFRESH_S):
        store = demo.ws.store
        store.save_client(store.get_client("Acme-Co"))  # a write that changes no view


def _open(browser: Browser, url: str, errors: list[list[str]]) -> Page:
    page = browser.new_page()
    errors.append(watch_errors(page))
    page.goto(f"{url}?view={VIEW}", timeout=90_000)
    expect(page.locator(f"{TABLE} .tabulator-row").first).to_be_visible(timeout=60_000)
    return page


def test_three_tabs_read_the_store_no_more_than_one(
    browser: Browser, demo: DemoData, counted: tuple[DashboardHandle, Calls]
) -> None:
    handle, calls = counted
    errors: list[list[str]] = []
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(demo, stop), daemon=True)
    writer.start()
    pages: list[Page] = []
    try:
        pages.append(_open(browser, handle.url, errors))
        time.sleep(2)
        calls.take()
        time.sleep(WINDOW_S)
        one = calls.take()
        pages += [_open(browser, handle.url, errors), _open(browser, handle.url, errors)]
        time.sleep(2)
        calls.take()
        time.sleep(WINDOW_S)
        three = calls.take()
    finally:
        stop.set()
        writer.join(5)
        for page in pages:
            page.close()
    reads = lambda c: sum(n for name, n in c.items() if name not in ("get_client", "save_client", "change_version"))  # noqa: E731
    assert reads(one) > 0, one  # the store changed: the open views did read it
    # without the shared reads, three tabs read three times as often
    assert reads(three) <= reads(one) * 1.5 + 3, (dict(one), dict(three))
    assert all(e == [] for e in errors), errors
