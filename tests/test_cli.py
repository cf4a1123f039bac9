"""The CLI through typer's test runner: clients, leads, runs, show, and bad input that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadkit.cli import app
from leadkit.errors import ConfigError, DataError, InvalidClientId, InvalidRunId, MissingRecordError
from leadkit.models import ClientRunStatus, Source
from leadkit.runids import RunId
from leadkit.workspace import Workspace

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args), catch_exceptions=True)
    return result.exit_code, result.output, result.exception


def test_help_on_every_command() -> None:
    for command in (["--help"], ["batch", "--help"], ["clients", "add", "--help"], ["leads", "import", "--help"]):
        code, out, _ = invoke(*command)
        assert code == 0 and "Usage" in out


def test_clients_json_and_add(workspace: Workspace) -> None:
    code, out, _ = invoke("clients", "add", "Vandelay-Industries", "--name", "Vandelay", "--daily-target", "5")
    assert code == 0, out
    code, out, _ = invoke("clients", "--json")
    items = json.loads(out)
    vandelay = next(c for c in items if c["client_id"] == "Vandelay-Industries")
    assert vandelay == {
        "client_id": "Vandelay-Industries",
        "name": "Vandelay",
        "status": "Active",
        "service_level": 2,
        "post_access": "yes",
        "daily_target": 5,
        "batch_size": 20,
        "max_batches": 10,
        "stream": 1,
        "max_usd_per_day": None,
        "base_id": None,
    }
    assert len(items) == 9


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "-flag", "x" * 65])
def test_invalid_client_ids_are_refused_and_change_nothing(workspace: Workspace, bad: str) -> None:
    before = workspace.store.list_clients()
    code, _, exc = invoke("clients", "add", "--name", "Bad", "--", bad)
    assert isinstance(exc, InvalidClientId) and exc.exit_code == 2
    assert "letters, digits" in str(exc)
    assert workspace.store.list_clients() == before
    assert not any(p.name.startswith("x") for p in (workspace.home / "bases").iterdir() if bad.startswith("x"))


def test_unknown_client_and_malformed_run_id(workspace: Workspace) -> None:
    _, _, exc = invoke("leads", "list", "Nobody-Inc")
    assert isinstance(exc, MissingRecordError) and "Nobody-Inc" in str(exc)
    _, _, exc = invoke("show", "not-a-run")
    assert isinstance(exc, InvalidRunId) and "not-a-run" in str(exc)
    _, _, exc = invoke("show", "251128-093000")
    assert isinstance(exc, MissingRecordError)


def test_missing_workspace_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADKIT_HOME", str(tmp_path / "nowhere"))
    _, _, exc = invoke("runs")
    assert isinstance(exc, ConfigError) and "no leadkit workspace" in str(exc)
    assert not (tmp_path / "nowhere").exists()


def test_leads_import_reports_bad_rows_and_does_not_duplicate(workspace: Workspace, tmp_path: Path) -> None:
    csv_file = tmp_path / "leads.csv"
    csv_file.write_text(
        "profile_url,name,company\n"
        "https://www.linkedin.com/in/jane-roe/,Jane Roe,Globex\n"
        "not a url,Bad Row,Nowhere\n"
        "http://linkedin.com/in/jane-roe?trk=x,Jane Again,Globex\n"
        "https://www.linkedin.com/in/john-doe,John Doe,Initech\n"
    )
    before = len(workspace.store.lead_base(workspace.store.get_client("Globex")).list_leads())
    code, out, _ = invoke("leads", "import", "Globex", str(csv_file), "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["created"] == 2 and summary["existing"] == 1
    assert [(b["line"], b["profile_url"]) for b in summary["skipped"]] == [(3, "not a url")]
    assert "not a LinkedIn profile URL" in summary["skipped"][0]["reason"]
    code, out, _ = invoke("leads", "import", "Globex", str(csv_file), "--json")
    assert json.loads(out)["created"] == 0
    leads = workspace.store.lead_base(workspace.store.get_client("Globex")).list_leads()
    assert len(leads) == before + 2


def test_leads_import_missing_columns_changes_nothing(workspace: Workspace, tmp_path: Path) -> None:
    csv_file = tmp_path / "leads.csv"
    csv_file.write_text("website,name\nhttps://www.linkedin.com/in/jane-roe/,Jane\n")
    before = len(workspace.store.lead_base(workspace.store.get_client("Globex")).list_leads())
    _, _, exc = invoke("leads", "import", "Globex", str(csv_file))
    assert isinstance(exc, DataError) and "no profile URL column (found: website, name)" in str(exc)
    assert "LinkedIn URL" in str(exc)
    assert len(workspace.store.lead_base(workspace.store.get_client("Globex")).list_leads()) == before


def test_runs_and_show_json(workspace: Workspace) -> None:
    run = workspace.records.start_run()
    run_id = RunId.parse(run.run_id)
    a, b = workspace.records.open_many(run_id, ["Acme-Co", "Globex"], Source.BATCH)
    workspace.records.update(a, status=ClientRunStatus.COMPLETED)
    workspace.records.update(b, status=ClientRunStatus.SKIPPED, reason="not due")
    workspace.records.finish_run(run)
    code, out, _ = invoke("runs", "--json")
    runs = json.loads(out)
    assert code == 0 and runs[0]["run_id"] == run.run_id and runs[0]["status"] == "Completed"
    assert set(runs[0]) == {"run_id", "status", "started_at", "ended_at", "clients_total", "clients_failed"}
    code, out, _ = invoke("show", f"{run.run_id}-Acme-Co", "--json")
    assert [c["client_id"] for c in json.loads(out)["clients"]] == ["Acme-Co"]  # a client run ID: that client
    code, out, _ = invoke("show", run.run_id, "--json")
    shown = json.loads(out)
    assert shown["run_id"] == run.run_id
    assert [c["client_id"] for c in shown["clients"]] == ["Acme-Co", "Globex"]
    assert shown["clients"][0]["client_run_id"] == f"{run.run_id}-Acme-Co"
    assert set(shown["clients"][0]) >= {
        "client_id",
        "client_run_id",
        "status",
        "source",
        "metrics",
        "notebook",
        "failure",
    }
