"""Client health: the verdict and next step for each demo scenario, a failed run, a stale one, an unknown client."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadkit.diagnosis import example_run
from leadkit.errors import InvalidClientId, MissingRecordError
from leadkit.health import client_health
from leadkit.models import Source, utcnow
from leadkit.runids import RunId
from leadkit.workspace import Workspace

from . import cli_json


def test_each_scenario_says_why(workspace: Workspace) -> None:
    expected = {
        "Acme-Co": (True, "never been run"),
        "Initech": (False, "`leadkit clients activate Initech`"),
        "Umbrella-Corp": (False, "`leadkit clients set Umbrella-Corp --service-level 2`"),
        "Hooli": (False, "`leadkit clients set Hooli --post-access yes`"),
        "Stark-Industries": (False, "--daily-target 20"),
        "Wayne-Enterprises": (False, "Import leads"),
        "Soylent": (False, "harvested again tomorrow"),
    }
    for client_id, (due, step) in expected.items():
        health = client_health(workspace, client_id)
        assert health["verdict"]["due"] is due, client_id
        assert step in health["next_step"], (client_id, health["next_step"])
    acme = client_health(workspace, "Acme-Co")
    assert acme["leads_by_status"] == {"(blank)": 8} and acme["leads_total"] == 8
    assert acme["client"]["daily_target"] == 40 and acme["last_runs"] == [] and acme["last_failure"] is None
    assert client_health(workspace, "Wayne-Enterprises")["leads_by_status"] == {"Done": 8}


def test_failed_and_stale_runs(workspace: Workspace) -> None:
    run_id = example_run(workspace)
    acme = client_health(workspace, "Acme-Co")
    assert acme["last_runs"][0]["run_id"] == run_id and acme["last_runs"][0]["status"] == "Failed"
    assert acme["last_failure"]["category"] == "config" and acme["last_failure"]["stage"] == "harvest"
    assert "APIFY_TOKEN" in acme["next_step"] and f"--resume {run_id}" in acme["next_step"]

    records = workspace.records
    run = RunId.parse(records.start_run().run_id)
    record = records.open(run, "Globex", Source.BATCH)
    assert "harvesting it now" in client_health(workspace, "Globex")["next_step"]
    record.heartbeat_at = utcnow() - timedelta(hours=3)
    workspace.store.save_client_run(record)
    assert "no heartbeat" in client_health(workspace, "Globex")["next_step"]
    records.sweep()
    step = client_health(workspace, "Globex")["next_step"]
    assert "Stale" in step and "no heartbeat" in step


def test_unknown_client_and_cli(workspace: Workspace) -> None:
    with pytest.raises(MissingRecordError):
        client_health(workspace, "Vandelay-Industries")
    with pytest.raises(InvalidClientId):
        client_health(workspace, "../etc")
    code, data = cli_json("health", "Hooli")
    assert code == 0 and data["client_id"] == "Hooli" and data["verdict"]["due"] is False
    assert set(data) >= {"client", "verdict", "leads_by_status", "last_runs", "last_failure", "next_step"}
