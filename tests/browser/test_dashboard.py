"""The dashboard as a person sees it, in headless Chromium: each view, paging, filters, the drill-down, the
rendered notebook, the periodic refresh, escaping of record values, no secret on any page, basic auth.

Expected numbers are read from the store at assertion time, so the tests that add records (refresh, re-running
the auth checks) do not depend on running last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from leadkit.dashboard_server import DashboardHandle, parse_basic_auth, start_dashboard
from leadkit.errors import DataError
from leadkit.models import ClientRunStatus
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.store.base import RunFilter

from .conftest import AUTH_HINT, CANARY_AIRTABLE, CANARY_APIFY, NOTEBOOK_MARKER, REFRESH_S, DemoData, watch_errors

pytestmark = pytest.mark.browser
PAGE = 25  # runs per page in the runs view
expect.set_options(timeout=15_000)


@pytest.fixture(autouse=True)
def console_errors(page: Page) -> Iterator[list[str]]:
    """Every browser console error or uncaught page error fails the test (no error is filtered)."""
    errors = watch_errors(page)
    yield errors
    assert errors == [], f"browser console errors: {errors}"


def open_view(page: Page, dashboard: DashboardHandle, query: str) -> None:
    page.goto(f"{dashboard.url}?{query}")
    # the document arrives over the websocket: once Bokeh has it, the session is live
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")


def shot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


def rows(page: Page, css_class: str) -> Any:
    return page.locator(f".{css_class} .tabulator-row")


def assert_markup_is_text(page: Page) -> None:
    assert page.locator(".pwned").count() == 0
    assert page.title() != "pwned"


# ------------------------------------------------------------------------------------------------ views
def test_overview(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    open_view(page, dashboard, "view=overview")
    store = demo.ws.store
    last_day = store.count_runs(RunFilter(since=store.list_runs(limit=1)[0].started_at - timedelta(hours=23)))
    numbers = page.locator(".lk-numbers")
    expect(numbers).to_contain_text("Runs, last 24 h")
    expect(numbers).to_contain_text("Runs, last 7 days")
    expect(numbers).to_contain_text("Client success rate (7 days)")
    assert last_day >= 4
    expect(rows(page, "lk-latest-runs")).to_have_count(10)
    expect(rows(page, "lk-latest-runs").first).to_contain_text(demo.latest)
    failing = rows(page, "lk-failing-clients")
    expect(failing).to_have_count(1)
    expect(failing.first).to_contain_text("Umbrella-Corp")
    expect(failing.first).to_contain_text(AUTH_HINT)
    expect(failing.first).to_contain_text('<b class="pwned">boom</b>')
    expect(rows(page, "lk-overview-auth").filter(has_text="apify")).to_contain_text("FAILED")
    expect(rows(page, "lk-stats").filter(has_text="created")).to_have_count(1)
    expect(page.locator(".bk-Canvas, canvas").first).to_be_visible()
    assert_markup_is_text(page)
    shot(page, tmp_path, "overview")


def test_runs_paging_survives_reload(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    total = demo.ws.store.count_runs()
    pages = math.ceil(total / PAGE)
    assert pages >= 3
    open_view(page, dashboard, "view=runs")
    table = rows(page, "lk-runs-table")
    expect(table).to_have_count(PAGE)
    expect(table.first).to_contain_text(demo.ws.store.list_runs(limit=1)[0].run_id)
    expect(page.locator(".lk-page-info")).to_contain_text(f"Page 1 of {pages}")
    expect(page.locator(".lk-page-info")).to_contain_text(f"{total} runs")
    page.get_by_role("button", name="Next ›").click()
    expect(page.locator(".lk-page-info")).to_contain_text(f"Page 2 of {pages}")
    expect(table.first).to_contain_text(demo.ws.store.list_runs(limit=1, offset=PAGE)[0].run_id)
    expect(table).to_have_count(PAGE)
    expect(page).to_have_url(re.compile(r"page=2"))
    shot(page, tmp_path, "runs-page-2")
    page.reload()
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
    expect(page.locator(".lk-page-info")).to_contain_text(f"Page 2 of {pages}")
    expect(table.first).to_contain_text(demo.ws.store.list_runs(limit=1, offset=PAGE)[0].run_id)
    # the last page holds the rest; past the end shows the last page
    open_view(page, dashboard, "view=runs&page=99")
    expect(page.locator(".lk-page-info")).to_contain_text(f"Page {pages} of {pages}")
    expect(table).to_have_count(total - PAGE * (pages - 1))
    expect(page.get_by_role("button", name="Next ›")).to_be_disabled()
    page.get_by_role("button", name="‹ Previous").click()
    expect(table).to_have_count(PAGE)


def test_runs_filters(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    store = demo.ws.store
    open_view(page, dashboard, "view=runs")
    expect(rows(page, "lk-runs-table")).to_have_count(PAGE)
    page.locator("select").nth(0).select_option("Completed with Errors")
    with_errors = store.count_runs(RunFilter(status="Completed with Errors"))
    assert 7 <= with_errors < PAGE
    expect(rows(page, "lk-runs-table")).to_have_count(with_errors)
    expect(page.locator(".lk-page-info")).to_contain_text(f"{with_errors} runs")
    expect(page).to_have_url(re.compile(r"status=Completed"))
    shot(page, tmp_path, "runs-filtered")
    # a client that was never run: no rows, and the page says so
    page.locator("select").nth(1).select_option("Hooli")
    expect(page.locator(".lk-page-info")).to_contain_text("0 runs")
    expect(rows(page, "lk-runs-table")).to_have_count(0)
    # the date filter, from the URL (what a bookmark or a reload gives)
    day = store.list_runs(limit=1)[0].started_at.astimezone(UTC).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    expected = store.count_runs(RunFilter(since=midnight, until=midnight + timedelta(days=1)))
    open_view(page, dashboard, f"view=runs&since={day.isoformat()}&until={day.isoformat()}")
    expect(page.locator(".lk-page-info")).to_contain_text(f"{expected} runs")
    expect(rows(page, "lk-runs-table")).to_have_count(expected)
    open_view(page, dashboard, "view=runs&since=not-a-date")
    expect(page.locator(".lk-error")).to_contain_text("'not-a-date' is not a date; use YYYY-MM-DD")


def test_drilldown_from_a_run_row(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    open_view(page, dashboard, "view=runs&status=Completed+with+Errors")
    table = rows(page, "lk-runs-table")
    target = demo.ws.store.list_runs(RunFilter(status="Completed with Errors"), limit=1)[0].run_id
    expect(table.first).to_contain_text(target)
    table.first.locator(".tabulator-cell[tabulator-field='Run ID']").click()
    expect(page).to_have_url(re.compile(rf"run={target}"))
    expect(page.locator(".lk-run-summary")).to_contain_text(target)
    clients = rows(page, "lk-run-clients")
    # a run with a failure opens on its failed clients; "All clients" shows the rest
    expect(clients).to_have_count(1)
    expect(clients.first).to_contain_text("Failed")
    page.get_by_role("button", name="All clients").click()
    expect(clients).to_have_count(4)
    failed = clients.filter(has_text="Failed")
    expect(failed).to_have_count(1)
    if target == demo.latest:
        expect(failed).to_contain_text(AUTH_HINT)
        expect(rows(page, "lk-run-events").filter(has_text="refused")).to_contain_text('<b class="pwned">')
    else:
        expect(failed).to_contain_text("Globex")
    expect(rows(page, "lk-run-events").first).to_contain_text("opened by batch")
    assert_markup_is_text(page)
    shot(page, tmp_path, "run-drilldown")


def test_drilldown_renders_the_executed_notebook(
    page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path
) -> None:
    open_view(page, dashboard, f"view=run&run={demo.notebook_run}")
    expect(rows(page, "lk-run-clients")).to_have_count(4)
    frame_el = page.locator("iframe.lk-notebook")
    expect(frame_el).to_have_attribute("sandbox", "")
    notebook = page.frame_locator("iframe.lk-notebook")
    expect(notebook.locator("body")).to_contain_text(NOTEBOOK_MARKER)
    expect(notebook.locator("body")).to_contain_text("Client workflow: Acme-Co")
    expect(notebook.locator("body")).to_contain_text('<b class="pwned">boom</b>')
    assert notebook.locator(".pwned").count() == 0
    frame_el.scroll_into_view_if_needed()
    shot(page, tmp_path, "run-notebook")
    # an unknown run says it does not exist (and nothing about a running run), as text
    open_view(page, dashboard, "view=run&run=250101-000000")
    expect(page.locator(".lk-hint")).to_contain_text("Run 250101-000000 does not exist in this workspace")
    expect(page.get_by_text("the run is running")).to_have_count(0)


def test_failures_grouped_with_unresolved_filter(
    page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path
) -> None:
    open_view(page, dashboard, "view=failures")
    table = rows(page, "lk-failures-table")
    expect(table).to_have_count(2)
    globex = table.filter(has_text="Globex")
    expect(globex).to_contain_text(str(len(demo.failed_globex_runs)))
    expect(globex).to_contain_text("upstream")
    shot(page, tmp_path, "failures")
    expect(page.get_by_text("Not yet resolved only")).to_be_visible()
    page.locator("input[type=checkbox]").check()
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text("Umbrella-Corp")
    expect(table.first).to_contain_text(AUTH_HINT)
    expect(page).to_have_url(re.compile(r"unresolved=true"))
    assert_markup_is_text(page)


def test_auth_checks_and_rerun(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    open_view(page, dashboard, "view=auth")
    latest = rows(page, "lk-auth-latest")
    expect(latest).to_have_count(2)
    expect(latest.filter(has_text="apify")).to_contain_text("FAILED")
    expect(latest.filter(has_text="apify")).to_contain_text(AUTH_HINT)
    expect(latest.filter(has_text="airtable")).to_contain_text("OK")
    colour = latest.filter(has_text="apify").locator(".tabulator-cell[tabulator-field='Result']")
    expect(colour).to_have_css("background-color", "rgb(248, 215, 218)")
    before = len(demo.ws.store.list_auth_checks())
    shot(page, tmp_path, "auth")
    page.get_by_role("button", name="Run the auth checks again").click()
    expect(page.locator(".lk-checked")).to_contain_text("checked")
    after = len(demo.ws.store.list_auth_checks())
    assert after > before
    expect(rows(page, "lk-auth-history")).to_have_count(after)


def test_client_health(page: Page, dashboard: DashboardHandle, demo: DemoData, tmp_path: Path) -> None:
    open_view(page, dashboard, "view=health")
    table = rows(page, "lk-health-table")
    expect(table).to_have_count(len(demo.ws.store.list_clients()))
    umbrella = table.filter(has_text="Umbrella-Corp")
    expect(umbrella).to_contain_text("ended Failed")
    expect(table.filter(has_text="Hooli")).to_contain_text("never run")
    shot(page, tmp_path, "health")


def test_navigation_and_periodic_refresh_keep_the_filters(
    page: Page, dashboard: DashboardHandle, demo: DemoData
) -> None:
    open_view(page, dashboard, "view=overview")
    page.get_by_role("button", name="Runs", exact=True).click()
    expect(page).to_have_url(re.compile(r"view=runs"))
    page.locator("select").nth(0).select_option("Completed with Errors")
    store = demo.ws.store
    before = store.count_runs(RunFilter(status="Completed with Errors"))
    expect(rows(page, "lk-runs-table")).to_have_count(before)
    # a new run lands while the page is open: the next refresh shows it, filters untouched
    records = RunRecordService(store)
    run = records.start_run()
    acme, globex = records.open_many(RunId.parse(run.run_id), ["Acme-Co", "Globex"], "batch")
    records.update(acme, status=ClientRunStatus.FAILED, reason="dashboard refresh test")
    records.update(globex, status=ClientRunStatus.COMPLETED)
    records.finish_run(run)
    assert store.count_runs(RunFilter(status="Completed with Errors")) == before + 1
    expect(rows(page, "lk-runs-table")).to_have_count(before + 1, timeout=REFRESH_S * 1000 * 5)
    expect(rows(page, "lk-runs-table").first).to_contain_text(run.run_id)
    expect(page.locator("select").nth(0)).to_have_value(re.compile(r"Completed with Errors"))
    expect(page).to_have_url(re.compile(r"status=Completed"))


def test_no_secret_on_any_page(page: Page, dashboard: DashboardHandle, demo: DemoData) -> None:
    for query in ("view=overview", "view=runs", f"view=run&run={demo.notebook_run}", "view=failures", "view=auth"):
        open_view(page, dashboard, query)
        expect(page.locator(".lk-main .tabulator-row").first).to_be_visible()
        contents = [page.content(), *(f.content() for f in page.frames[1:])]
        for text in contents:
            assert CANARY_AIRTABLE not in text and CANARY_APIFY not in text, query
    open_view(page, dashboard, "view=health")
    expect(rows(page, "lk-health-table").first).to_be_visible()
    assert CANARY_APIFY not in page.content() and CANARY_AIRTABLE not in page.content()


# ------------------------------------------------------------------------------------------------ basic auth
def test_basic_auth_gives_no_data_without_credentials(page: Page, demo: DemoData) -> None:
    with start_dashboard(demo.ws, port=0, basic_auth="ops:correct-horse", refresh_s=0) as handle:
        with httpx.Client(base_url=handle.url, timeout=10) as http:
            anon = http.get("/?view=runs")
            assert anon.status_code in (302, 303)
            assert "/login" in anon.headers["location"]
            assert demo.latest not in anon.text
            assert http.get("/ws").status_code in (302, 303, 401, 403)
            login_page = http.get("/login")
            assert login_page.status_code == 200 and demo.latest not in login_page.text
            wrong = http.post("/login", data={"username": "ops", "password": "wrong"})
            assert "user" not in wrong.cookies
        page.goto(f"{handle.url}?view=runs")
        expect(page).to_have_url(re.compile(r"/login"))
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", "correct-horse")
        page.locator("button[type=submit], input[type=submit]").first.click()
        page.goto(f"{handle.url}?view=runs")
        expect(rows(page, "lk-runs-table")).to_have_count(PAGE)


def test_basic_auth_value_must_be_user_colon_password() -> None:
    assert parse_basic_auth("ops:a:b") == {"ops": "a:b"}
    for bad in ("", "ops", "ops:", ":pw"):
        with pytest.raises(DataError, match="USER:PASSWORD"):
            parse_basic_auth(bad)


def test_only_notebooks_inside_the_workspace_are_read(demo: DemoData, tmp_path: Path) -> None:
    from leadkit.dashboard_server import load_app_module

    load_app_module()
    from dashboards.notebook_html import NotebookUnavailable, notebook_html

    outside = tmp_path / "elsewhere.ipynb"
    outside.write_text("{}")
    with pytest.raises(NotebookUnavailable, match="not a notebook inside the workspace"):
        notebook_html(str(outside), demo.ws.home)
    with pytest.raises(NotebookUnavailable, match="does not exist"):
        notebook_html(str(demo.ws.home / "gone.ipynb"), demo.ws.home)
    inside = demo.ws.home / demo.notebook_run / "Acme-Co.ipynb"
    document = notebook_html(str(inside), demo.ws.home)
    assert NOTEBOOK_MARKER in document and "<script" not in document
