"""A table whose columns differ from one read to the next (a run's metric columns) in headless Chromium: the
drill-down switched between runs with different metrics, again and again in one session, shows each run's
columns and never makes the browser throw (no page or console error, unfiltered).

Its own small workspace: two runs whose clients report different metrics.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from leadkit.config import get_settings
from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.models import ClientRunStatus, EventKind, RunEvent
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.workspace import Workspace

from .conftest import REFRESH_S, watch_errors

pytestmark = pytest.mark.browser
expect.set_options(timeout=15_000)
CLIENTS = ["Acme-Co", "Globex", "Initech"]
#: metric key of each run's clients -> the column the metrics table shows for it (`client_data.metric_name`)
METRICS = {"posts_harvested": "Posts harvested", "profiles_scanned_zz": "Profiles scanned zz"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, list[str]]]:
    home = tmp_path_factory.mktemp("columns-ws")
    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    ws = Workspace.create(home, settings=settings)
    now = datetime.now(UTC).replace(microsecond=0)
    clock = {"t": now - timedelta(hours=2)}
    records = RunRecordService(ws.store, now=lambda: clock["t"])
    run_ids = []
    for hours, key in enumerate(METRICS):
        clock["t"] = now - timedelta(hours=2 - hours)
        run = records.start_run()
        opened = records.open_many(RunId.parse(run.run_id), CLIENTS, "batch")
        for n, (client, record) in enumerate(zip(CLIENTS, opened, strict=True)):
            done = RunEvent(run.run_id, client, "harvest", EventKind.COMPLETED, "done", {key: n + 1}, at=clock["t"])
            records.update(record, [done], status=ClientRunStatus.COMPLETED)
        records.finish_run(run)
        run_ids.append(run.run_id)
    yield ws, run_ids
    ws.close()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def served(runs: tuple[Workspace, list[str]]) -> Iterator[DashboardHandle]:
    handle = start_dashboard(runs[0], port=0, refresh_s=REFRESH_S)
    yield handle
    handle.stop()


def test_metric_columns_follow_the_run_without_a_page_error(
    page: Page, served: DashboardHandle, runs: tuple[Workspace, list[str]], tmp_path: Path
) -> None:
    errors = watch_errors(page)
    _, run_ids = runs
    names = list(METRICS.values())
    page.goto(f"{served.url}?view=run&run={run_ids[0]}")
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
    headers = page.locator(".lk-run-metrics .tabulator-col-title")
    run_input = page.get_by_label("Run ID")
    for turn in range(6):  # the second switch lands while the first run's table may still be being built
        i = turn % 2
        if turn:
            run_input.fill(run_ids[i])
            run_input.press("Enter")
        expect(page.locator(".lk-run-summary")).to_contain_text(run_ids[i])
        expect(headers.filter(has_text=names[i])).to_have_count(1)
        expect(headers.filter(has_text=names[1 - i])).to_have_count(0)
        expect(page.locator(".lk-run-metrics .tabulator-row")).to_have_count(len(CLIENTS))
        expect(page.locator(".lk-run-metrics .tabulator-row").first).to_contain_text("Acme-Co")
    # a quick back-and-forth without waiting: the last run asked for is the one shown
    for i in (0, 1, 0, 1):
        run_input.fill(run_ids[i])
        run_input.press("Enter")
    expect(page.locator(".lk-run-summary")).to_contain_text(run_ids[1])
    expect(headers.filter(has_text=names[1])).to_have_count(1)
    expect(headers.filter(has_text=names[0])).to_have_count(0)
    page.wait_for_timeout(2 * REFRESH_S * 1000)  # periodic refreshes of the same run: rows only, no new columns
    expect(headers.filter(has_text=names[1])).to_have_count(1)
    assert errors == [], f"browser console errors: {errors}"
