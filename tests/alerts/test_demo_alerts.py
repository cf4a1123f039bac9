"""`leadkit demo` pointed at real channels: the incident (one client's Apify answers an HTML 404 page, then the
route is back) gives exactly one failure alert naming that client with category `config`, then one resolved
note; a second failing batch inside the window sends nothing new."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .receivers import channel, smtp_server, webhook_server

LEADKIT = [sys.executable, "-m", "leadkit.cli"]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(LEADKIT + args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_demo_incident_alerts_once_then_resolves(tmp_path: Path) -> None:
    with smtp_server() as box, webhook_server() as hook:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
        env["LEADKIT_HOME"] = str(tmp_path / "runs")
        env["LEADKIT_ALERT_URLS"] = f"{hook.url('/hooks/demo')},{box.url()}"
        env["LEADKIT_DASHBOARD_URL"] = "http://127.0.0.1:5006"
        result = run_cli(["demo", "--no-dashboard", "--clients", "3"], env, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        incident = re.search(r"demo incident: for (\S+),", result.stdout)
        assert incident is not None
        client = incident.group(1)

        titles = hook.titles()
        assert len(titles) == 2, titles
        failed, resolved = hook.posts
        assert re.fullmatch(r"leadkit: 1 of \d+ clients failed in run \S+ \(stream 1\)", failed["title"])
        assert f"[config] 1 client(s): {client}" in failed["message"]
        run_ids = json.loads(run_cli(["runs", "--json"], env, tmp_path).stdout)
        first, second = run_ids[1]["run_id"], run_ids[0]["run_id"]
        assert f"leadkit show {first}" in failed["message"] and "Dashboard: http://127.0.0.1:5006" in failed["message"]
        assert resolved["title"] == f"Resolved: {client} completed in run {second}"
        assert [m["Subject"] for m in box.messages] == titles

        # a second failing batch inside the window: recorded, nothing new sent
        code = (
            "import re, sys\n"
            "from leadkit.alerts import after_batch\n"
            "from leadkit.workspace import Workspace\n"
            "ws = Workspace.open()\n"
            "run = ws.store.list_runs(limit=2)[1]\n"
            "records = ws.store.list_client_runs(run_id=run.run_id)\n"
            "print(len(after_batch(ws, run, records)))\n"
        )
        again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
        # the first run's failure was resolved by the second: it is a new incident, alerted once more
        assert again.stdout.strip() == "2" and len(hook.posts) == 3
        again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert again.stdout.strip() == "0" and len(hook.posts) == 3

        alerts = json.loads(run_cli(["alerts", "--json"], env, tmp_path).stdout)
        assert {a["channel"] for a in alerts} == {channel(hook.url("/hooks/demo")), channel(box.url())}
        assert all(a["delivered"] for a in alerts)
