"""The per-client workflow: a registry of stages run in order, each reporting events to the ClientRun.

Stages: `eligibility` (is this client due for harvesting today, and if not, why) then `harvest` (posts through
Apify). The notebook `client_workflow.ipynb` calls `run_client`; so can a test or a script.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadkit import deadline_scope, logs
from leadkit.classify import failure_from
from leadkit.config import Settings
from leadkit.deadline import Deadline
from leadkit.durations import format_duration
from leadkit.errors import DataError, LeadkitError, NotebookError
from leadkit.models import Client, ClientRun, ClientRunStatus, DuePolicy, EventKind, Failure, Lead, RunEvent, utcnow
from leadkit.records import RunRecordService, from_handoff
from leadkit.runids import RunId
from leadkit.store.base import LeadBase, Store
from leadkit.words import plural

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


def decide(client: Client, leads: LeadBase, now: datetime, policy: DuePolicy | None = None) -> Verdict:
    """The eligibility rules of the original's harvesting, in the order an operator would check them."""
    policy = policy or DuePolicy()
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
    waiting = len(leads.due_leads(policy, now, limit=client.batch_size * max(1, client.max_batches)))
    today = leads.posts_found_since(now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0))
    if waiting == 0:
        return Verdict(
            False,
            f"no lead waiting for harvesting (none due: Done leads are refreshed {format_duration(policy.refresh_after)} after "
            f"their last check, No Posts leads re-checked after {format_duration(policy.no_posts_recheck)}; "
            f"`leadkit leads list` shows when each is next due)",
            leads_waiting=0,
            posts_today=today,
        )
    if today >= client.daily_target:
        return Verdict(
            False,
            f"today's target already met ({today} of {client.daily_target} posts)",
            leads_waiting=waiting,
            posts_today=today,
        )
    return Verdict(True, f"{waiting} leads due, {today} of {client.daily_target} posts today", waiting, today)


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
    #: The client's one time budget (from the notebook's timeout): every wait of every stage draws on it.
    deadline: Deadline = field(default_factory=Deadline.unbounded)
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
    from leadkit.harvest.harvester import due_policy

    verdict = decide(ctx.client, ctx.store.lead_base(ctx.client), ctx.now(), due_policy(ctx.settings))
    ctx.verdict = verdict
    if verdict.due:
        return StageResult("completed", f"due: {verdict.reason}", metrics={"leads_waiting": verdict.leads_waiting})
    return StageResult("skipped", verdict.reason)


@stage("harvest")
def harvest_stage(ctx: StageContext) -> StageResult:
    from leadkit.harvest.apify import ApifyClient, StartedRun
    from leadkit.harvest.harvester import BatchOutcome, Harvester, due_policy, terminate_on_sigterm

    if ctx.dry_run:
        ctx.event("harvest", EventKind.SKIPPED, "dry run: nothing sent to Apify")
        return StageResult("completed", "dry run")
    apify = ApifyClient.from_settings(ctx.settings)
    harvester = Harvester(apify, now=ctx.now, policy=due_policy(ctx.settings))
    spent_today = _apify_spent_today(ctx)

    def on_started(batch: list[Lead], started: StartedRun) -> None:
        # Written at once: if this process is killed while the run works, the run ID is on record.
        how = "adopted" if started.adopted else "started"
        notes = "; ".join(started.notes)
        message = f"Apify run {started.run.id} {how} for {len(batch)} targets" + (f" ({notes})" if notes else "")
        ctx.event("harvest", EventKind.INFO, message)
        ctx.flush()

    def on_batch(outcome: BatchOutcome) -> None:
        kind = EventKind.FAILED if outcome.error else EventKind.COMPLETED
        if outcome.apify_run_id:
            apify_said = f"Apify run {outcome.apify_run_id} {outcome.apify_status or '(status unknown)'}"
        else:
            apify_said = "no Apify run started"
        message = (
            f"{'refresh ' if outcome.refresh else ''}batch of {plural(len(outcome.lead_ids), 'lead')}: {apify_said}, "
            f"${outcome.cost_usd:.3f}; targets: {outcome.with_posts} with "
            f"posts, {outcome.no_posts} empty, {outcome.not_covered} not covered"
        )
        if outcome.error:
            message += f": {outcome.error}"
        if outcome.notes and outcome.error:
            message += f" ({'; '.join(outcome.notes)})"
        ctx.event("harvest", kind, message, **outcome.metrics())
        ctx.flush()

    try:
        with terminate_on_sigterm():
            report = harvester.run(
                ctx.client,
                ctx.store.lead_base(ctx.client),
                f"{ctx.run_id.base}-{ctx.client.client_id}",
                on_batch=on_batch,
                deadline=ctx.deadline,
                spent_today_usd=spent_today,
                on_started=on_started,
            )
    finally:
        apify.close()
    failures = [b.error for b in report.batches if b.error is not None]
    summary = (
        f"{plural(report.posts_harvested, 'new post')} from {plural(report.profiles_submitted, 'profile')} in "
        f"{plural(len(report.batches), 'batch')}, ${report.cost_usd:.3f} on Apify"
    )
    if report.reason:
        summary += f"; stopped: {report.reason}"
    if failures and report.succeeded:
        return StageResult("partial", summary, failures)
    if failures:
        return StageResult("failed", summary, failures)
    return StageResult("completed", summary)


def _apify_spent_today(ctx: StageContext) -> float:
    """What this client's runs cost on Apify today (UTC), from their ClientRuns' `apify_cost_usd`."""
    if ctx.client.max_usd_per_day is None:
        return 0.0
    today = ctx.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    runs = ctx.store.list_client_runs(client_id=ctx.client.client_id, since=today)
    return sum(r.metrics.get("apify_cost_usd", 0.0) for r in runs if r.client_run_id != ctx.record.client_run_id)


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
    timeout_s: float | None = None,
) -> ClientOutcome:
    """Run the stages for one client and complete its ClientRun (attached, or opened by recovery).

    `handoff` is what a batch passes about the client and the ClientRun it opened (see `records.handoff`).
    `timeout_s` is the notebook's timeout: the client's time budget is that less a margin to abort an actor run
    and put its leads back (`budget_for`), and every wait of every stage draws on it."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DataError(f"unknown stage(s) {unknown}; known stages: {', '.join(STAGES)}")
    records = records or RunRecordService(store, stale_after_s=settings.leadkit_stale_after_s)
    deadline = budget_for(timeout_s)
    with logs.context(run_id=run_id.base, client_id=client_id), deadline_scope.within(deadline):
        return _run_client(store, settings, records, run_id, client_id, stages, dry_run, notebook, handoff, deadline)


def budget_for(timeout_s: float | None) -> Deadline:
    """The client's deadline for a notebook timeout: 15 % of it (2 to 30 s) is kept back to abort an actor run,
    put the leads back and write the record before the notebook is killed. None or 0: no deadline."""
    if not timeout_s or timeout_s <= 0:
        return Deadline.unbounded()
    margin = min(30.0, max(2.0, 0.15 * timeout_s))
    return Deadline(max(1.0, timeout_s - margin))


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
    deadline: Deadline,
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
    ctx = StageContext(run_id, client, record, records, store, settings, dry_run, now=records.now, deadline=deadline)
    results: dict[str, str] = {}
    failures: list[LeadkitError] = []
    status = ClientRunStatus.COMPLETED
    reason: str | None = None
    failure: Failure | None = None
    summary: list[str] = []
    records.keep_alive(record)  # a heartbeat while the stages wait (Apify slots, actor runs), until it ends
    for position, name in enumerate(stages):
        ctx.event(name, EventKind.STARTED)
        try:
            result = STAGES[name](ctx)
        except KeyboardInterrupt as exc:  # SIGTERM or Ctrl-C: the stage has released what it held; say so, go on up
            why = f"stage {name} interrupted ({exc or type(exc).__name__})"
            message = f"interrupted ({exc or type(exc).__name__}); leads put back to Pending"
            found = getattr(exc, "apify_run_id", None)  # the run it aborted (a start in flight: the run it made)
            going = getattr(exc, "unaborted_run_id", None)
            if found and getattr(exc, "apify_status", None) == "SUCCEEDED":
                message += f"; Apify run {found} SUCCEEDED and is kept (read-pending) to be read on the next attempt"
            elif going:
                message += (
                    f"; Apify run {going} could not be aborted and is kept (read-pending): the next attempt reads "
                    "it if it SUCCEEDED"
                )
            elif found:
                message += f"; Apify run {found} was aborted"
            ctx.event(name, EventKind.FAILED, message)
            interrupted = failure_from(
                NotebookError(
                    why,
                    hint="The client's process was stopped (SIGTERM, Ctrl-C, or its batch was stopped); its actor "
                    "run was aborted and its leads put back to Pending. Re-run with `leadkit batch --resume "
                    f"{run_id.base}`.",
                ),
                run_id=run_id.base,
                client_id=client.client_id,
                stage=name,
                notebook=notebook,
            )
            ctx.flush(status=ClientRunStatus.FAILED, reason=why, failure=interrupted)
            if getattr(exc, "orphaned", False):  # a kernel whose batch is gone: nobody else will end it
                os._exit(143)
            raise
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
