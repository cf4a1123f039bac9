"""Exit codes as the README says: not found and bad input exit 2 from every command, through the real command
line (`leadkit.cli.run`, what the `leadkit` script runs); a client run ID names one client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadkit.cli import run
from leadkit.models import ClientRunStatus, Source
from leadkit.runids import RunId
from leadkit.workspace import Workspace


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "argv",
    [
        ["show", "250101-000000"],
        ["health", "Nobody"],
        ["clients", "set", "Nobody", "--daily-target", "3"],
        ["clients", "remove", "Nobody"],
        ["clients", "pause", "Nobody"],
        ["leads", "list", "Nobody"],
        ["batch", "--resume", "250101-000000"],
    ],
)
def test_not_found_exits_2_and_changes_nothing(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    before = (workspace.store.list_clients(), workspace.store.list_runs(limit=5))
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert "error: no " in err and "Traceback" not in err
    assert (workspace.store.list_clients(), workspace.store.list_runs(limit=5)) == before


def test_leads_import_for_an_unknown_client_exits_2(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("profile_url,name,company\nhttps://www.linkedin.com/in/jane-roe/,Jane Roe,Globex\n")
    code, _, err = cli(capsys, "leads", "import", "Nobody", str(leads))
    assert code == 2 and "Nobody" in err


def test_a_client_run_id_shows_that_client_or_is_not_found(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = workspace.records.start_run()
    a, b = workspace.records.open_many(RunId.parse(batch.run_id), ["Acme-Co", "Globex"], Source.BATCH)
    workspace.records.update(a, status=ClientRunStatus.COMPLETED)
    workspace.records.update(b, status=ClientRunStatus.SKIPPED, reason="not due")
    workspace.records.finish_run(batch)
    code, out, _ = cli(capsys, "show", f"{batch.run_id}-Globex")
    assert code == 0 and "Globex" in out and "Acme-Co" not in out
    code, out, _ = cli(capsys, "show", f"{batch.run_id}-Globex", "--json")
    assert [c["client_id"] for c in json.loads(out)["clients"]] == ["Globex"]
    code, out, err = cli(capsys, "show", f"{batch.run_id}-Nobody")
    assert code == 2 and out == "" and f"run {batch.run_id} has no client 'Nobody'" in err
