"""The per-client workflow: a registry of stages run in order, each reporting events to the ClientRun.

Stages: `eligibility` (is this client due for harvesting today, and if not, why) then `harvest` (posts through
Apify). The notebook `client_workflow.ipynb` calls `run_client`; so can a test or a script.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadkit import logs
from leadkit.classify import failure_from
from leadkit.config import Settings
from leadkit.errors import DataError, LeadkitError
from leadkit.models import Client, ClientRun, ClientRunStatus, EventKind, Failure, Lead, RunEvent, utcnow
from leadkit.records import RunRecordService, from_handoff
from leadkit.runids import RunId
from leadkit.store.base import Store

log = logging.getLogger("leadkit.workflow")


@dataclass
class Verdict:
    """Whether a client is due for harvesting, and why (not)."""

    due: bool
    reason: str
    leads_waiting: int = 0
    posts_today: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "reason": self.reason,
            "leads_waiting": self.leads_waiting,
            "posts_today": self.posts_today,
        }


def decide(client: Client, leads: Sequence[Lead], now: datetime) -> Verdict:
    """The eligibility rules of the original's harvesting, in the order an operator would check them."""
    from leadkit.harvest.harvester import posts_today, select_leads

    if not client.active:
        return Verdict(False, f"client status is {client.status!r}, not 'Active'")
    if client.service_level < 2:
        return Verdict(False, f"service level {client.service_level} is below 2 (post harvesting needs 2 or more)")
    if not client.post_access:
        return Verdict(False, "Post Access Enabled is not 'Yes'")
    if client.daily_target <= 0 or client.batch_size <= 0:
        return Verdict(
            False,
            f"no daily target or batch size (Posts Daily Target={client.daily_target}, "
            f"Leads Batch Size={client.batch_size})",
        )
    waiting = len(select_leads(list(leads), now))
    today = posts_today(list(leads), now)
    if waiting == 0:
        return Verdict(False, "no lead waiting for harvesting", leads_waiting=0, posts_today=today)
    if today >= client.daily_target:
        return Verdict(
            False,
            f"today's target already met ({today} of {client.daily_target} posts)",
            leads_waiting=waiting,
            posts_today=today,
        )
    return Verdict(True, f"{waiting} leads waiting, {today} of {client.daily_target} posts today", waiting, today)


@dataclass
class StageContext:
    run_id: RunId
    client: Client
    record: ClientRun
    records: RunRecordService
    store: Store
    settings: Settings
    dry_run: bool
    now: Callable[[], datetime] = utcnow
    verdict: Verdict | None = None
    pending: list[RunEvent] = field(default_factory=list)

    def event(self, stage: str, kind: EventKind, message: str = "", **metrics: float) -> RunEvent:
        event = RunEvent(
            run_id=self.run_id.base,
            client_id=self.client.client_id,
            stage=stage,
            kind=kind,
            message=message,
            metrics=dict(metrics),
            at=self.now(),
        )
        self.pending.append(event)
        log.info("%s %s %s", stage, kind.value, message)
        return event

    def flush(self, **kw: Any) -> None:
        """Write pending events (and any status change) in one store call; also the heartbeat."""
        self.records.update(self.record, self.pending, **kw)
        self.pending = []


@dataclass
class StageResult:
    """What a stage reports: done, skipped (with the reason: the client is not due) or partly failed."""

    outcome: str  # "completed", "skipped", "partial", "failed"
    message: str = ""
    failures: list[LeadkitError] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


Stage = Callable[[StageContext], StageResult]
STAGES: dict[str, Stage] = {}


def stage(name: str) -> Callable[[Stage], Stage]:
    def register(fn: Stage) -> Stage:
        STAGES[name] = fn
        return fn

    return register


DEFAULT_STAGES = ("eligibility", "harvest")


@stage("eligibility")
def eligibility_stage(ctx: StageContext) -> StageResult:
    leads = ctx.store.lead_base(ctx.client).list_leads()
    verdict = decide(ctx.client, leads, ctx.now())
    ctx.verdict = verdict
    if verdict.due:
        return StageResult("completed", f"due: {verdict.reason}", metrics={"leads_waiting": verdict.leads_waiting})
    return StageResult("skipped", verdict.reason)


@stage("harvest")
def harvest_stage(ctx: StageContext) -> StageResult:
    from leadkit.harvest.apify import ApifyClient
    from leadkit.harvest.harvester import BatchOutcome, Harvester

    if ctx.dry_run:
        ctx.event("harvest", EventKind.SKIPPED, "dry run: nothing sent to Apify")
        return StageResult("completed", "dry run")
    apify = ApifyClient.from_settings(ctx.settings)
    harvester = Harvester(apify, now=ctx.now)

    def on_batch(outcome: BatchOutcome) -> None:
        kind = EventKind.FAILED if outcome.error else EventKind.COMPLETED
        status = outcome.apify_status or "-"
        message = f"batch of {len(outcome.lead_ids)} leads: Apify run {outcome.apify_run_id or '-'} {status}"
        if outcome.error:
            message += f": {outcome.error}"
        ctx.event(
            "harvest",
            kind,
            message,
            profiles_submitted=outcome.profiles_submitted,
            posts_harvested=outcome.posts_harvested,
            apify_cost_usd=outcome.cost_usd,
            batches=1,
            batches_failed=1 if outcome.error else 0,
        )
        ctx.flush()

    try:
        report = harvester.run(
            ctx.client, ctx.store.lead_base(ctx.client), f"{ctx.run_id.base}-{ctx.client.client_id}", on_batch=on_batch
        )
    finally:
        apify.close()
    failures = [b.error for b in report.batches if b.error is not None]
    summary = (
        f"{report.posts_harvested} posts from {report.profiles_submitted} profiles in {len(report.batches)} batches"
    )
    if failures and report.succeeded:
        return StageResult("partial", summary, failures)
    if failures:
        return StageResult("failed", summary, failures)
    return StageResult("completed", summary)


@dataclass
class ClientOutcome:
    record: ClientRun
    verdict: Verdict | None
    stages: dict[str, str]

    @property
    def status(self) -> ClientRunStatus:
        return self.record.status


def run_client(
    store: Store,
    settings: Settings,
    run_id: RunId,
    client_id: str,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    dry_run: bool = False,
    notebook: str | None = None,
    records: RunRecordService | None = None,
    handoff: str = "",
) -> ClientOutcome:
    """Run the stages for one client and complete its ClientRun (attached, or opened by recovery).

    `handoff` is what a batch passes about the client and the ClientRun it opened (see `records.handoff`)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DataError(f"unknown stage(s) {unknown}; known stages: {', '.join(STAGES)}")
    records = records or RunRecordService(store, stale_after_s=settings.leadkit_stale_after_s)
    with logs.context(run_id=run_id.base, client_id=client_id):
        return _run_client(store, settings, records, run_id, client_id, stages, dry_run, notebook, handoff)


def _run_client(
    store: Store,
    settings: Settings,
    records: RunRecordService,
    run_id: RunId,
    client_id: str,
    stages: Sequence[str],
    dry_run: bool,
    notebook: str | None,
    handoff: str,
) -> ClientOutcome:
    if handoff:
        client, record, known_events = from_handoff(handoff, run_id, client_id)
        if known_events is not None:
            store.adopt_client_run(record, known_events)
    else:
        client = store.get_client(client_id)
        record = records.attach(run_id, client)
    if record.status.terminal:
        log.info("ClientRun %s is %s already; nothing to do", record.client_run_id, record.status.value)
        return ClientOutcome(record, None, {})
    ctx = StageContext(run_id, client, record, records, store, settings, dry_run, now=records.now)
    results: dict[str, str] = {}
    failures: list[LeadkitError] = []
    status = ClientRunStatus.COMPLETED
    reason: str | None = None
    failure: Failure | None = None
    summary: list[str] = []
    for position, name in enumerate(stages):
        ctx.event(name, EventKind.STARTED)
        try:
            result = STAGES[name](ctx)
        except Exception as exc:  # a stage's own bug or an error it did not expect: classified, recorded
            failure = failure_from(exc, run_id=run_id.base, client_id=client.client_id, stage=name, notebook=notebook)
            ctx.event(name, EventKind.FAILED, failure.message)
            results[name] = "failed"
            status, reason = ClientRunStatus.FAILED, f"stage {name} failed: {failure.message}"
            break
        results[name] = result.outcome
        failures += result.failures
        if result.outcome == "skipped":
            ctx.event(name, EventKind.SKIPPED, f"not due: {result.message}", **result.metrics)
            status, reason = ClientRunStatus.SKIPPED, result.message
            break
        if result.outcome in ("failed", "partial"):
            ctx.event(
                name,
                EventKind.FAILED if result.outcome == "failed" else EventKind.COMPLETED,
                result.message,
                **result.metrics,
            )
            status = ClientRunStatus.FAILED if result.outcome == "failed" else ClientRunStatus.COMPLETED_WITH_ERRORS
            reason = f"stage {name}: {result.message}"
            break
        ctx.event(name, EventKind.COMPLETED, result.message, **result.metrics)
        summary.append(f"{name}: {result.message}" if result.message else name)
        if position < len(stages) - 1 and name != "eligibility":
            ctx.flush()
    if failure is None and failures:
        failure = failure_from(
            failures[0], run_id=run_id.base, client_id=client.client_id, stage="harvest", notebook=notebook
        )
    if reason is None:
        reason = "; ".join(summary)
    ctx.flush(status=status, reason=reason, failure=failure, notebook=notebook)
    return ClientOutcome(ctx.record, ctx.verdict, results)
