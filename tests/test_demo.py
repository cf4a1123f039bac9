"""`leadkit demo --no-dashboard` end to end: sandbox, demo clients, a papermill batch, records in SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

LEADKIT = [sys.executable, "-m", "leadkit.cli"]


def run_cli(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
    env["LEADKIT_HOME"] = str(home)
    return subprocess.run(LEADKIT + args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    home = root / "runs"
    result = run_cli(["demo", "--no-dashboard"], home, root)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def test_demo_runs_every_active_client_with_a_verdict_and_a_notebook(demo_home: Path) -> None:
    runs = json.loads(run_cli(["runs", "--json"], demo_home, demo_home.parent).stdout)
    assert [r["status"] for r in runs] == ["Completed", "Completed with Errors"]  # newest first
    shown = json.loads(run_cli(["show", runs[0]["run_id"], "--json"], demo_home, demo_home.parent).stdout)
    clients = {c["client_id"]: c for c in shown["clients"]}
    assert len(clients) == 7  # the eighth demo client is Paused, and only Active clients run
    reasons = " | ".join(c["reason"] for c in clients.values())
    for why in ("below 2", "Post Access Enabled", "no daily target", "no lead waiting", "target already met"):
        assert why in reasons
    assert clients["Globex"]["status"] == "Completed" and clients["Globex"]["metrics"]["posts_harvested"] > 0
    for client in clients.values():
        notebook = Path(client["notebook"])
        assert notebook.parent == demo_home / runs[0]["run_id"]
        executed = nbformat.read(notebook, as_version=4)
        params = executed.metadata.papermill.parameters
        assert params["client_id"] == client["client_id"] and params["run_id"] == runs[0]["run_id"]
        assert client["source"] == "batch"


def test_demo_incident_is_classified_as_config_not_auth_and_then_resolved(demo_home: Path) -> None:
    runs = json.loads(run_cli(["runs", "--json"], demo_home, demo_home.parent).stdout)
    first = json.loads(run_cli(["show", runs[1]["run_id"], "--json"], demo_home, demo_home.parent).stdout)
    failed = [c for c in first["clients"] if c["status"] == "Failed"]
    assert [c["client_id"] for c in failed] == ["Globex"]
    failure = failed[0]["failure"]
    assert failure["category"] == "config"
    assert "HTML" in failure["message"] and "404" in failure["message"]
    assert "wrong base URL" in failure["hint"] or "missing route" in failure["hint"]
    assert next(c for c in first["clients"] if c["client_id"] == "Acme-Co")["status"] == "Completed"
    groups = json.loads(run_cli(["failures", "--json"], demo_home, demo_home.parent).stdout)
    assert len(groups) == 1 and groups[0]["clients"] == ["Globex"] and groups[0]["resolved"] is True


def test_demo_harvests_posts_for_the_due_clients(demo_home: Path) -> None:
    leads = json.loads(run_cli(["leads", "list", "Acme-Co", "--json"], demo_home, demo_home.parent).stdout)
    statuses = {lead["harvest_status"] for lead in leads}
    assert statuses <= {"Done", "No Posts"} and "Done" in statuses
    assert sum(lead["posts_found"] or 0 for lead in leads) > 0


def test_batch_log_has_run_and_client_on_kernel_records(demo_home: Path) -> None:
    run_dir = min(p for p in demo_home.iterdir() if p.is_dir() and p.name[0].isdigit())
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert all({"level", "time", "run_id", "client_id", "event", "message"} <= set(line) for line in lines)
    kernel_lines = [line for line in lines if line["client_id"] == "Acme-Co"]
    assert kernel_lines and all(line["run_id"] == run_dir.name for line in kernel_lines)


def test_demo_refuses_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    home = tmp_path / "docs"
    home.mkdir()
    (home / "thesis.txt").write_text("precious")
    result = run_cli(["demo", "--no-dashboard"], home, tmp_path)
    assert result.returncode == 2
    assert "not a leadkit workspace" in result.stderr
    assert sorted(p.name for p in home.iterdir()) == ["thesis.txt"]


def test_doctor_and_auth_check_on_a_fresh_demo_workspace(demo_home: Path) -> None:
    doctor = run_cli(["doctor"], demo_home, demo_home.parent)
    assert doctor.returncode == 0, doctor.stdout
    assert "WARN  settings:APIFY_TOKEN" in doctor.stdout and "0 failed" in doctor.stdout
    checks = run_cli(["auth-check", "--json"], demo_home, demo_home.parent)
    assert checks.returncode == 0, checks.stdout + checks.stderr
    apify = next(c for c in json.loads(checks.stdout) if c["name"] == "apify")
    assert apify["ok"] is True and "not needed yet" in apify["detail"]


def test_demo_refuses_a_workspace_with_real_clients_and_runs_again(demo_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "agency"
    assert run_cli(["init"], home, tmp_path).returncode == 0
    assert run_cli(["clients", "add", "Vandelay", "--name", "Vandelay"], home, tmp_path).returncode == 0
    refused = run_cli(["demo", "--no-dashboard"], home, tmp_path)
    assert refused.returncode == 2 and "clients the demo did not create (Vandelay)" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    clients = json.loads(run_cli(["clients", "--json"], home, tmp_path).stdout)
    assert [c["client_id"] for c in clients] == ["Vandelay"]  # nothing was added

    before = len(json.loads(run_cli(["runs", "--json"], demo_home, demo_home.parent).stdout))
    again = run_cli(["demo", "--again", "--no-dashboard"], demo_home, demo_home.parent)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = json.loads(run_cli(["runs", "--json"], demo_home, demo_home.parent).stdout)
    assert len(runs) == before + 1 and runs[0]["status"] == "Completed"


def test_demo_on_airtable_says_its_sandbox_ends_with_it(tmp_path: Path) -> None:
    home = tmp_path / "runs"
    result = run_cli(
        ["demo", "--backend", "airtable", "--clients", "2", "--no-incident", "--no-dashboard"], home, tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ends with the demo" in result.stdout and "leadkit sandbox --bases" in result.stdout
    assert "provisioned master base" in result.stdout and "and 2 client bases" in result.stdout
    assert result.stdout.rstrip().endswith("the sandbox has ended, and the workspace's Airtable store with it")
    after = run_cli(["runs"], home, tmp_path)  # what the note said: the store went with the sandbox
    assert after.returncode == 2
