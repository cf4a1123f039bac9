"""Failure headlines, a client's history over days, and the attempt/status-history records (no papermill)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import leadkit as lk
from leadkit.diagnosis import example_history, failure_headline
from leadkit.errors import DataError
from leadkit.history import attempt_notebook, end_attempt, list_attempts, record_finish, status_event
from leadkit.models import ClientRunStatus, Source
from leadkit.workspace import Workspace

HTML_404 = (
    "Apify answered 404 for http://127.0.0.1:41699/v2/acts/harvestapi~linkedin-profile-posts/runs; the body is not "
    "JSON (content type text/html; charset=utf-8, starts with '<!DOCTYPE html>\\n<html><head><title>404 Not Found"
    "</title></head><body><h1>404 Not'). An HTML page where JSON was expected usually means a wrong base URL."
)


def test_headline_keeps_the_url_and_the_first_line_of_the_body() -> None:
    assert failure_headline(HTML_404) == (
        "Apify answered 404 for http://127.0.0.1:41699/v2/acts/harvestapi~linkedin-profile-posts/runs "
        '(body: "404 Not Found")'
    )
    untitled = (
        "Airtable answered 502 for https://api.airtable.com/v0/appX/T; the body is not JSON (content type "
        "text/html, starts with '<html><body>\\n<p>Bad gateway</p>')."
    )
    assert failure_headline(untitled).endswith('(body: "Bad gateway")')
    assert (
        failure_headline("UpstreamError: timed out; retry later\nsecond line")
        == "UpstreamError: timed out; retry later"
    )


def test_client_history_counts_per_day(workspace: Workspace) -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    example_history(workspace, days=30, now=now)
    history = lk.client_history(workspace, "Globex", days=30, now=now)
    daily = history["daily"]
    assert len(daily) == 30 and daily[0]["day"] == "2026-11-04" and daily[-1]["day"] == "2026-12-03"
    assert all(d["runs"] == 1 for d in daily)
    assert [d["day"] for d in daily if d["failures"]] == ["2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
    assert history["failures_by_category"] == {"config": 2, "upstream": 2}
    acme = lk.client_history(workspace, "Acme-Co", days=30, now=now)
    assert sum(d["failures"] for d in acme["daily"]) == 0 and sum(d["posts"] for d in acme["daily"]) > 0
    assert all(d["seconds_per_run"] and d["seconds_per_run"] > 0 for d in acme["daily"])
    with pytest.raises(DataError, match="days=0"):
        lk.client_history(workspace, "Globex", days=0)


def test_attempts_and_status_history_from_events(workspace: Workspace) -> None:
    records = workspace.records
    run = records.start_run()
    rid = lk.RunId.parse(run.run_id)
    (record,) = records.open_many(rid, ["Globex"], Source.BATCH)
    records.update(record, status=ClientRunStatus.FAILED, reason="stage harvest: 0 posts")
    record_finish(workspace, records.finish_run(run))
    first = workspace.run_dir(rid) / "Globex.ipynb"
    first.parent.mkdir(parents=True, exist_ok=True)
    first.write_text("{}")
    assert attempt_notebook(first.parent, "Globex", 2).name == "Globex.attempt-2.ipynb"
    workspace.store.add_events([end_attempt(record, 1), status_event(run, "Resumed (was Completed with Errors)")])
    records.update(record, status=ClientRunStatus.COMPLETED, reason="done")
    record_finish(workspace, records.finish_run(run))
    tries = list_attempts(workspace, record)
    assert [(t.number, t.status, t.why, t.current) for t in tries] == [
        (1, "Failed", "stage harvest: 0 posts", False),
        (2, "Completed", "done", True),
    ]
    assert tries[0].notebook == str(first)
    assert [c.status for c in lk.run_history(workspace, run.run_id)] == [
        "Failed",
        "Resumed (was Completed with Errors)",
        "Completed after resume",
    ]
    assert lk.run_status_label(workspace, workspace.records.get_run(rid)) == "Completed after resume"


def test_latest_attempt_reads_events_only_when_an_older_record_was_written_after_the_newest_start(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    records, store = workspace.records, workspace.store
    clock = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    monkeypatch.setattr(records, "now", lambda: clock[0])
    reads: list[tuple[str | None, str | None]] = []
    list_events = store.list_events

    def counted(**kwargs: object) -> object:
        reads.append((kwargs.get("run_id"), kwargs.get("client_id")))  # type: ignore[arg-type]
        return list_events(**kwargs)  # type: ignore[arg-type]

    older_run = records.start_run()
    (older,) = records.open_many(lk.RunId.parse(older_run.run_id), ["Globex"], Source.BATCH)
    clock[0] += timedelta(minutes=1)
    records.update(older, status=ClientRunStatus.FAILED, reason="stage harvest: 0 posts")
    clock[0] += timedelta(minutes=10)
    newer_run = records.start_run()
    (newer,) = records.open_many(lk.RunId.parse(newer_run.run_id), ["Globex"], Source.BATCH)
    clock[0] += timedelta(minutes=1)
    records.update(newer, status=ClientRunStatus.FAILED, reason="stage harvest: 0 posts")

    monkeypatch.setattr(store, "list_events", counted)
    latest = lk.latest_attempt(store, "Globex")
    assert latest is not None and latest.run_id == newer_run.run_id
    assert reads == []  # the older record was last written before the newer one started

    # the older run is resumed after the newer one: its attempt started last, and only its events tell
    clock[0] += timedelta(minutes=10)
    store.add_events([end_attempt(older, 1, at=clock[0])])
    records.update(older, status=ClientRunStatus.COMPLETED, reason="done")
    latest = lk.latest_attempt(store, "Globex")
    assert latest is not None and latest.run_id == older_run.run_id and latest.status is ClientRunStatus.COMPLETED
    assert {run for run, _ in reads} == {older_run.run_id, newer_run.run_id}
