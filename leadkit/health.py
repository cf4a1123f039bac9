"""Client health: why is this client being harvested, or not, and what to do next.

One verdict from everything an operator would otherwise look up by hand: the client's settings, the eligibility
rules (`leadkit.workflow.decide`), its leads by harvest status, its last runs and its last failure.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from leadkit.errors import LeadkitError
from leadkit.models import Client, ClientRun, ClientRunStatus, DuePolicy, Failure, Lead, utcnow
from leadkit.runids import validate_client_id
from leadkit.store.base import LeadSummaries, LeadSummary

if TYPE_CHECKING:
    from leadkit.workflow import Verdict
    from leadkit.workspace import Workspace

__all__ = ["client_health", "workspace_health"]

#: How many of the client's latest runs the verdict shows.
LAST_RUNS = 5
BLANK = "(blank)"


def client_health(ws: Workspace, client_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The client's health as JSON-able data: client, verdict, leads_by_status, last_runs, last_failure,
    next_step (and lead_base_error when its leads could not be read)."""
    from leadkit.harvest.harvester import due_policy, next_due
    from leadkit.workflow import decide

    now = now or utcnow()
    client = ws.store.get_client(validate_client_id(client_id))
    leads: list[Lead] | None = None
    lead_error: LeadkitError | None = None
    try:
        leads = ws.store.lead_base(client).list_leads()
    except LeadkitError as exc:  # reported in the verdict, with its category and hint
        lead_error = exc
    runs = ws.store.list_client_runs(client_id=client.client_id, limit=LAST_RUNS)
    verdict = decide(client, ws.store.lead_base(client), now, due_policy(ws.settings)) if leads is not None else None
    last_failure = _last_failure(ws, client.client_id, runs)
    settings = client.to_dict()
    settings["max_batches"] = client.max_batches
    settings["base_id"] = client.base_id
    return {
        "client_id": client.client_id,
        "checked_at": now.isoformat(),
        "client": settings,
        "verdict": verdict.to_dict() if verdict is not None else None,
        "leads_by_status": _by_status(leads) if leads is not None else None,
        "leads_total": len(leads) if leads is not None else None,
        "next_lead_due_at": next_due(leads, now, due_policy(ws.settings)) if leads is not None else None,
        "last_runs": [_run_dict(r) for r in runs],
        "last_failure": _failure_dict(last_failure) if last_failure else None,
        "lead_base_error": lead_error.to_dict() if lead_error is not None else None,
        "next_step": next_step(client, verdict, runs, last_failure, lead_error, ws.settings.leadkit_stale_after_s, now),
    }


def workspace_health(ws: Workspace, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """`client_health` of every client (by client ID), read per workspace, not per client: the clients, their
    newest ClientRuns and the kept lead summaries (`LeadSummaries`) are one query each; only a client with no
    usable summary (a backend that keeps none, leads not written since summaries exist) has its leads read, and
    only a client whose newest run failed has its failure read. `last_runs` holds the newest run only."""
    from leadkit.harvest.harvester import due_policy

    now = now or utcnow()
    policy = due_policy(ws.settings)
    store = ws.store
    clients = store.list_clients()
    summaries = store.lead_summaries() if isinstance(store, LeadSummaries) else {}
    newest = store.latest_client_runs([c.client_id for c in clients])
    out = []
    for client in clients:
        summary = summaries.get(client.client_id)
        info = _from_summary(ws, client, summary, newest.get(client.client_id), policy, now) if summary else None
        out.append(info if info is not None else client_health(ws, client.client_id, now=now))
    return out


def _from_summary(
    ws: Workspace, client: Client, summary: LeadSummary, last: ClientRun | None, policy: DuePolicy, now: datetime
) -> dict[str, Any] | None:
    """`client_health` from the kept lead summary; None when the summary cannot answer for `now`."""
    from leadkit.workflow import decide

    leads = _CountedLeads(client.client_id, summary, policy)
    try:
        verdict = decide(client, leads, now, policy)  # type: ignore[arg-type]  # decide counts; it names no lead
    except _CannotTell:
        return None
    runs = [last] if last is not None else []
    failure = None
    if last is not None and last.status in (ClientRunStatus.FAILED, ClientRunStatus.STALE):
        failure = _last_failure(ws, client.client_id, runs)
    due = summary.next_due(policy, now)
    counts = {(status or BLANK): n for status, n in summary.by_status.items()}
    settings = client.to_dict()
    settings["max_batches"] = client.max_batches
    settings["base_id"] = client.base_id
    return {
        "client_id": client.client_id,
        "checked_at": now.isoformat(),
        "client": settings,
        "verdict": verdict.to_dict(),
        "leads_by_status": dict(sorted(counts.items())),
        "leads_total": summary.total,
        "next_lead_due_at": due.isoformat() if due is not None else None,
        "last_runs": [_run_dict(r) for r in runs],
        "last_failure": _failure_dict(failure) if failure else None,
        "lead_base_error": None,
        "next_step": next_step(client, verdict, runs, failure, None, ws.settings.leadkit_stale_after_s, now),
    }


class _CannotTell(Exception):
    """The lead summary cannot answer for this time: the client's leads are read instead."""


class _CountedLeads:
    """What `workflow.decide` asks of a lead base, answered from a `LeadSummary`: decide only counts the due
    leads, so `due_leads` returns that many copies of one unnamed lead."""

    _UNNAMED = Lead(lead_id="", profile_url="")

    def __init__(self, client_id: str, summary: LeadSummary, policy: DuePolicy) -> None:
        self.client_id = client_id
        self.summary = summary
        self.policy = policy

    def due_leads(self, policy: DuePolicy, now: datetime, *, limit: int) -> list[Lead]:
        waiting = self.summary.waiting(policy, now, limit)
        if waiting is None:
            raise _CannotTell
        return [self._UNNAMED] * waiting

    def posts_found_since(self, since: datetime) -> int:
        posts = self.summary.posts_on(since.date())
        if posts is None:
            raise _CannotTell
        return posts


def _by_status(leads: list[Lead]) -> dict[str, int]:
    counts = Counter(lead.harvest_status.value if lead.harvest_status else BLANK for lead in leads)
    return dict(sorted(counts.items()))


def _run_dict(record: ClientRun) -> dict[str, Any]:
    out = record.to_dict()
    out["run_id"] = record.run_id
    out["started_at"] = record.started_at.isoformat()
    out["ended_at"] = record.ended_at.isoformat() if record.ended_at else None
    out["heartbeat_at"] = record.heartbeat_at.isoformat()
    return out


def _failure_dict(failure: Failure) -> dict[str, Any]:
    out = failure.to_dict()
    out.update(run_id=failure.run_id, stage=failure.stage, at=failure.at.isoformat(), notebook=failure.notebook)
    return out


def _last_failure(ws: Workspace, client_id: str, runs: list[ClientRun]) -> Failure | None:
    for record in runs:
        if record.failure is not None:
            return record.failure
    newest = ws.store.list_failures(client_id=client_id, limit=1)
    return newest[0] if newest else None


def next_step(
    client: Client,
    verdict: Verdict | None,
    runs: list[ClientRun],
    last_failure: Failure | None,
    lead_error: LeadkitError | None,
    stale_after_s: float,
    now: datetime,
) -> str:
    """One plain sentence: the first thing an operator should do for this client."""
    if lead_error is not None:
        return f"Its leads could not be read ({lead_error.category.value}): {lead_error.hint}"
    last = runs[0] if runs else None
    if last is not None and last.status is ClientRunStatus.RUNNING:
        age = (now - last.heartbeat_at).total_seconds()
        if age > stale_after_s:
            return (
                f"Run {last.run_id} has been Running with no heartbeat for {int(age)} s: its process is gone. "
                "`leadkit sweep` marks it Stale; then `leadkit batch --resume "
                f"{last.run_id}`."
            )
        return f"Run {last.run_id} is harvesting it now; wait for it to finish."
    if last is not None and last.status in (ClientRunStatus.FAILED, ClientRunStatus.STALE):
        why = last_failure.hint if last_failure is not None else (last.reason or "see `leadkit failures`")
        return f"Its last run ({last.run_id}) ended {last.outcome}: {why} Then `leadkit batch --resume {last.run_id}`."
    assert verdict is not None
    if verdict.due:
        if last is None:
            return "It is due and has never been run: the next batch (`leadkit batch`) harvests it."
        return f"It is due ({verdict.reason}): the next batch (`leadkit batch`) harvests it."
    reason = verdict.reason
    if not client.active:
        return f"Not harvested: {reason}. `leadkit clients activate {client.client_id}` includes it again."
    if client.service_level < 2:
        return (
            f"Not harvested: {reason}. If it paid for post harvesting: "
            f"`leadkit clients set {client.client_id} --service-level 2`."
        )
    if not client.post_access:
        return (
            f"Not harvested: {reason}. `leadkit clients set {client.client_id} --post-access yes` allows Apify for it."
        )
    if client.daily_target <= 0 or client.batch_size <= 0:
        return (
            f"Not harvested: {reason}. "
            f"`leadkit clients set {client.client_id} --daily-target 20 --batch-size 20` (any values above 0)."
        )
    if verdict.leads_waiting == 0:
        return (
            f"Nothing to do: {reason}. Import leads (`leadkit leads import {client.client_id} FILE`) to harvest more."
        )
    return f"Nothing to do today: {reason}. It is harvested again tomorrow."
