"""Browser tests: the dashboard served on port 0 over a demo workspace, driven by Debian's Chromium.

The workspace is filled through the record service (no papermill): 60 runs, one every 6 hours, so the runs
view has two pages and the date filter has something to cut; failures with hints (one of them full of markup);
auth checks; an executed notebook for the drill-down. Secrets are canary values that must never reach a page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from playwright.sync_api import ConsoleMessage, Error, Page
from pydantic import SecretStr

from leadkit.classify import failure_from
from leadkit.config import get_settings
from leadkit.dashboard_server import DashboardHandle, start_dashboard
from leadkit.demo import seed
from leadkit.errors import AuthError, UpstreamError
from leadkit.models import AuthCheck, ClientRunStatus, EventKind, RunEvent
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.workspace import Workspace

CANARY_AIRTABLE = "patCANARYairtable0123456789secret"
CANARY_APIFY = "apify_api_CANARY0123456789secret"
MARKUP = '<img src=x onerror="document.title=\'pwned\'"><b class="pwned">boom</b>'
RUNS = 60
AUTH_HINT = "The Apify token was refused: set APIFY_TOKEN to a valid API token."
NOTEBOOK_MARKER = "harvested 3 posts for Acme-Co in the executed notebook"
REFRESH_S = 2.0


@dataclass
class DemoData:
    ws: Workspace
    run_ids: list[str]  # newest first
    latest: str
    notebook_run: str
    failed_globex_runs: list[str]


def _notebook(path: Path) -> None:
    nb = new_notebook()
    nb.cells.append(new_markdown_cell("# Client workflow: Acme-Co"))
    cell = new_code_cell("print(summary)", execution_count=1)
    cell.outputs = [new_output("stream", name="stdout", text=f"{NOTEBOOK_MARKER}\n{MARKUP}\n")]
    nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def build_demo(home: Path) -> DemoData:
    """A workspace with runs spread over 15 days, failures, auth checks and one executed notebook."""
    settings = get_settings().model_copy(
        update={
            "leadkit_home": home,
            "leadkit_store": "",
            "airtable_api_key": SecretStr(CANARY_AIRTABLE),
            "apify_token": SecretStr(CANARY_APIFY),
            "apify_api_url": "http://127.0.0.1:9",
            "airtable_endpoint_url": "http://127.0.0.1:9",
        }
    )
    ws = Workspace.create(home, settings=settings)
    seed(ws.store, 8)
    now = datetime.now(UTC).replace(microsecond=0)
    clock = {"t": now}
    records = RunRecordService(ws.store, now=lambda: clock["t"])
    run_ids: list[str] = []
    failed_globex: list[str] = []
    notebook_run = ""
    for i in reversed(range(RUNS)):  # oldest first, so "later runs" exist for resolved failures
        clock["t"] = now - timedelta(hours=6 * i, minutes=5)
        run = records.start_run()
        run_id = RunId.parse(run.run_id)
        acme, globex, initech, umbrella = records.open_many(
            run_id, ["Acme-Co", "Globex", "Initech", "Umbrella-Corp"], "batch"
        )
        done = RunEvent(
            run.run_id, "Acme-Co", "harvest", EventKind.COMPLETED, "harvested", {"posts_harvested": 3}, at=clock["t"]
        )
        if i == 1:
            notebook_run = run.run_id
            nb_path = ws.home / run.run_id / "Acme-Co.ipynb"
            _notebook(nb_path)
            records.update(acme, [done], status=ClientRunStatus.COMPLETED, notebook=str(nb_path))
        else:
            records.update(acme, [done], status=ClientRunStatus.COMPLETED)
        if i % 10 == 5:
            exc = UpstreamError(f"Apify returned 502 for actor run {1000 + i} of {run.run_id}")
            failed_globex.append(run.run_id)
            fail = failure_from(exc, run_id=run.run_id, client_id="Globex", stage="harvest", at=clock["t"])
            records.update(globex, status=ClientRunStatus.FAILED, failure=fail)
        else:
            records.update(globex, status=ClientRunStatus.COMPLETED)
        records.update(initech, status=ClientRunStatus.SKIPPED, reason="not due: target met today")
        if i == 0:
            refused = AuthError(f"Apify refused the token {MARKUP}", hint=AUTH_HINT)
            fail = failure_from(refused, run_id=run.run_id, client_id="Umbrella-Corp", stage="harvest", at=clock["t"])
            event = RunEvent(
                run.run_id, "Umbrella-Corp", "harvest", EventKind.FAILED, f"refused {MARKUP}", at=clock["t"]
            )
            records.update(umbrella, [event], status=ClientRunStatus.FAILED, failure=fail)
        else:
            records.update(umbrella, status=ClientRunStatus.COMPLETED)
        records.finish_run(run)
        run_ids.append(run.run_id)
    ws.store.add_auth_checks(
        [
            AuthCheck("airtable", True, None, 200, 12.5, "The credential works.", checked_at=now),
            AuthCheck("apify", False, "auth", 401, 20.1, AUTH_HINT, checked_at=now),
        ]
    )
    run_ids.reverse()
    return DemoData(ws, run_ids, run_ids[0], notebook_run, list(reversed(failed_globex)))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoData]:
    home = tmp_path_factory.mktemp("dashboard-ws")
    data = build_demo(home)
    yield data
    data.ws.close()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def dashboard(demo: DemoData) -> Iterator[DashboardHandle]:
    handle = start_dashboard(demo.ws, port=0, refresh_s=REFRESH_S)
    yield handle
    handle.stop()


def watch_errors(page: Page) -> list[str]:
    """The list every console error and uncaught page error (with its stack) of `page` is appended to, unfiltered:
    a test asserts it is empty, as Panel's own UI tests do."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console error: {msg.text}")

    def on_page_error(exc: Error) -> None:
        errors.append(f"page error: {exc.message}\n{exc.stack or ''}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return errors
