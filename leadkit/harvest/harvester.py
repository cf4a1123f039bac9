"""Lead selection, batches, guardrails and lead status transitions for post harvesting.

Evidence before verdicts (architecture.md section 10). The posts actor reports SUCCEEDED even when it skipped
targets, so after a run every submitted lead gets exactly one outcome from the run's items and its log:

    posts         an item names the lead's URL as `query.targetUrl`        Done, new posts merged in
    empty         no item, no error in the log, the run went to its end    No Posts, re-checked later
    not covered   the log names an error for the URL, or the run ended     Pending, with the reason
                  early (charge cap, abort)

A run of three or more targets that found nothing for anyone (or whose log shows errors for more than half of
them) is suspect, not a verdict: its leads go back to Pending and the batch fails as `upstream`. Any failure
(auth, config, upstream, rate limit, a bug, an interrupt) puts the batch back to Pending with the error on
each lead. Nothing is final: Done leads are refreshed after `refresh_after` asking only for newer posts,
No Posts leads are re-checked after `no_posts_recheck` (`DuePolicy`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from leadkit.capacity import KeptSlot
from leadkit.config import Settings
from leadkit.deadline import Deadline
from leadkit.durations import parse_duration
from leadkit.errors import AuthError, ConfigError, DataError, DeadlineExceeded, LeadkitError, UpstreamError
from leadkit.harvest.apify import TERMINAL_STATUSES, ActorResult, ApifyClient, StartedRun
from leadkit.harvest.posts import (
    group_by_profile,
    is_valid_profile_url,
    merge_posts,
    normalize_profile_url,
    post_key,
)
from leadkit.models import Client, ClientRunStatus, DuePolicy, HarvestStatus, Lead, Post, utcnow
from leadkit.store.base import LeadBase

__all__ = [
    "PROCESSING_STALE_AFTER",
    "READ_PENDING",
    "BatchOutcome",
    "HarvestReport",
    "Harvester",
    "Terminated",
    "apify_run_ids",
    "due_policy",
    "lead_row",
    "next_due",
    "posts_today",
    "select_leads",
    "target_errors",
    "terminate_on_sigterm",
]

log = logging.getLogger(__name__)

#: A lead left `Processing` longer than this (a crashed run) is picked again.
PROCESSING_STALE_AFTER = timedelta(minutes=30)
#: A run of at least this many targets that found nothing for any of them is suspect.
SUSPECT_MIN_TARGETS = 3
#: Below this much budget left (or half the whole budget, if less), no new actor run is started.
MIN_BATCH_BUDGET_S = 15.0
#: The smallest charge an actor run makes (one `no-result` or `post` event).
MIN_CHARGE_USD = 0.002

_URL = re.compile(r"https?://[^\s\"'<>,;()]*linkedin\.com/[^\s\"'<>,;()]+", re.IGNORECASE)
_ERROR_LINE = re.compile(r"\b(ERROR|WARN(ING)?|EXCEPTION|FAILED|failed|error)\b")
_EARLY_END = re.compile(
    r"(maxTotalChargeUsd|charge limit|max(imum)? (total )?charge|stopping|aborted|timed out|timeout exceeded)",
    re.IGNORECASE,
)
_RUN_ID_IN_MESSAGE = re.compile(r"Apify run ([A-Za-z0-9]{8,})")
#: How a lead's `last_error` starts while the SUCCEEDED run that covered it waits to be read.
READ_PENDING = "read-pending"
_READ_PENDING_RUN = re.compile(r"^read-pending: Apify run ([A-Za-z0-9]{8,})")


def due_policy(settings: Settings) -> DuePolicy:
    """The DuePolicy from LEADKIT_REFRESH_AFTER and LEADKIT_NO_POSTS_RECHECK (e.g. `7d`, `14d`)."""
    values: dict[str, timedelta] = {}
    for name in ("leadkit_refresh_after", "leadkit_no_posts_recheck"):
        text = getattr(settings, name)
        try:
            values[name] = parse_duration(text)
        except DataError as exc:
            raise DataError(f"{name.upper()}={text!r}: {exc}") from None
    return DuePolicy(
        refresh_after=values["leadkit_refresh_after"],
        no_posts_recheck=values["leadkit_no_posts_recheck"],
        processing_stale_after=PROCESSING_STALE_AFTER,
    )


def select_leads(leads: Sequence[Lead], now: datetime, policy: DuePolicy = DuePolicy()) -> list[Lead]:
    """The leads of `leads` that are due (`DuePolicy`), in the order the stores' `due_leads` gives them: blank or
    Pending newest first, then re-checks by their next (else last) check time, oldest first."""
    due = [lead for lead in leads if is_valid_profile_url(lead.profile_url) and policy.is_due(lead, now)]
    fresh = [lead for lead in due if lead.harvest_status in (None, HarvestStatus.PENDING)]
    rest = [lead for lead in due if lead.harvest_status not in (None, HarvestStatus.PENDING)]
    fresh.sort(key=lambda lead: (lead.created_at is not None, lead.created_at), reverse=True)
    rest.sort(key=lambda lead: lead.next_check_at or lead.last_check_at or datetime.min.replace(tzinfo=UTC))
    return fresh + rest


def next_due(leads: Sequence[Lead], now: datetime, policy: DuePolicy = DuePolicy()) -> str | None:
    """When the next lead comes due (ISO time): now when one is due already, None when none ever will."""
    if any(is_valid_profile_url(lead.profile_url) and policy.is_due(lead, now) for lead in leads):
        return _utc(now).isoformat()
    times = [
        due
        for lead in leads
        if is_valid_profile_url(lead.profile_url) and not lead.posts_actioned and (due := policy.due_at(lead))
    ]
    return _utc(min(times)).isoformat() if times else None


def lead_row(lead: Lead, now: datetime, policy: DuePolicy = DuePolicy()) -> dict[str, Any]:
    """A lead as `leadkit leads list --json` gives it: `next_check_at` is when it is next due (ISO), or None
    when it is due now."""
    row = lead.to_dict()
    due = None if policy.is_due(lead, now) else policy.due_at(lead)
    row["next_check_at"] = _utc(due).isoformat() if due is not None else None
    return row


def posts_today(leads: Sequence[Lead], now: datetime) -> int:
    """Posts found (last run) summed over the leads checked today (UTC)."""
    today = _utc(now).date()
    return sum(
        lead.posts_found
        for lead in leads
        if lead.posts_found and lead.last_check_at is not None and _utc(lead.last_check_at).date() == today
    )


def _utc(moment: datetime) -> datetime:
    """A naive time is taken as UTC (as the stores write them)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _start_of_day(now: datetime) -> datetime:
    return _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)


def target_errors(log_text: str) -> dict[str, str]:
    """Normalised profile URL -> the log line that names an error for it."""
    errors: dict[str, str] = {}
    for line in log_text.splitlines():
        if not _ERROR_LINE.search(line):
            continue
        for url in _URL.findall(line):
            url = url.rstrip(".:!?")
            try:
                errors.setdefault(normalize_profile_url(url), line.strip()[:300])
            except DataError:
                continue
    return errors


def _early_end(log_text: str) -> str | None:
    """The log line saying the run stopped before its last target, if there is one."""
    for line in log_text.splitlines():
        if _EARLY_END.search(line) and not _URL.search(line):
            return line.strip()[:300]
    return None


def apify_run_ids(messages: Sequence[str]) -> list[str]:
    """The Apify run IDs named in harvest event messages, in order, each once."""
    seen: dict[str, None] = {}
    for message in messages:
        for run_id in _RUN_ID_IN_MESSAGE.findall(message):
            seen.setdefault(run_id, None)
    return list(seen)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while harvesting: raised in the main thread so the running actor run is aborted and the
    leads are put back before the process ends. `orphaned`: the process that started this one is gone (a
    kernel whose batch was stopped), so nobody is left to end this process: it should end itself."""

    def __init__(self, message: str, *, orphaned: bool = False) -> None:
        super().__init__(message)
        self.orphaned = orphaned


_PR_SET_PDEATHSIG, _PR_GET_PDEATHSIG = 1, 2


def _parent_death_signal(signum: int | None) -> int | None:
    """Linux: set the signal this process gets when its parent dies (None: only read it); returns the old one."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        old = ctypes.c_int(0)
        libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(old), 0, 0, 0)
        if signum is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        return old.value
    except (OSError, AttributeError):
        return None


def _hold_parent_poller() -> Callable[[], None] | None:
    """In an IPython kernel: ipykernel's parent poller ends the process (`os._exit(1)`) within a second of seeing
    its parent change, which would cut short the abort of the actor run, the release of the leads and the settling
    of the record that `Terminated` is raised for when the batch dies (the kernel learns of it by SIGTERM, see
    `terminate_on_sigterm`). While held, the poller sees no change of parent; returns what lets it go again (None
    outside a kernel). An orphaned stage ends its process itself once its cleanup is done (exit 143)."""
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    if kernelapp is None or not kernelapp.IPKernelApp.initialized():
        return None
    poller = getattr(kernelapp.IPKernelApp.instance(), "poller", None)
    if poller is None or "parent_pid" not in vars(poller):
        return None
    original = type(poller)
    steady = property(lambda self: os.getppid(), lambda self, value: None)  # the present parent: never a change
    poller.__class__ = type(f"Held{original.__name__}", (original,), {"parent_pid": steady})

    def release() -> None:
        poller.__class__ = original

    return release


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration (main thread only; elsewhere a no-op). While it lasts, the
    death of the parent process (a batch stopped while this kernel harvests) also sends SIGTERM, not SIGKILL, so
    the actor run is aborted and the leads released before the kernel goes.

    Only the first SIGTERM raises: a later one, while that cleanup runs (the abort, the write that puts the
    leads back), is noted, never raised into it. A batch killed with SIGKILL sends two: the parent death
    signal fires when the thread that started the kernel dies (the batch is still its parent then, so the
    first looks like a plain SIGTERM) and again when the last thread of the batch has gone and the kernel is
    re-parented. Raised into the cleanup, the second cut the write that released the leads (on Airtable, a
    half-sent PATCH the server refused) while the ClientRun recorded them put back (found by bench/chaos.py,
    seed 20261207 #51 and #39). A later signal that finds the parent gone marks the `Terminated` already
    raised as orphaned, so the process still ends itself once the cleanup is done. After a `Terminated`, the
    handler is not restored when the context ends: the caller still writes the record of the interruption, and
    a SIGTERM then is noted too (`_late_term`), with the parent death signal kept and ipykernel's poller held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    parent = os.getppid()

    told_orphaned: list[bool] = []
    raised: list[Terminated] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        orphaned = os.getppid() != parent
        if orphaned:
            told_orphaned.append(True)
        if raised:  # the cleanup of the first is under way: it must not be cut short
            raised[0].orphaned = raised[0].orphaned or orphaned
            return
        raised.append(
            Terminated(
                f"signal {signum} (SIGTERM{', the parent process is gone' if orphaned else ''})", orphaned=orphaned
            )
        )
        raise raised[0]

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_death = _parent_death_signal(signal.SIGTERM)
    release_poller = _hold_parent_poller()
    try:
        yield
    finally:
        if raised:
            # The caller still writes the record of the interruption: a later SIGTERM (the second parent death
            # signal, which can come after this cleanup) must not cut that write either, nor may the poller or
            # a parent-death SIGKILL. Such a signal is noted and the process ends LATE_EXIT_S after it at most.
            signal.signal(signal.SIGTERM, functools.partial(_late_term, raised[0], parent))
        else:
            if previous_death is not None:
                _parent_death_signal(previous_death)
            signal.signal(signal.SIGTERM, previous)
            if release_poller is not None and not told_orphaned:  # orphaned: held until the stage ends it
                release_poller()


#: How long a process whose harvest was interrupted lives on after a later SIGTERM, for its caller to write the
#: record of the interruption (a caller that finds it orphaned ends it sooner).
LATE_EXIT_S = 10.0


def _late_term(raised: Terminated, parent: int, signum: int, frame: FrameType | None) -> None:
    """A SIGTERM after the harvest was interrupted and cleaned up: marks it orphaned when the parent is gone and
    ends the process LATE_EXIT_S later (exit 143), unless it has ended by then; never raised into the caller."""
    if os.getppid() != parent:
        raised.orphaned = True
    if not getattr(raised, "ending", False):
        raised.ending = True  # type: ignore[attr-defined]
        timer = threading.Timer(LATE_EXIT_S, os._exit, args=(143,))
        timer.daemon = True
        timer.start()


@dataclass
class BatchOutcome:
    """One batch: which leads, what Apify did, each target's outcome, and the error when it failed."""

    lead_ids: list[str]
    profiles_submitted: int
    posts_harvested: int
    cost_usd: float
    apify_run_id: str | None
    apify_status: str | None
    error: LeadkitError | None = None
    no_posts: int = 0
    with_posts: int = 0
    not_covered: int = 0
    notes: list[str] = field(default_factory=list)
    refresh: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def metrics(self) -> dict[str, float]:
        """The additive metrics of this batch, as a RunEvent carries them."""
        return {
            "profiles_submitted": self.profiles_submitted,
            "posts_harvested": self.posts_harvested,
            "apify_cost_usd": round(self.cost_usd, 6),
            "targets_submitted": self.profiles_submitted,
            "targets_with_posts": self.with_posts,
            "targets_empty": self.no_posts,
            "targets_not_covered": self.not_covered,
            "batches": 1,
            "batches_failed": 0 if self.error is None else 1,
        }


@dataclass
class HarvestReport:
    """Every batch of one harvest, and why it stopped (None: it ran out of eligible leads)."""

    batches: list[BatchOutcome] = field(default_factory=list)
    reason: str | None = None

    @property
    def profiles_submitted(self) -> int:
        return sum(b.profiles_submitted for b in self.batches)

    @property
    def posts_harvested(self) -> int:
        return sum(b.posts_harvested for b in self.batches)

    @property
    def cost_usd(self) -> float:
        return round(sum(b.cost_usd for b in self.batches), 6)

    @property
    def failed(self) -> list[BatchOutcome]:
        return [b for b in self.batches if b.error is not None]

    @property
    def succeeded(self) -> list[BatchOutcome]:
        return [b for b in self.batches if b.error is None]

    @property
    def status(self) -> ClientRunStatus:
        """The ClientRun status this harvest stands for: Failed when no batch succeeded."""
        if not self.failed:
            return ClientRunStatus.COMPLETED
        return ClientRunStatus.COMPLETED_WITH_ERRORS if self.succeeded else ClientRunStatus.FAILED


class Harvester:
    """Runs a client's harvest through `apify`, writing leads only through the LeadBase it is given."""

    def __init__(
        self,
        apify: ApifyClient,
        *,
        now: Callable[[], datetime] = utcnow,
        max_posts: int = 2,
        posted_limit: str = "year",
        include_reposts: bool = True,
        policy: DuePolicy = DuePolicy(),
        min_batch_budget_s: float = MIN_BATCH_BUDGET_S,
    ) -> None:
        if max_posts < 0:
            raise DataError(f"max_posts is {max_posts}; accepted: 0 (every post) or more")
        self.apify = apify
        self.now = now
        self.max_posts = max_posts
        self.posted_limit = posted_limit
        self.include_reposts = include_reposts
        self.policy = policy
        self.min_batch_budget_s = min_batch_budget_s

    def actor_input(self, leads: Sequence[Lead], *, since: datetime | None = None) -> dict[str, Any]:
        """The actor's INPUT for a batch; `since` (a refresh) asks only for posts from that day on. `maxPosts` is
        always set: unset, the actor returns one page only."""
        data: dict[str, Any] = {
            "targetUrls": [lead.profile_url for lead in leads],
            "maxPosts": self.max_posts,
            "postedLimit": self.posted_limit,
            "includeReposts": self.include_reposts,
            "scrapeReactions": False,
            "scrapeComments": False,
        }
        if since is not None:
            data["postedLimitDate"] = _utc(since).date().isoformat()
        return data

    def run(
        self,
        client: Client,
        leads: LeadBase,
        client_run_id: str,
        on_batch: Callable[[BatchOutcome], None] | None = None,
        *,
        deadline: Deadline | None = None,
        spent_today_usd: float = 0.0,
        on_started: Callable[[list[Lead], StartedRun], None] | None = None,
    ) -> HarvestReport:
        """Harvest in batches of the client's batch size until its daily target, its max batches, its daily spend
        cap, the time budget or the due leads run out. A failed batch is recorded and its leads go back to
        Pending; after an auth, config or deadline failure the harvest stops (the next batch would fail too)."""
        report = HarvestReport()
        deadline = deadline or Deadline.unbounded()
        if client.batch_size <= 0 or client.daily_target <= 0:
            report.reason = (
                f"no daily target or batch size (Posts Daily Target={client.daily_target}, "
                f"Leads Batch Size={client.batch_size})"
            )
            return report
        now = self.now()
        done = leads.posts_found_since(_start_of_day(now))
        # one more than the day's batches can take, so "max batches reached" is known when it is so
        due = leads.due_leads(self.policy, now, limit=client.batch_size * max(1, client.max_batches) + 1)
        if not due:
            report.reason = "no lead waiting for harvesting"
            return report
        slot = KeptSlot()  # the batch's shared Apify capacity (leadkit.capacity): kept across this client's runs
        try:
            due = self._read_pending(due, leads, client_run_id, report, deadline, on_batch)
            if not due:
                report.reason = report.reason or "no lead waiting for harvesting"
                return report
            self._harvest_due(
                client, leads, client_run_id, due, report, slot, done, spent_today_usd, deadline, on_batch, on_started
            )
        finally:
            slot.release()
        return report

    def _read_pending(
        self,
        due: list[Lead],
        leads: LeadBase,
        client_run_id: str,
        report: HarvestReport,
        deadline: Deadline,
        on_batch: Callable[[BatchOutcome], None] | None,
    ) -> list[Lead]:
        """Leads whose SUCCEEDED run could not be read on an earlier attempt are settled from that run (read
        now), not bought again; a run still unreadable keeps them waiting for it. Returns the leads left due."""
        pending: dict[str, list[Lead]] = {}
        rest: list[Lead] = []
        for lead in due:
            match = (
                _READ_PENDING_RUN.match(lead.last_error or "") if lead.harvest_status is HarvestStatus.PENDING else None
            )
            if match:
                pending.setdefault(match.group(1), []).append(lead)
            else:
                rest.append(lead)
        for run_id, batch in pending.items():
            try:
                result = self.apify.read_run(run_id, deadline=deadline)
            except LeadkitError as exc:
                if exc.details.get("apify_status") not in (None, "SUCCEEDED") or exc.details.get("status") == 404:
                    rest += batch  # the run is gone or did not succeed: nothing to read, the leads are due again
                    continue
                log.warning("Apify run %s is still unreadable (%s); its %d leads wait for it", run_id, exc, len(batch))
                outcome = BatchOutcome(
                    lead_ids=[lead.lead_id for lead in batch],
                    profiles_submitted=0,
                    posts_harvested=0,
                    cost_usd=0.0,
                    apify_run_id=run_id,
                    apify_status="SUCCEEDED",
                    error=exc,
                    notes=[f"Apify run {run_id} SUCCEEDED earlier and is still unreadable; its leads wait for it"],
                )
            else:
                outcome = self._settle(batch, leads, client_run_id, result, None, False, paid=False)
            report.batches.append(outcome)
            if on_batch is not None:
                on_batch(outcome)
        return rest

    def _harvest_due(
        self,
        client: Client,
        leads: LeadBase,
        client_run_id: str,
        due: list[Lead],
        report: HarvestReport,
        slot: KeptSlot,
        done: int,
        spent: float,
        deadline: Deadline,
        on_batch: Callable[[BatchOutcome], None] | None,
        on_started: Callable[[list[Lead], StartedRun], None] | None,
    ) -> None:
        fresh = [lead for lead in due if lead.harvest_status is not HarvestStatus.DONE]
        refresh = sorted(
            (lead for lead in due if lead.harvest_status is HarvestStatus.DONE),
            key=lambda lead: lead.last_check_at or datetime.min.replace(tzinfo=UTC),
        )
        batches = [fresh[i : i + client.batch_size] for i in range(0, len(fresh), client.batch_size)]
        batches += [refresh[i : i + client.batch_size] for i in range(0, len(refresh), client.batch_size)]
        self._run_batches(
            client, leads, client_run_id, batches, report, slot, done, spent, deadline, on_batch, on_started
        )

    def _run_batches(
        self,
        client: Client,
        leads: LeadBase,
        client_run_id: str,
        batches: list[list[Lead]],
        report: HarvestReport,
        slot: KeptSlot,
        done: int,
        spent: float,
        deadline: Deadline,
        on_batch: Callable[[BatchOutcome], None] | None,
        on_started: Callable[[list[Lead], StartedRun], None] | None,
    ) -> None:
        for batch in batches:
            if done >= client.daily_target:
                report.reason = f"daily target reached ({done} of {client.daily_target} posts today)"
                break
            if len(report.batches) >= client.max_batches:
                report.reason = f"max batches reached ({client.max_batches})"
                break
            cap: float | None = None
            if client.max_usd_per_day is not None:
                cap = round(client.max_usd_per_day - spent, 6)
                if cap < MIN_CHARGE_USD:
                    report.reason = (
                        f"daily Apify spend cap reached (${spent:.3f} of ${client.max_usd_per_day:.2f} today); "
                        f"the client stops until tomorrow (UTC)"
                    )
                    break
            needed = min(self.min_batch_budget_s, (deadline.seconds or float("inf")) / 2)
            if deadline.remaining() < needed:
                report.reason = (
                    f"time budget nearly used up ({deadline.remaining():.0f} s left, a batch needs "
                    f"{needed:g} s); the remaining leads wait for the next run"
                )
                break
            outcome = self._run_batch(batch, leads, client_run_id, deadline, cap, on_started, slot)
            report.batches.append(outcome)
            done += outcome.posts_harvested
            spent += outcome.cost_usd
            if on_batch is not None:
                on_batch(outcome)
            if isinstance(outcome.error, AuthError | ConfigError | DeadlineExceeded):
                report.reason = f"stopped after a {outcome.error.category} failure: {outcome.error}"
                break

    def _run_batch(
        self,
        batch: list[Lead],
        leads: LeadBase,
        client_run_id: str,
        deadline: Deadline,
        cap: float | None,
        on_started: Callable[[list[Lead], StartedRun], None] | None,
        slot: KeptSlot,
    ) -> BatchOutcome:
        ids = [lead.lead_id for lead in batch]
        is_refresh = all(lead.harvest_status is HarvestStatus.DONE for lead in batch)
        since = min((lead.last_check_at for lead in batch if lead.last_check_at), default=None) if is_refresh else None
        try:
            leads.update_leads(
                {
                    lead_id: {
                        "harvest_status": HarvestStatus.PROCESSING,
                        "last_check_at": self.now(),
                        "posts_found": None,
                        "harvest_run_id": client_run_id,
                    }
                    for lead_id in ids
                }
            )
        except KeyboardInterrupt as exc:  # the claim may have reached the store before the answer: undone
            self._back_to_pending(ids, leads, exc)
            raise

        def started(run: StartedRun) -> None:
            if on_started is not None:
                on_started(batch, run)

        try:
            # one run per slot, waited for within the budget (a slot already held is kept)
            slot.take(timeout_s=None if deadline.seconds is None else deadline.remaining())
            result = self.apify.run_actor(
                self.actor_input(batch, since=since),
                deadline=deadline,
                max_total_charge_usd=cap,
                on_started=started,
            )
        except LeadkitError as exc:
            unread = exc.details.get("apify_run_id") if exc.details.get("apify_status") == "SUCCEEDED" else None
            going = None
            if exc.details.get("aborted") is False and exc.details.get("apify_status") not in TERMINAL_STATUSES:
                going = exc.details.get("apify_run_id")  # its abort failed: it may go on and succeed
            self._back_to_pending(ids, leads, exc, read_pending=unread, still_going=going)
            log.warning("harvest batch of %d leads failed (%s): %s", len(ids), exc.category, exc)
            usage = exc.details.get("usage_usd")
            return BatchOutcome(
                lead_ids=ids,
                profiles_submitted=len(ids),
                posts_harvested=0,
                cost_usd=float(usage) if isinstance(usage, int | float) else 0.0,
                apify_run_id=exc.details.get("apify_run_id"),
                apify_status=exc.details.get("apify_status"),
                error=exc,
                not_covered=len(ids),
                notes=list(exc.details.get("notes") or []),
                refresh=is_refresh,
            )
        except BaseException as exc:
            # A bug or an interrupt (the actor run was aborted on the way): the leads must not stay Processing.
            # Interrupted while reading a SUCCEEDED run: that run is kept (read-pending) to be read next time.
            unread = getattr(exc, "apify_run_id", None) if getattr(exc, "apify_status", None) == "SUCCEEDED" else None
            going = getattr(exc, "unaborted_run_id", None)
            self._back_to_pending(ids, leads, exc, read_pending=unread, still_going=going)
            raise
        try:
            return self._settle(batch, leads, client_run_id, result, cap, is_refresh)
        except KeyboardInterrupt as exc:
            # Interrupted while writing the outcome of a SUCCEEDED (paid) run: the leads wait for that run
            # (read-pending) instead of staying Processing; the caller's record names the run as kept.
            if getattr(exc, "apify_run_id", None) is None:
                exc.apify_run_id = result.run.id  # type: ignore[attr-defined]
                exc.apify_status = result.run.status  # type: ignore[attr-defined]
            self._back_to_pending(ids, leads, exc, read_pending=result.run.id)
            raise

    def _settle(
        self,
        batch: list[Lead],
        leads: LeadBase,
        client_run_id: str,
        result: ActorResult,
        cap: float | None,
        is_refresh: bool,
        *,
        paid: bool = True,
    ) -> BatchOutcome:
        """Give every lead of a SUCCEEDED run one outcome (posts, empty, not covered) and write them. `paid`
        False: the run was paid for (and counted) on an earlier attempt, only read now."""
        run = result.run
        groups = group_by_profile(result.items)
        errors = target_errors(result.log)
        early = _early_end(result.log)
        if early is None and cap is not None and run.usage_usd is not None and run.usage_usd > cap - MIN_CHARGE_USD:
            early = f"the run reached its maxTotalChargeUsd of {cap:.3f} USD (used {run.usage_usd:.3f})"
        now = self.now()
        posts_of: dict[str, list[Post]] = {}
        empty: list[Lead] = []
        uncovered: dict[str, str] = {}
        for lead in batch:
            key = normalize_profile_url(lead.profile_url)
            posts = groups.pop(key, [])
            if posts:
                posts_of[lead.lead_id] = posts
            elif key in errors:
                uncovered[lead.lead_id] = (
                    f"the actor could not scrape this profile in Apify run {run.id}: {errors[key]}"
                )
            elif early is not None:
                uncovered[lead.lead_id] = f"Apify run {run.id} ended before this profile: {early}"
            else:
                empty.append(lead)
        if groups:
            log.warning("Apify run %s returned posts for profiles not in the batch: %s", run.id, sorted(groups))
        error: LeadkitError | None = None
        n = len(batch)
        if n >= SUSPECT_MIN_TARGETS and len(empty) == n:
            error = UpstreamError(
                f"Apify run {run.id} SUCCEEDED with no items for any of its {n} profiles; no lead was marked No Posts",
                hint=f"The actor succeeded with no items for {n} profiles and may be blocked upstream (LinkedIn or "
                f"its proxies): open Apify run {run.id} in the Apify Console and read its log; the leads are "
                f"Pending and will be tried again.",
                apify_run_id=run.id,
                apify_status=run.status,
            )
        elif len(errors.keys() & {normalize_profile_url(lead.profile_url) for lead in batch}) * 2 > n:
            error = UpstreamError(
                f"Apify run {run.id} SUCCEEDED but its log shows errors for {len(uncovered)} of {n} profiles",
                hint=f"The actor succeeded but could not scrape most profiles (upstream errors or rate limits): read "
                f"the log of Apify run {run.id}; those leads are Pending and will be tried again.",
                apify_run_id=run.id,
                apify_status=run.status,
            )
        if error is not None:
            for lead in empty:
                uncovered[lead.lead_id] = f"{error}"
            empty = []
        updates: dict[str, dict[str, Any]] = {}
        harvested = 0
        by_id = {lead.lead_id: lead for lead in batch}
        for lead_id, posts in posts_of.items():
            lead = by_id[lead_id]
            known = {post_key(p["postUrl"]) for p in lead.posts if isinstance(p, dict) and p.get("postUrl")}
            new = sum(1 for post in posts if post_key(post.post_url) not in known)
            harvested += new
            updates[lead_id] = {
                "harvest_status": HarvestStatus.DONE,
                "posts_found": new,
                "posts": merge_posts(lead.posts, posts),
                "next_check_at": now + self.policy.refresh_after,
                "last_error": None,
            }
        for lead in empty:
            if lead.harvest_status is HarvestStatus.DONE:  # a refresh with nothing newer: still Done
                updates[lead.lead_id] = {
                    "harvest_status": HarvestStatus.DONE,
                    "posts_found": 0,
                    "next_check_at": now + self.policy.refresh_after,
                    "last_error": None,
                }
            else:
                updates[lead.lead_id] = {
                    "harvest_status": HarvestStatus.NO_POSTS,
                    "posts_found": 0,
                    "next_check_at": now + self.policy.no_posts_recheck,
                    "last_error": None,
                }
        for lead_id, reason in uncovered.items():
            updates[lead_id] = {
                "harvest_status": HarvestStatus.PENDING,
                "posts_found": None,
                "next_check_at": None,
                "last_error": f"upstream: not covered: {reason}"[:1000],
            }
        for fields in updates.values():
            fields.update(last_check_at=now, harvest_run_id=client_run_id)
        leads.update_leads(updates)
        return BatchOutcome(
            lead_ids=[lead.lead_id for lead in batch],
            profiles_submitted=n,
            posts_harvested=harvested,
            cost_usd=(run.usage_usd or 0.0) if paid else 0.0,
            apify_run_id=run.id,
            apify_status=run.status,
            error=error,
            no_posts=len(empty),
            with_posts=len(posts_of),
            not_covered=len(uncovered),
            notes=list(result.notes),
            refresh=is_refresh,
        )

    def _back_to_pending(
        self,
        ids: list[str],
        leads: LeadBase,
        exc: BaseException,
        *,
        read_pending: str | None = None,
        still_going: str | None = None,
    ) -> None:
        """The leads go back to Pending with the error. `read_pending`: the run that covered them SUCCEEDED (it
        was paid) but its items could not be read: its ID is kept on the leads and the next attempt reads it.
        `still_going`: their run was not finished and could not be aborted: it may still succeed, so its ID is
        kept the same way and the next attempt reads it if it SUCCEEDED (waits for it, or aborts it, first)."""
        category = exc.category if isinstance(exc, LeadkitError) else type(exc).__name__
        message = f"{category}: {exc}"
        if read_pending:
            message = (
                f"{READ_PENDING}: Apify run {read_pending} SUCCEEDED but its items could not be read ({message}); "
                "they are read on the next attempt instead of buying the posts again"
            )
        elif still_going:
            message = (
                f"{READ_PENDING}: Apify run {still_going} was not finished and could not be aborted ({message}); "
                "the next attempt reads it if it SUCCEEDED instead of buying the posts again"
            )
        found = getattr(exc, "apify_run_id", None)
        if found and not read_pending and not still_going and not isinstance(exc, LeadkitError):
            # an interrupt that named a run it aborted (one its start call made, or the one it waited for)
            message += f" (Apify run {found} was aborted)"
        message = message[:1000]
        leads.update_leads(
            {
                lead_id: {
                    "harvest_status": HarvestStatus.PENDING,
                    "last_error": message,
                    "last_check_at": self.now(),
                    "posts_found": None,
                    "next_check_at": None,
                }
                for lead_id in ids
            }
        )
