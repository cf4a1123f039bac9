"""Recovery that keeps its history, with real papermill batches against the Apify sandbox.

The demo's incident on two clients (Globex's Apify calls answer an HTML 404 page): the batch fails Globex;
`rerun --failed --dry-run` lists exactly Globex and records nothing; `rerun --failed` opens a new run over Globex
alone (still failing); once the route is back, `batch --resume` of the first run completes Globex as its second
attempt: both executed notebooks stay, the failures are resolved and the run's status history reads "Completed
with Errors", "Resumed ...", "Completed after resume".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import nbformat
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from leadkit.batch import run_batch
from leadkit.cli import app
from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

runner = CliRunner()


@dataclass
class Story:
    ws: Workspace
    first: str
    rerun: str
    dry_run_out: str
    dry_run_changed: bool
    rerun_out: str


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


def _counts(ws: Workspace) -> tuple[int, int, int]:
    return ws.store.count_runs(), len(ws.store.list_events()), len(ws.store.list_failures())


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    home = tmp_path_factory.mktemp("recovery") / "ws"
    with pytest.MonkeyPatch.context() as mp, Sandbox(rate_limit=50) as sandbox:
        mp.setenv("LEADKIT_HOME", str(home))
        mp.delenv("LEADKIT_STORE", raising=False)
        mp.setenv("APIFY_API_URL", sandbox.apify_url)
        mp.setenv("APIFY_TOKEN", sandbox.token)
        settings = get_settings(leadkit_home=home, leadkit_store="").model_copy(
            update={"apify_api_url": sandbox.apify_url, "apify_token": SecretStr(sandbox.token)}
        )
        ws = Workspace.create(home, settings=settings)
        seed(ws.store, 2)  # Acme-Co and Globex, both due
        sandbox.add_fault(service="apify", mode="html_404", times=-1, body=re.escape("/in/globex-lead-"))
        first = run_batch(ws, workers=2, progress=False)
        assert {r.client_id: r.status.value for r in first.records} == {"Acme-Co": "Completed", "Globex": "Failed"}
        before = _counts(ws)
        dry = cli("rerun", "--failed", "--dry-run")
        changed = _counts(ws) != before
        rerun_out = cli("rerun", "--failed", "--workers", "1")
        newest = ws.store.list_runs(limit=1)[0].run_id
        sandbox.clear_faults()
        resumed = run_batch(ws, workers=1, resume=first.run.run_id, progress=False)
        assert resumed.run.run_id == first.run.run_id
        yield Story(ws, first.run.run_id, newest, dry, changed, rerun_out)
        ws.close()


def test_rerun_dry_run_lists_exactly_the_failed_client_and_records_nothing(story: Story) -> None:
    lines = story.dry_run_out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["Globex"]
    assert "config: Apify answered 404" in lines[0] and '(body: "404 Not Found")' in lines[0]
    assert not story.dry_run_changed


def test_rerun_opens_a_new_run_over_the_failed_client_only(story: Story) -> None:
    assert story.rerun != story.first
    assert "re-running 1 client(s)" in story.rerun_out
    records = story.ws.store.list_client_runs(run_id=story.rerun)
    assert [(r.client_id, r.status.value) for r in records] == [("Globex", "Failed")]


def test_resume_keeps_both_attempts_and_their_notebooks(story: Story) -> None:
    run_dir = story.ws.run_dir(story.first)
    first_nb, second_nb = run_dir / "Globex.ipynb", run_dir / "Globex.attempt-2.ipynb"
    assert first_nb.is_file() and second_nb.is_file()
    assert "404 Not Found" in first_nb.read_text() and "404 Not Found" not in second_nb.read_text()
    assert nbformat.read(second_nb, as_version=4).metadata.papermill.parameters["notebook_path"] == str(second_nb)
    shown = json.loads(cli("show", story.first, "--json"))
    globex = next(c for c in shown["clients"] if c["client_id"] == "Globex")
    assert globex["status"] == "Completed"
    assert [(a["attempt"], a["status"], a["notebook"]) for a in globex["attempts"]] == [
        (1, "Failed", str(first_nb)),
        (2, "Completed", str(second_nb)),
    ]
    assert "404" in globex["attempts"][0]["why"]
    acme = next(c for c in shown["clients"] if c["client_id"] == "Acme-Co")
    assert [a["status"] for a in acme["attempts"]] == ["Completed"]  # not re-run: it had completed


def test_the_runs_status_history_is_kept(story: Story) -> None:
    shown = json.loads(cli("show", story.first, "--json"))
    assert shown["status"] == "Completed"
    assert [c["status"] for c in shown["status_history"]] == [
        "Completed with Errors",
        "Resumed (was Completed with Errors)",
        "Completed after resume",
    ]
    assert "status history: Completed with Errors -> Resumed" in cli("show", story.first)


def test_failures_are_resolved_by_the_later_attempt(story: Story) -> None:
    groups = json.loads(cli("failures", "--json"))
    assert groups and all(g["clients"] == ["Globex"] for g in groups)
    assert all(g["resolved"] is True for g in groups), groups
    assert groups[0]["headline"].startswith("Apify answered 404 for http://127.0.0.1:")
    text = cli("failures")
    assert "UNRESOLVED" not in text and "fingerprint: config:" in text
    assert cli("rerun", "--failed", "--dry-run").strip() == "no client's latest attempt failed"


def test_the_drilldown_lists_the_attempts(story: Story) -> None:
    from leadkit.dashboard_server import load_app_module

    load_app_module()
    from dashboards.client_data import run_clients

    detail = run_clients(story.ws, story.first)
    assert detail.summary["Status"] == "Completed after resume"
    attempts = detail.attempts
    assert list(attempts["Client"]) == ["Globex", "Globex"]
    assert list(attempts["Outcome"]) == ["Failed", "Completed"]
    assert "Globex (attempt 1: Failed)" in detail.notebooks and "Globex" in detail.notebooks
    assert list(detail.history["Run status"])[-1] == "Completed after resume"
