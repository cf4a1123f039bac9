"""The 3 a.m. screen, on the demo's incident, in Chromium at 1366x768: Globex's Apify calls answer an HTML 404
page; what failed, why and what to do must be on the first screen of the run and of the client.

The workspace is made the way the demo makes it, in-process (no papermill): the eight demo clients, a local
Apify sandbox whose answers for Globex's leads are an HTML 404 page, every Active client run through the real
workflow over HTTP, then a second run of Acme-Co alone that completes. Each client gets a small executed
notebook so the drill-down's notebook picker has a choice to make.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from playwright.sync_api import Browser, Locator, Page, expect
from pydantic import SecretStr

from leadkit.config import get_settings
from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.demo import seed
from leadkit.models import Source
from leadkit.runids import RunId
from leadkit.workflow import run_client
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

pytestmark = pytest.mark.browser
WIDTH, HEIGHT = 1366, 768
expect.set_options(timeout=15_000)


@dataclass
class Incident:
    ws: Workspace
    failed_run: str
    ok_run: str


def _notebook(path: Path, client_id: str) -> None:
    nb = new_notebook()
    cell = new_code_cell("lk.publish_result(outcome)", execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text=f"executed notebook of {client_id}\n")]
    nb.cells.append(cell)
    nbformat.write(nb, path)


def build_incident(home: Path, sandbox: Sandbox) -> Incident:
    settings = get_settings().model_copy(
        update={
            "leadkit_home": home,
            "leadkit_store": "",
            "apify_api_url": sandbox.apify_url,
            "apify_token": SecretStr(sandbox.token),
        }
    )
    ws = Workspace.create(home, settings=settings)
    clients = seed(ws.store, 8)
    sandbox.add_fault(service="apify", mode="html_404", times=-1, body=re.escape("/in/globex-lead-"))
    run = ws.records.start_run()
    run_id = RunId.parse(run.run_id)
    active = [c for c in clients if c.active]
    ws.records.open_many(run_id, active, Source.BATCH)
    ws.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    for client in active:
        run_client(ws.store, ws.settings, run_id, client.client_id, records=ws.records)
        path = ws.run_dir(run_id) / f"{client.client_id}.ipynb"
        _notebook(path, client.client_id)
        fresh = ws.store.get_client_run(run_id.base, client.client_id)
        assert fresh is not None
        ws.records.update(fresh, notebook=str(path))
    ws.records.finish_run(run)
    ok = ws.records.start_run()
    ws.records.open_many(RunId.parse(ok.run_id), [clients[0]], Source.BATCH)
    run_client(ws.store, ws.settings, RunId.parse(ok.run_id), clients[0].client_id, records=ws.records, dry_run=True)
    ws.records.finish_run(ok)
    return Incident(ws, run.run_id, ok.run_id)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Incident]:
    home = tmp_path_factory.mktemp("incident-ws")
    with Sandbox(rate_limit=50) as sandbox:
        data = build_incident(home, sandbox)
    failed = data.ws.store.get_client_run(data.failed_run, "Globex")
    assert failed is not None and failed.status.value == "Failed" and failed.failure is not None
    assert failed.failure.category == "config" and "404" in failed.failure.message
    yield data
    data.ws.close()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def board(incident: Incident) -> Iterator[DashboardHandle]:
    handle = start_dashboard(incident.ws, port=0, refresh_s=0)
    yield handle
    handle.stop()


@pytest.fixture
def screen(browser: Browser) -> Iterator[Page]:
    """A 1366x768 window in Berlin's time zone; any console error fails the test."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, timezone_id="Europe/Berlin")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    yield page
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def open_view(page: Page, board: DashboardHandle, query: str) -> None:
    page.goto(f"{board.url}?{query}")
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")


def in_viewport(locator: Locator) -> dict[str, float]:
    """The element's box, asserted to lie wholly inside the 1366x768 window (no scrolling needed). Tabulator
    redraws a row when the view's periodic read lands, so a row found visible can be replaced before its box is
    asked for: the box of the row drawn now is taken (a few tries), never a missing one."""
    box = None
    for _ in range(5):
        expect(locator).to_be_visible()
        box = locator.bounding_box(timeout=2_000)
        if box is not None:
            break
    assert box is not None
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= WIDTH and box["y"] + box["height"] <= HEIGHT, box
    return box


def no_wider_than_the_window(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth") <= WIDTH


def cell(row: Locator, field: str) -> Locator:
    return row.locator(f".tabulator-cell[tabulator-field='{field}']")


def test_drilldown_answers_what_why_and_what_to_do_on_the_first_screen(
    screen: Page, board: DashboardHandle, incident: Incident, tmp_path: Path
) -> None:
    open_view(screen, board, f"view=run&run={incident.failed_run}")
    clients = screen.locator(".lk-run-clients .tabulator-row")
    expect(clients).to_have_count(1)  # it opens on the failed client
    globex = clients.first
    expect(cell(globex, "Client")).to_have_text("Globex")
    expect(cell(globex, "Status")).to_have_text("Failed")
    expect(cell(globex, "Reason")).to_contain_text("stage harvest")
    expect(cell(globex, "Hint")).to_contain_text("wrong base URL")
    expect(cell(globex, "Next step")).to_contain_text("APIFY_API_URL")
    expect(cell(globex, "Next step")).to_contain_text("leadkit rerun --failed --client Globex")
    expect(cell(globex, "Error")).to_contain_text('(body: "404 Not Found")')
    for field in ("Status", "Reason", "Hint", "Next step", "Error"):
        in_viewport(cell(globex, field))
    no_wider_than_the_window(screen)
    expect(screen.locator(".lk-run-summary")).to_contain_text("Completed with Errors")
    # the notebook picker is on the failed client, and the notebook shown is Globex's
    expect(screen.locator("select").first).to_have_value("Globex")
    notebook = screen.frame_locator("iframe.lk-notebook")
    expect(notebook.locator("body")).to_contain_text("executed notebook of Globex")
    # events show what happened: the empty 'started' rows are hidden unless asked
    events = screen.locator(".lk-run-events .tabulator-row")
    expect(events.first).to_be_visible()
    expect(
        events.filter(has=screen.locator(".tabulator-cell[tabulator-field='Kind']", has_text="started"))
    ).to_have_count(0)
    screen.screenshot(path=str(tmp_path / "incident-drilldown.png"))


def test_client_health_puts_the_failed_and_misconfigured_clients_first(
    screen: Page, board: DashboardHandle, incident: Incident, tmp_path: Path
) -> None:
    open_view(screen, board, "view=health")
    table = screen.locator(".lk-health-table .tabulator-row")
    expect(table).to_have_count(8)
    globex = table.filter(has_text="Globex")
    expect(cell(globex, "Severity")).to_have_text("needs action")
    expect(cell(globex, "Why")).to_contain_text("ended Failed")
    expect(cell(globex, "Why")).to_contain_text("404 Not Found")
    expect(cell(globex, "Next step")).to_contain_text("wrong base URL")
    expect(cell(globex, "Next step")).to_contain_text("leadkit rerun --failed --client Globex")
    for field in ("Severity", "Why", "Next step"):
        in_viewport(cell(globex, field))
    expect(cell(globex, "Severity")).to_have_css("background-color", "rgb(248, 215, 218)")
    severities = [
        s.strip()
        for s in screen.locator(".lk-health-table .tabulator-cell[tabulator-field='Severity']").all_inner_texts()
    ]
    order = {"needs action": 0, "waiting": 1, "fine": 2}
    assert severities == sorted(severities, key=order.__getitem__), severities
    assert severities.count("needs action") == 3  # Globex (failing), Hooli (post access), Stark (no target)
    fine = table.filter(has_text="Initech")  # paused on purpose
    expect(cell(fine, "Severity")).to_have_text("fine")
    waiting = table.filter(has_text="Acme-Co")
    expect(cell(waiting, "Severity")).to_have_text(re.compile("waiting|fine"))
    no_wider_than_the_window(screen)
    screen.screenshot(path=str(tmp_path / "incident-health.png"))


def test_a_misconfigured_clients_page_says_needs_action_and_names_the_fix(
    screen: Page, board: DashboardHandle, incident: Incident, tmp_path: Path
) -> None:
    open_view(screen, board, "client=Stark-Industries")
    answer = screen.locator(".lk-client-answer")
    expect(answer).to_contain_text("Stark-Industries")
    expect(answer).to_contain_text("needs action")
    expect(answer).to_contain_text("Posts Daily Target")
    expect(answer).to_contain_text("leadkit clients set Stark-Industries --daily-target")
    in_viewport(screen.locator(".lk-client-answer .lk-next-step"))
    expect(screen.locator(".lk-client-settings .tabulator-row").filter(has_text="Posts Daily Target")).to_contain_text(
        "0"
    )
    no_wider_than_the_window(screen)
    # the failing client's page: the last failure with its hint and the fix, and a chart of the last 30 days
    open_view(screen, board, "view=health&client=Globex")
    failure = screen.locator(".lk-last-failure")
    expect(failure).to_contain_text('(body: "404 Not Found")')
    expect(failure).to_contain_text("wrong base URL")
    expect(failure).to_contain_text("leadkit rerun --failed --client Globex")
    in_viewport(failure)
    expect(screen.locator(".lk-client-runs .tabulator-row")).to_have_count(1)
    expect(screen.locator(".bk-Canvas, canvas").first).to_be_attached()
    screen.get_by_role("link", name="‹ All clients").click()
    expect(screen.locator(".lk-health-table .tabulator-row")).to_have_count(8)
    screen.get_by_role("link", name="Stark-Industries", exact=True).click()  # each client links to its page
    expect(screen).to_have_url(re.compile(r"client=Stark-Industries"))
    expect(screen.locator(".lk-client-answer")).to_contain_text("needs action")
    screen.screenshot(path=str(tmp_path / "incident-client.png"))


def test_has_failures_finds_the_run_that_completed_with_errors(
    screen: Page, board: DashboardHandle, incident: Incident
) -> None:
    open_view(screen, board, "view=runs&status=Failed")
    expect(screen.locator(".lk-runs-table .tabulator-row")).to_have_count(0)
    expect(screen.locator(".lk-runs-table-empty")).to_contain_text("No run with status Failed")
    screen.locator("select").first.select_option("Has failures")
    runs = screen.locator(".lk-runs-table .tabulator-row")
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text(incident.failed_run)
    expect(screen).to_have_url(re.compile("status=has-failures"))
    assert incident.ok_run not in screen.locator(".lk-runs-table").inner_text()
    no_wider_than_the_window(screen)


def test_times_are_utc_with_the_local_time_on_hover(screen: Page, board: DashboardHandle, incident: Incident) -> None:
    open_view(screen, board, "view=runs")
    started = screen.locator(".lk-runs-table .tabulator-row").first.locator(".lk-time").first
    expect(started).to_have_attribute("title", re.compile(r"your local time: .* \(Europe/Berlin\)"))
    run = incident.ws.store.get_run(incident.ok_run)
    assert run is not None
    expect(started).to_have_text(run.started_at.strftime("%Y-%m-%d %H:%M:%S"))


def test_failures_show_the_real_message_and_the_rerun_command(
    screen: Page, board: DashboardHandle, incident: Incident
) -> None:
    open_view(screen, board, "view=failures")
    groups = screen.locator(".lk-failures-table .tabulator-row")
    expect(groups).to_have_count(1)
    error = cell(groups.first, "Error")
    expect(error).to_contain_text("Apify answered 404 for http://127.0.0.1:")
    expect(error).to_contain_text('(body: "404 Not Found")')
    expect(error).not_to_contain_text("<n>")
    in_viewport(error)
    groups.first.locator(".tabulator-cell", has_text="►").click()  # expand: the fingerprint is in the detail row
    expect(screen.locator(".lk-failure-detail")).to_contain_text("Fingerprint")
    expect(screen.locator(".lk-failure-detail")).to_contain_text("<n>")
    # no login: the view shows the command instead of a button
    expect(screen.locator(".lk-rerun-commands")).to_contain_text(
        "leadkit rerun --failed --category config --client Globex"
    )
    expect(screen.get_by_role("button", name="Re-run now")).to_have_count(0)
    no_wider_than_the_window(screen)


@pytest.mark.parametrize("query", ["view=overview", "view=runs", "view=auth", "view=failures"])
def test_no_view_is_wider_than_the_window(screen: Page, board: DashboardHandle, query: str, **_: Any) -> None:
    open_view(screen, board, query)
    expect(screen.locator(".lk-main .tabulator").first).to_be_visible()
    no_wider_than_the_window(screen)


def test_behind_basic_auth_the_failures_view_offers_the_rerun(screen: Page, incident: Incident) -> None:
    with start_dashboard(incident.ws, port=0, basic_auth="ops:correct-horse", refresh_s=0) as handle:
        screen.goto(f"{handle.url}?view=failures")
        expect(screen).to_have_url(re.compile(r"/login"))
        screen.fill("input[name=username]", "ops")
        screen.fill("input[name=password]", "correct-horse")
        screen.locator("button[type=submit], input[type=submit]").first.click()
        open_view(screen, handle, "view=failures")
        expect(screen.get_by_role("button", name="Re-run now")).to_be_visible()
        expect(screen.locator("select").first).to_have_value("leadkit rerun --failed --category config --client Globex")
        expect(screen.locator(".lk-rerun-commands")).to_contain_text("Pick a group and press Re-run now")
