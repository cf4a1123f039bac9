"""Failure classification, fingerprints, groups (with `resolved`), record-keeping stats, one run's report."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadkit.classify import classified, classify_text, failure_from, fingerprint
from leadkit.diagnosis import describe_run, example_run, group_failures, record_stats
from leadkit.errors import AuthError, Category, SchemaError
from leadkit.models import ClientRunStatus, Failure, Source, utcnow
from leadkit.runids import RunId
from leadkit.workspace import Workspace

from . import cli_json


def test_fingerprint_normalises_ids_numbers_and_times() -> None:
    a = fingerprint(
        "upstream",
        "Apify run aBcD1234ef for 251128-093000-Acme-Co failed at 2026-11-28T09:30:01Z after 3 tries (rec0123456789abcd)",
    )
    b = fingerprint(
        "upstream",
        "Apify run 99ffee00aa for 251129-101500-Globex failed at 2026-11-29 10:15:44 after 12 tries (recZYXWVUTSRQPONM)",
    )
    assert a == b
    assert a.startswith("upstream: ") and "Acme" not in a and "2026" not in a
    assert fingerprint("auth", "x") != fingerprint("config", "x")


def test_failure_from_classifies_and_scrubs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIFY_TOKEN", "tokSecretCanary0000000000000042")
    failure = failure_from(AuthError("token tokSecretCanary0000000000000042 refused"), client_id="Acme-Co")
    assert failure.category == "auth" and "tokSecretCanary" not in failure.message
    assert failure.hint and failure.fingerprint.startswith("auth: ")
    bug = failure_from(KeyError("x"))
    assert bug.category == "bug" and bug.message.startswith("KeyError") and bug.traceback is None  # never raised


def test_text_classification_refines_bugs() -> None:
    assert classify_text("cell 3 raised SchemaError: table has no field 'Source'") is Category.SCHEMA
    assert classify_text("422 UNKNOWN_FIELD_NAME") is Category.SCHEMA
    assert classify_text("ModuleNotFoundError: No module named 'express_rate_limit'") is Category.DEPENDENCY
    assert classify_text("nothing to see") is None
    notebook = Failure("bug", fingerprint("bug", "cell 2 raised AuthError: 401"), "cell 2 raised AuthError: 401", "h")
    refined = classified(notebook)
    assert refined.category == "auth" and refined.fingerprint.startswith("auth: ") and "token" in refined.hint


def _fail(ws: Workspace, run_id: RunId, client_id: str, exc: Exception, *, minutes_ago: float) -> None:
    at = utcnow() - timedelta(minutes=minutes_ago)
    ws.store.add_failure(failure_from(exc, run_id=run_id.base, client_id=client_id, stage="harvest", at=at))


def test_groups_counts_clients_resolved_and_since(workspace: Workspace) -> None:
    old = RunId.parse("251120-080000")
    for n, client in enumerate(["Acme-Co", "Globex", "Acme-Co"]):
        _fail(
            workspace,
            old,
            client,
            SchemaError(f"table 'Leads' has no field 'Score {n}' ({n + 10} records)"),
            minutes_ago=60 - n,
        )
    _fail(workspace, old, "Acme-Co", AuthError("Apify answered 401"), minutes_ago=5)

    groups = group_failures(workspace)
    assert [g.category for g in groups] == ["auth", "schema"]  # newest last_seen first
    schema = groups[1]
    assert (schema.count, schema.clients, schema.resolved) == (3, ["Acme-Co", "Globex"], False)
    assert schema.first_seen < schema.last_seen and "provision" in schema.hint
    assert set(schema.to_dict()) >= {
        "category",
        "fingerprint",
        "count",
        "first_seen",
        "last_seen",
        "clients",
        "hint",
        "resolved",
    }

    # A later completed run for Acme-Co only: not resolved (Globex has none); then Globex too: resolved.
    records = workspace.records
    run = RunId.parse(records.start_run().run_id)
    for client in ("Acme-Co",):
        records.update(records.open(run, client, Source.BATCH), status=ClientRunStatus.COMPLETED)
    assert not group_failures(workspace)[1].resolved
    records.update(records.open(run, "Globex", Source.BATCH), status=ClientRunStatus.FAILED)
    assert not group_failures(workspace)[1].resolved  # a failed run resolves nothing
    later = RunId.parse(records.start_run().run_id)
    records.update(records.open(later, "Globex", Source.BATCH), status=ClientRunStatus.COMPLETED)
    groups = group_failures(workspace)
    assert groups[1].resolved and groups[0].resolved  # auth: Acme-Co completed a run after it
    assert [g.category for g in group_failures(workspace, unresolved_only=True)] == []
    assert [g.category for g in group_failures(workspace, since=utcnow() - timedelta(minutes=30))] == ["auth"]


def test_record_stats(workspace: Workspace) -> None:
    records = workspace.records
    run = RunId.parse(records.start_run().run_id)
    records.open_many(run, ["Acme-Co", "Globex"], Source.BATCH)
    records.open(run, "Acme-Co", Source.NOTEBOOK)  # a duplicate prevented
    records.attach(run, "Initech")  # the recovery path
    stale = records.open(run, "Hooli", Source.BATCH)
    stale.heartbeat_at = utcnow() - timedelta(hours=2)
    workspace.store.save_client_run(stale)
    assert len(records.sweep(older_than=timedelta(minutes=15))) == 1
    workspace.store.add_failure(
        failure_from(SchemaError("no field 'Run ID'"), run_id=run.base, client_id="Soylent", stage="records")
    )
    stats = record_stats(workspace)
    assert stats["opens_by_source"] == {"batch": 3, "notebook": 1, "recovery": 1}
    assert (stats["created"], stats["reopens"], stats["recoveries"]) == (4, 1, 1)
    assert (stats["failed_opens"], stats["stale_swept"]) == (1, 1)
    assert stats["creation_success_rate"] == pytest.approx(5 / 6, abs=1e-3)
    assert record_stats(workspace, since=utcnow() + timedelta(minutes=1))["creation_success_rate"] is None

    code, data = cli_json("stats", "--since", "1h")
    assert code == 0 and data["recoveries"] == 1 and data["stale_swept"] == 1


def test_describe_example_run_and_failures_cli(workspace: Workspace) -> None:
    run_id = example_run(workspace)
    report = describe_run(workspace, run_id)
    statuses = {c["client_id"]: (c["status"], c["source"]) for c in report["clients"]}
    assert statuses["Acme-Co"] == ("Failed", "recovery")
    assert statuses["Globex"] == ("Completed", "batch") and statuses["Initech"][0] == "Skipped"
    assert [(f["client_id"], f["category"], f["stage"]) for f in report["failures"]] == [
        ("Acme-Co", "config", "harvest")
    ]
    assert {"eligibility", "harvest"} <= {s["stage"] for s in report["stages"]}
    assert any(e["kind"] == "recovered" for e in report["events"])

    code, groups = cli_json("failures", "--since", "1d")
    assert code == 0 and len(groups) == 1
    assert (groups[0]["category"], groups[0]["clients"], groups[0]["resolved"]) == ("config", ["Acme-Co"], False)
    assert "APIFY_TOKEN" in groups[0]["hint"]
    code, groups = cli_json("failures", "--unresolved")
    assert len(groups) == 1
