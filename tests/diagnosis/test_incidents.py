"""The original system's incidents, reproduced; each must come out of `leadkit failures --json`,
`leadkit auth-check --json`, `leadkit doctor --json` (or stats/health) with its category and a useful hint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from leadkit.classify import failure_from
from leadkit.errors import RateLimitError, SchemaError
from leadkit.http import NO_RETRY, HttpClient
from leadkit.models import Client, ClientRunStatus, Source, utcnow
from leadkit.runids import RunId
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from . import TOKEN, cli_json, sandbox_env, sandbox_settings, set_env


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


@pytest.fixture
def env(sandbox: Sandbox, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The SQLite workspace, with the Airtable and Apify settings pointing at the sandbox."""
    sandbox.clear_faults()
    set_env(monkeypatch, sandbox_env(sandbox))
    return workspace


def named(items: list[dict], name: str) -> dict:
    return next(i for i in items if i["name"] == name)


def test_declared_dependency_that_does_not_import(env: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # The original shipped `require('express-rate-limit')` without declaring... here: declared, not installed.
    monkeypatch.setenv("LEADKIT_DOCTOR_EXTRA_REQUIREMENTS", "express-rate-limit>=7")
    code, report = cli_json("doctor")
    assert code == 2 and report["ok"] is False
    check = named(report["checks"], "dependency:express-rate-limit")
    assert check["category"] == "dependency" and "declared but not installed" in check["detail"]
    assert "make setup" in check["hint"] and "pip install 'express-rate-limit>=7'" in check["hint"]
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["dependency:express-rate-limit"]


def test_endpoint_answering_an_html_404_page(env: Workspace, sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="html_404", times=1)
    code, items = cli_json("auth-check")
    apify = named(items, "apify")
    assert code == 2 and (apify["category"], apify["status"]) == ("config", 404)
    assert "wrong base URL, a missing route or a login page, not an expired token" in apify["hint"]
    assert named(items, "airtable")["ok"]


def test_expired_token(env: Workspace, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRTABLE_API_KEY", "tokExpiredLongAgo00000000000001")
    code, items = cli_json("auth-check")
    airtable = named(items, "airtable")
    assert code == 2 and (airtable["category"], airtable["status"]) == ("auth", 401)
    assert "personal access token" in airtable["hint"] and "scopes" in airtable["hint"]
    assert named(items, "apify")["ok"]


def test_rate_limit_storm(env: Workspace, sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="rate_limit_429", times=-1)
    try:
        code, items = cli_json("auth-check")
        assert code == 2 and named(items, "apify")["category"] == "rate_limit"
        # Three clients' harvests hit the storm: three real 429s, different runs and URLs, one group.
        with HttpClient(sandbox.apify_url, service="Apify", token=sandbox.token, retry=NO_RETRY) as http:
            for n, client in enumerate(["Acme-Co", "Globex", "Initech"]):
                with pytest.raises(RateLimitError) as caught:
                    http.request_json("GET", f"/v2/actor-runs/run{n}AbCdEf{n}")
                run = RunId.parse(f"25112{n}-0930{n}0")
                env.store.add_failure(failure_from(caught.value, run_id=run.base, client_id=client, stage="harvest"))
    finally:
        sandbox.clear_faults()
    code, groups = cli_json("failures")
    assert code == 0 and len(groups) == 1
    storm = groups[0]
    assert (storm["category"], storm["count"], storm["clients"]) == ("rate_limit", 3, ["Acme-Co", "Globex", "Initech"])
    assert "fewer workers" in storm["hint"] and storm["resolved"] is False


def test_stage_reporting_for_a_missing_client_run(env: Workspace) -> None:
    from leadkit.workflow import run_client

    run = RunId.parse(env.records.start_run().run_id)
    outcome = run_client(env.store, env.settings, run, "Globex", dry_run=True, records=env.records)
    assert outcome.record.source is Source.RECOVERY and outcome.status is ClientRunStatus.COMPLETED
    events = [e for e in env.store.list_events(run_id=run.base) if e.stage == "records"]
    assert [e.kind.value for e in events] == ["recovered"] and "recovery path" in events[0].message
    code, stats = cli_json("stats")
    assert code == 0 and stats["recoveries"] == 1 and stats["opens_by_source"]["recovery"] == 1


def test_record_left_running(env: Workspace) -> None:
    run = RunId.parse(env.records.start_run().run_id)
    record = env.records.open(run, "Acme-Co", Source.BATCH)
    record.heartbeat_at = utcnow() - timedelta(hours=2)
    env.store.save_client_run(record)
    code, health = cli_json("health", "Acme-Co")
    assert code == 0 and "no heartbeat" in health["next_step"] and "leadkit sweep" in health["next_step"]
    env.records.sweep()
    code, stats = cli_json("stats")
    assert stats["stale_swept"] == 1
    code, health = cli_json("health", "Acme-Co")
    assert health["last_runs"][0]["status"] == "Stale" and "--resume" in health["next_step"]


def test_unknown_field_and_unknown_select_option(
    env: Workspace, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadkit.store.airtable import AirtableStore
    from leadkit.store.schema import MASTER_TABLES

    from . import tables_spec

    spec = tables_spec(MASTER_TABLES, drop={"Client Run Results": {"Source"}})
    crr = next(t for t in spec if t["name"] == "Client Run Results")
    status = next(f for f in crr["fields"] if f["name"] == "Status")
    status["options"]["choices"] = [c for c in status["options"]["choices"] if c["name"] != "Stale"]
    master = sandbox.airtable.create_base("Master Clients", spec)

    # The writes fail as the original's did ("Unknown field name"); each failure is recorded and classified.
    store = AirtableStore(master, sandbox_settings(sandbox))
    store.save_client(Client("Acme-Co", "Acme"))
    from leadkit.records import RunRecordService

    run = RunId.parse("251128-093000")
    with pytest.raises(SchemaError) as caught:
        RunRecordService(store).open(run, "Acme-Co", Source.BATCH)
    env.store.add_failure(failure_from(caught.value, run_id=run.base, client_id="Acme-Co", stage="records"))
    code, groups = cli_json("failures")
    assert [g["category"] for g in groups] == ["schema"] and "Source" in groups[0]["fingerprint"]
    assert "leadkit airtable provision" in groups[0]["hint"]
    assert cli_json("stats")[1]["failed_opens"] == 1

    monkeypatch.setenv("LEADKIT_STORE", f"airtable://{master}")
    code, report = cli_json("doctor")
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert code == 2 and set(failed) == {
        f"schema:{master}:Client Run Results.Source",
        f"schema:{master}:Client Run Results.Status=Stale",
    }
    assert all(c["category"] == "schema" for c in failed.values())
    assert "leadkit airtable provision" in failed[f"schema:{master}:Client Run Results.Source"]["hint"]
    assert "Add the option 'Stale'" in failed[f"schema:{master}:Client Run Results.Status=Stale"]["hint"]


def test_expired_token_on_the_airtable_store_still_checks(
    env: Workspace, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the store on Airtable an expired token stops the workspace from opening: the checks must still run.
    from . import master_base

    master = master_base(sandbox)
    monkeypatch.setenv("LEADKIT_STORE", f"airtable://{master}")
    monkeypatch.setenv("AIRTABLE_API_KEY", "tokExpiredLongAgo00000000000002")
    code, items = cli_json("auth-check")
    assert code == 2
    assert [(i["name"], i["category"], i["status"]) for i in items[:2]] == [
        ("airtable", "auth", 401),
        (f"airtable:{master}", "auth", 401),
    ]
    assert named(items, "apify")["ok"]
