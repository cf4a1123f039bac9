"""One read for every viewer, on Airtable: an idle dashboard's requests, as the Airtable sandbox counted them, do
not grow from one open tab to three; and the workspace's usage tally counts them as the dashboard's own
(`dashboard_requests`), apart from the requests a batch or command makes.

A small Airtable workspace on the sandbox (Airtable's 5 requests/s per base): 2 clients, 6 runs. The dashboard
reads it again every `SYNC_S` seconds (LEADKIT_DASHBOARD_SYNC), so each window holds several re-reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr

from leadkit.config import get_settings
from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.models import Client, ClientRunStatus
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.store.airtable import make_api
from leadkit.store.airtable.usage import read_tally, usage_report
from leadkit.store.provision import provision
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from .conftest import watch_errors

pytestmark = pytest.mark.browser
SYNC_S = 4.0
REFRESH_S = 1.0
WINDOW_S = 12.0
RUNS = 6
CLIENTS = ["Acme-Co", "Globex"]
#: The requests of one read of the runs view (its page and its count) that a window's edge may split.
EDGE = 2


@contextmanager
def airtable_board(tmp_path: Path, *, running: bool = False) -> Iterator[tuple[Sandbox, Workspace, DashboardHandle]]:
    """The workspace on a fresh sandbox, served; `running`: its newest run is still Running."""
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
        # provisioning is no dashboard's cost: its tally is kept apart from the workspace's
        provision(make_api(settings.model_copy(update={"leadkit_home": tmp_path / "setup"})), master, "master")
        ws = Workspace.create(home, settings=settings)
        for name in CLIENTS:
            base_id = sandbox.airtable.create_base(f"{name} leads", placeholder)
            provision(make_api(settings.model_copy(update={"leadkit_home": tmp_path / "setup"})), base_id, "client")
            client = Client(client_id=name, name=name, service_level=2, post_access=True, daily_target=20)
            client.base_id = base_id
            ws.store.save_client(client)
        now = datetime.now(UTC).replace(microsecond=0)
        clock = {"t": now}
        records = RunRecordService(ws.store, now=lambda: clock["t"])
        for i in reversed(range(RUNS)):
            clock["t"] = now - timedelta(hours=i)
            run = records.start_run()
            for record in records.open_many(RunId.parse(run.run_id), CLIENTS, "batch"):
                if not (running and i == 0):
                    records.update(record, status=ClientRunStatus.COMPLETED)
            if not (running and i == 0):
                records.finish_run(run)
        handle = start_dashboard(ws, port=0, refresh_s=REFRESH_S)
        try:
            yield sandbox, ws, handle
        finally:
            handle.stop()
            ws.close()


def _open(browser: Browser, url: str, errors: list[list[str]]) -> Page:
    page = browser.new_page()
    errors.append(watch_errors(page))
    page.goto(f"{url}?view=runs", timeout=90_000)
    expect(page.locator(".lk-runs-table .tabulator-row").first).to_be_visible(timeout=60_000)
    return page


def _dashboard_requests(ws: Workspace) -> int:
    report = usage_report(read_tally(ws.home), master_base=ws.store.base_id, plan="team")
    return int(report["dashboard_requests"])


@pytest.fixture
def board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Sandbox, Workspace, DashboardHandle]]:
    monkeypatch.setenv("LEADKIT_DASHBOARD_SYNC", f"{SYNC_S:g}")
    with airtable_board(tmp_path) as served:
        yield served


def test_three_tabs_make_no_more_airtable_requests_than_one(
    browser: Browser, board: tuple[Sandbox, Workspace, DashboardHandle]
) -> None:
    sandbox, ws, handle = board
    errors: list[list[str]] = []
    pages: list[Page] = []

    def window() -> tuple[int, int]:
        """(requests the sandbox counted, requests the tally counted as the dashboard's) over WINDOW_S."""
        tallied = _dashboard_requests(ws)
        sandbox.state.stats.reset()
        time.sleep(WINDOW_S)
        return len(sandbox.stats()["requests"]), _dashboard_requests(ws) - tallied

    try:
        pages.append(_open(browser, handle.url, errors))
        time.sleep(SYNC_S)
        one, one_tallied = window()
        pages += [_open(browser, handle.url, errors), _open(browser, handle.url, errors)]
        time.sleep(SYNC_S)
        three, three_tallied = window()
    finally:
        for page in pages:
            page.close()
    print(
        f"Airtable requests in {WINDOW_S:g} s: 1 tab {one}, 3 tabs {three} (tallied as the dashboard's: {one_tallied}, {three_tallied})"
    )
    assert one > 0  # the open view did read Airtable again within the window (every SYNC_S)
    # without the shared reads, three tabs send three times as many requests
    assert three <= one * 1.5 + 2, (one, three)
    # every request of the idle dashboard is tallied as the dashboard's (the server counts what reached it); the
    # tally counts a request as it is sent and the sandbox as it arrives, so a read in flight at a window's edge
    # (EDGE requests at most) may fall on either side of it
    for tallied, counted in ((one_tallied, one), (three_tallied, three)):
        assert counted - EDGE <= tallied <= counted + EDGE, (tallied, counted)
    # a request made outside the dashboard (a command's read) is not the dashboard's
    before = _dashboard_requests(ws)
    ws.store.list_runs(limit=1)
    assert _dashboard_requests(ws) == before
    assert all(e == [] for e in errors), errors


def test_a_run_that_ends_on_this_host_shows_within_one_refresh_while_tabs_are_open(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the default sync interval (900 s) a run finished on this host reaches two open tabs by the next
    refresh: the write is in the workspace's change journal, so the shared read is made again at once."""
    monkeypatch.delenv("LEADKIT_DASHBOARD_SYNC", raising=False)
    with airtable_board(tmp_path, running=True) as (_, ws, handle):
        errors: list[list[str]] = []
        pages = [_open(browser, handle.url, errors), _open(browser, handle.url, errors)]
        try:
            newest = ws.store.list_runs(limit=1)[0]
            for page in pages:
                expect(page.locator(".lk-runs-table .tabulator-row").first).to_contain_text("Running")
            records = RunRecordService(ws.store)
            for record in ws.store.list_client_runs(run_id=newest.run_id):
                records.update(record, status=ClientRunStatus.COMPLETED)
            records.finish_run(newest)
            ended = time.monotonic()
            for page in pages:
                first = page.locator(".lk-runs-table .tabulator-row").first
                expect(first).to_contain_text("Completed", timeout=30_000)
            waited = time.monotonic() - ended
            print(f"the ended run showed in both tabs {waited:.1f} s after it ended (refresh {REFRESH_S:g} s)")
            assert waited < 10 * REFRESH_S  # one refresh and one read, not the 900 s sync interval
        finally:
            for page in pages:
                page.close()
        assert all(e == [] for e in errors), errors
