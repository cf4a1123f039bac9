"""`leadkit airtable usage` and `leadkit airtable archive` on the sandbox, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leadkit.models import ClientRun, ClientRunStatus, Run, RunStatus, Source
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import MASTER_TABLES, ClientRunResults
from leadkit_sandbox.server import Sandbox

from .conftest import airtable_settings, tables_spec


def _leadkit(home: Path, base: str, sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "LEADKIT_HOME": str(home),
        "LEADKIT_STORE": f"airtable://{base}",
        "AIRTABLE_API_KEY": sandbox.token,
        "AIRTABLE_ENDPOINT_URL": sandbox.airtable_url,
        "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
        "LEADKIT_AIRTABLE_PLAN": "free",
    }
    return subprocess.run(
        [sys.executable, "-m", "leadkit.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=home
    )


def test_usage_and_archive_commands(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("Master", tables_spec(MASTER_TABLES))
    store = AirtableStore(base, airtable_settings(sandbox, leadkit_home=tmp_path))
    old = datetime.now(UTC) - timedelta(days=100)
    store.insert_run(Run("260801-000000", RunStatus.COMPLETED, started_at=old, ended_at=old, clients_total=4))
    made = store.open_client_runs(
        [ClientRun("260801-000000", f"c{i}", Source.BATCH, f"c{i}", started_at=old, heartbeat_at=old) for i in range(4)]
    )
    for rec, _ in made:
        rec.status = ClientRunStatus.COMPLETED
        store.save_client_run(rec)
    store.close()

    out = _leadkit(tmp_path, base, sandbox, "airtable", "usage", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["plan"] == "free" and report["monthly_cap"] == 1000 and report["client_runs"] == 4
    assert report["master_requests"] > 0 and report["master_requests_per_client_run"] is not None
    [records] = report["records_per_base"]
    assert records["base"] == base and records["records"] == 5 and records["cap"] == 1000  # 4 ClientRuns, 1 Run
    text = _leadkit(tmp_path, base, sandbox, "airtable", "usage", "--no-records")
    assert "master requests per client run" in text.stdout and "projected this month" in text.stdout
    # no dashboard read anything here: every request was a command's
    assert "of which the dashboard: 0; batches and commands: " in text.stdout, text.stdout

    dry = _leadkit(tmp_path, base, sandbox, "airtable", "archive", "--older-than", "90d", "--dry-run", "--json")
    assert json.loads(dry.stdout)[ClientRunResults.TABLE] == {"archived": 4, "deleted": 0}
    assert len(sandbox.airtable.records(base, ClientRunResults.TABLE)) == 4
    moved = _leadkit(tmp_path, base, sandbox, "airtable", "archive", "--older-than", "90d")
    assert moved.returncode == 0, moved.stderr
    assert f"{ClientRunResults.TABLE}: archived 4 record(s)" in moved.stdout
    assert sandbox.airtable.records(base, ClientRunResults.TABLE) == []
    shown = _leadkit(tmp_path, base, sandbox, "show", "260801-000000", "--json")
    assert shown.returncode == 0, shown.stderr
    assert sorted(c["client_id"] for c in json.loads(shown.stdout)["clients"]) == ["c0", "c1", "c2", "c3"]

    bad = _leadkit(tmp_path, base, sandbox, "airtable", "archive", "--older-than", "ninety")
    assert bad.returncode != 0 and "ninety" in (bad.stderr + bad.stdout)
