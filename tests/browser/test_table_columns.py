"""Runs with different metrics in headless Chromium: the drill-down switched between them, again and again in one
session, shows each run's metrics in the same declared columns (a known metric in its own column, another one in
words under "Other metrics"), never changes a table's columns and never makes the browser throw (no page or
console error, unfiltered).

Its own small workspace: two runs whose clients report different metrics.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dashboards.client_data import METRICS_COLUMNS
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
#: metric key of each run's clients -> how the metrics table shows Globex's value (its second client: value 2)
METRICS = {"posts_harvested": "2", "profiles_scanned_zz": "Profiles scanned zz 2"}


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


def test_runs_with_other_metrics_keep_the_declared_columns_without_a_page_error(
    page: Page, served: DashboardHandle, runs: tuple[Workspace, list[str]], tmp_path: Path
) -> None:
    errors = watch_errors(page)
    _, run_ids = runs
    shown = list(METRICS.values())
    page.goto(f"{served.url}?view=run&run={run_ids[0]}")
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
    headers = page.locator(".lk-run-metrics .tabulator-col-title").filter(has_text=re.compile(r"\w"))
    globex = page.locator(".lk-run-metrics .tabulator-row").filter(has_text="Globex")
    other = globex.locator('.tabulator-cell[tabulator-field="Other metrics"]')
    posts = globex.locator('.tabulator-cell[tabulator-field="Posts harvested"]')
    run_input = page.get_by_label("Run ID")
    for turn in range(6):  # the second switch lands while the first run's table may still be being built
        i = turn % 2
        if turn:
            run_input.fill(run_ids[i])
            run_input.press("Enter")
        expect(page.locator(".lk-run-summary")).to_contain_text(run_ids[i])
        expect(headers).to_have_text(METRICS_COLUMNS)
        expect(page.locator(".lk-run-metrics .tabulator-row")).to_have_count(len(CLIENTS))
        expect(posts).to_have_text("2" if i == 0 else "0")
        expect(other).to_have_text("" if i == 0 else shown[1])
        events = page.locator(".lk-run-events .tabulator-row").filter(has_text="Globex").filter(has_text="harvest")
        expect(events.locator('.tabulator-cell[tabulator-field="Metrics"]')).to_have_text(
            "Posts harvested 2" if i == 0 else shown[1]
        )
    # a quick back-and-forth without waiting: the last run asked for is the one shown
    for i in (0, 1, 0, 1):
        run_input.fill(run_ids[i])
        run_input.press("Enter")
    expect(page.locator(".lk-run-summary")).to_contain_text(run_ids[1])
    expect(other).to_have_text(shown[1])
    page.wait_for_timeout(2 * REFRESH_S * 1000)  # periodic refreshes of the same run: rows only
    expect(headers).to_have_text(METRICS_COLUMNS)
    assert errors == [], f"browser console errors: {errors}"
