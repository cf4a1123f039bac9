"""One read for every viewer, on Airtable: an idle dashboard's requests, as the Airtable sandbox counted them, do
not grow from one open tab to three; and the workspace's usage tally counts them as the dashboard's own
(`dashboard_requests`), apart from the requests a batch or command makes.

A small Airtable workspace on the sandbox (Airtable's 5 requests/s per base): 2 clients, 6 runs. The dashboard
reads it again every `SYNC_S` seconds (LEADKIT_DASHBOARD_SYNC), so each window holds several re-reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr

from leadkit.config import get_settings
from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.models import Client, ClientRunStatus, NewLead
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


#: The views a wall screen keeps open (one tab each) and the table whose rows show each.
IDLE_TABS = [("overview", ".lk-latest-runs"), ("runs", ".lk-runs-table"), ("health", ".lk-health-table")]


def test_an_idle_dashboard_asks_each_table_it_shows_once_a_sync_period(
    browser: Browser, board: tuple[Sandbox, Workspace, DashboardHandle]
) -> None:
    """Three idle tabs (Overview, Runs, Client health), nothing written: over whole sync periods the sandbox
    counts at most one request per table the three views read, per period (the mirror's incremental reads), and
    none to a client's lead base. Reading the views again every period made 56 requests in three periods here."""
    from dashboards.app import HealthView, OverviewView, RunsView

    sandbox, _, handle = board
    errors: list[list[str]] = []
    pages: list[Page] = []
    try:
        for view, table in IDLE_TABS:
            page = browser.new_page()
            errors.append(watch_errors(page))
            page.goto(f"{handle.url}?view={view}", timeout=90_000)
            expect(page.locator(f"{table} .tabulator-row").first).to_be_visible(timeout=60_000)
            pages.append(page)
        periods = 3
        time.sleep(SYNC_S - time.time() % SYNC_S + SYNC_S / 2)  # mid-period: the window holds whole periods
        sandbox.state.stats.reset()
        time.sleep(periods * SYNC_S)
        requests = sandbox.stats()["requests"]
    finally:
        for page in pages:
            page.close()
    tables = set(OverviewView.TABLES) | set(RunsView.TABLES) | set(HealthView.TABLES)
    asked = [r["path"].split("/")[3] for r in requests]
    print(f"idle, 3 tabs, {periods} sync periods: {len(requests)} requests, {sorted(Counter(asked).items())}")
    assert all(r["method"] == "GET" for r in requests), requests
    assert not [p for p in asked if "Leads" in p], asked  # no lead base is read while nothing is written
    assert len(requests) <= len(tables) * periods + EDGE, (len(requests), asked)
    assert all(e == [] for e in errors), errors


def test_leads_imported_on_this_host_show_in_client_health_within_one_refresh(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the default sync interval (900 s), leads imported into a client's base on this host reach an open
    Client health tab by the next refresh: the base's write is in the change journal, so the mirror reads that
    client's leads (and nothing else's) at once."""
    monkeypatch.delenv("LEADKIT_DASHBOARD_SYNC", raising=False)
    with airtable_board(tmp_path) as (_, ws, handle):
        errors: list[list[str]] = []
        page = browser.new_page()
        errors.append(watch_errors(page))
        try:
            page.goto(f"{handle.url}?view=health", timeout=90_000)
            row = page.locator(".lk-health-table .tabulator-row", has_text="Globex").first
            leads = row.locator(".tabulator-cell[tabulator-field='Leads by status']")
            expect(leads).to_have_text("", timeout=60_000)  # no lead yet
            globex = ws.store.get_client("Globex")
            ws.store.lead_base(globex).import_leads(
                [NewLead(f"https://www.linkedin.com/in/globex-lead-{n}/", f"Lead {n}") for n in range(4)]
            )
            written = time.monotonic()
            expect(leads).to_have_text("(blank) 4", timeout=30_000)
            waited = time.monotonic() - written
            print(f"the imported leads showed {waited:.1f} s after they were written (refresh {REFRESH_S:g} s)")
            assert waited < 10 * REFRESH_S  # one refresh and one read, not the 900 s sync interval
        finally:
            page.close()
        assert all(e == [] for e in errors), errors
