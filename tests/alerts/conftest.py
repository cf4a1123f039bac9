"""Fixtures: the receivers, a workspace whose alerts go to both, and a helper that records a batch's outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadkit.classify import failure_from
from leadkit.errors import ConfigError, UpstreamError
from leadkit.models import ClientRun, ClientRunStatus, EventKind, Run, RunEvent, Source
from leadkit.runids import RunId
from leadkit.workspace import Workspace

from .receivers import Mailbox, Webhook, smtp_server, webhook_server

HTML_404 = "Apify answered an HTML page (status 404) instead of JSON: a wrong base URL, a missing route or a login page"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def alerting(workspace: Workspace, mailbox: Mailbox, hook: Webhook, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The demo-client workspace with LEADKIT_ALERT_URLS set to the SMTP server and the webhook."""
    monkeypatch.setenv("LEADKIT_ALERT_URLS", f"{mailbox.url()}, {hook.url()}")
    for name in ("LEADKIT_ALERT_WINDOW", "LEADKIT_ALERTS_OFF", "LEADKIT_MAX_SILENCE", "LEADKIT_DASHBOARD_URL"):
        monkeypatch.delenv(name, raising=False)
    return workspace


def batch(
    ws: Workspace, outcomes: dict[str, str | int], *, stream: int = 1, retried: tuple[str, ...] = ()
) -> tuple[Run, list[ClientRun]]:
    """Record a finished batch: each client `config` / `upstream` (Failed with that failure) or a post count
    (Completed). Clients in `retried` failed a first attempt inside the batch before completing."""
    records = ws.records
    run = records.start_run(stream=stream)
    run_id = RunId.parse(run.run_id)
    opened = records.open_many(run_id, list(outcomes), Source.BATCH)
    for record in opened:
        outcome = outcomes[record.client_id]
        if record.client_id in retried:
            records.store.add_failure(
                failure_from(
                    UpstreamError("Apify answered 502 Bad Gateway"), run_id=run.run_id, client_id=record.client_id
                )
            )
        if isinstance(outcome, int):
            event = RunEvent(
                run.run_id, record.client_id, "harvest", EventKind.COMPLETED, "ok", {"posts_harvested": outcome}
            )
            records.update(record, [event], status=ClientRunStatus.COMPLETED)
        else:
            exc = ConfigError(HTML_404) if outcome == "config" else UpstreamError("Apify answered 502 Bad Gateway")
            failure = failure_from(exc, run_id=run.run_id, client_id=record.client_id, stage="harvest")
            records.update(record, status=ClientRunStatus.FAILED, failure=failure, reason=failure.message)
    run = records.finish_run(run)
    return run, ws.store.list_client_runs(run_id=run.run_id)


def after(ws: Workspace, outcomes: dict[str, str | int], **kw: object) -> tuple[Run, list]:
    from leadkit.alerts import after_batch

    run, final = batch(ws, outcomes, **kw)  # type: ignore[arg-type]
    return run, after_batch(ws, run, final)
