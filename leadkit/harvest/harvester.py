"""Lead selection, batches, guardrails and lead status transitions for post harvesting.

The rules follow the original (original-system.md section 5) with its mistakes fixed:
- a lead is `No Posts` only when a *successful* run returned nothing for it;
- any failure (auth, config, upstream, rate limit, a bug) puts the batch back to `Pending` with the
  error on each lead: never a terminal status;
- posts found are the lead's own (matched by normalised profile URL), not `gained / batch size`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from leadkit.capacity import apify_slot
from leadkit.errors import AuthError, ConfigError, LeadkitError
from leadkit.harvest.apify import ApifyClient
from leadkit.harvest.posts import group_by_profile, is_valid_profile_url, merge_posts, normalize_profile_url
from leadkit.models import Client, ClientRunStatus, HarvestStatus, Lead, utcnow
from leadkit.store.base import LeadBase

__all__ = [
    "PROCESSING_STALE_AFTER",
    "BatchOutcome",
    "HarvestReport",
    "Harvester",
    "posts_today",
    "select_leads",
]

log = logging.getLogger(__name__)

#: A lead left `Processing` longer than this (a crashed run) is picked again.
PROCESSING_STALE_AFTER = timedelta(minutes=30)


def _is_eligible(lead: Lead, now: datetime) -> bool:
    if not is_valid_profile_url(lead.profile_url):
        return False
    if lead.posts_actioned:
        return False
    status = lead.harvest_status
    if status is None or status is HarvestStatus.PENDING:
        return True
    if status is HarvestStatus.PROCESSING:
        return lead.last_check_at is None or now - lead.last_check_at > PROCESSING_STALE_AFTER
    return False  # Done, No Posts


def select_leads(leads: list[Lead], now: datetime) -> list[Lead]:
    """Leads waiting for harvesting, newest first: a LinkedIn profile URL; status blank or Pending, or
    Processing for more than 30 minutes; not Done or No Posts; Posts Actioned blank or 0."""
    eligible = [lead for lead in leads if _is_eligible(lead, now)]
    return sorted(eligible, key=lambda lead: (lead.created_at is not None, lead.created_at), reverse=True)


def posts_today(leads: list[Lead], now: datetime) -> int:
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


@dataclass
class BatchOutcome:
    """One batch: which leads, what Apify did, and the error when it failed."""

    lead_ids: list[str]
    profiles_submitted: int
    posts_harvested: int
    cost_usd: float
    apify_run_id: str | None
    apify_status: str | None
    error: LeadkitError | None = None
    no_posts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def metrics(self) -> dict[str, float]:
        """The additive metrics of this batch, as a RunEvent carries them."""
        return {
            "profiles_submitted": self.profiles_submitted,
            "posts_harvested": self.posts_harvested,
            "apify_cost_usd": round(self.cost_usd, 4),
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
        return round(sum(b.cost_usd for b in self.batches), 4)

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
        cost_per_post_usd: float = 0.02,
        posted_limit: str = "year",
    ) -> None:
        self.apify = apify
        self.now = now
        self.max_posts = max_posts
        self.cost_per_post_usd = cost_per_post_usd
        self.posted_limit = posted_limit

    def actor_input(self, leads: list[Lead]) -> dict[str, Any]:
        return {
            "targetUrls": [lead.profile_url for lead in leads],
            "maxPosts": self.max_posts,
            "postedLimit": self.posted_limit,
            "scrapeReactions": False,
            "scrapeComments": False,
        }

    def run(
        self,
        client: Client,
        leads: LeadBase,
        client_run_id: str,
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> HarvestReport:
        """Harvest in batches of the client's batch size until its daily target, its max batches or the
        eligible leads run out. A failed batch is recorded and its leads go back to Pending; after an
        auth or config failure the harvest stops (the next batch would fail the same way)."""
        report = HarvestReport()
        if client.batch_size <= 0 or client.daily_target <= 0:
            report.reason = (
                f"no daily target or batch size (Posts Daily Target={client.daily_target}, "
                f"Leads Batch Size={client.batch_size})"
            )
            return report
        all_leads = leads.list_leads()
        now = self.now()
        done = posts_today(all_leads, now)
        queue = select_leads(all_leads, now)
        if not queue:
            report.reason = "no lead waiting for harvesting"
            return report
        while queue:
            if done >= client.daily_target:
                report.reason = f"daily target reached ({done} of {client.daily_target} posts today)"
                break
            if len(report.batches) >= client.max_batches:
                report.reason = f"max batches reached ({client.max_batches})"
                break
            batch, queue = queue[: client.batch_size], queue[client.batch_size :]
            outcome = self._run_batch(batch, leads, client_run_id)
            report.batches.append(outcome)
            done += outcome.posts_harvested
            if on_batch is not None:
                on_batch(outcome)
            if isinstance(outcome.error, AuthError | ConfigError):
                report.reason = f"stopped after a {outcome.error.category} failure: {outcome.error}"
                break
        return report

    def _run_batch(self, batch: list[Lead], leads: LeadBase, client_run_id: str) -> BatchOutcome:
        ids = [lead.lead_id for lead in batch]
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
        try:
            with apify_slot():  # the batch's shared Apify capacity (leadkit.capacity): one run per slot
                run, items = self.apify.run_actor(self.actor_input(batch))
        except LeadkitError as exc:
            self._back_to_pending(ids, leads, exc)
            log.warning("harvest batch of %d leads failed (%s): %s", len(ids), exc.category, exc)
            return BatchOutcome(
                lead_ids=ids,
                profiles_submitted=len(ids),
                posts_harvested=0,
                cost_usd=0.0,
                apify_run_id=exc.details.get("apify_run_id"),
                apify_status=exc.details.get("apify_status"),
                error=exc,
            )
        except BaseException as exc:
            # A bug or an interrupt: the leads must not stay Processing; the error goes up as it is.
            self._back_to_pending(ids, leads, exc)
            raise

        groups = group_by_profile(items)
        now = self.now()
        updates: dict[str, dict[str, Any]] = {}
        harvested = no_posts = 0
        for lead in batch:
            posts = groups.pop(normalize_profile_url(lead.profile_url), [])
            harvested += len(posts)
            if posts:
                updates[lead.lead_id] = {
                    "harvest_status": HarvestStatus.DONE,
                    "posts_found": len(posts),
                    "posts": merge_posts(lead.posts, posts),
                }
            else:
                no_posts += 1
                updates[lead.lead_id] = {"harvest_status": HarvestStatus.NO_POSTS, "posts_found": 0}
            updates[lead.lead_id].update(last_check_at=now, last_error=None, harvest_run_id=client_run_id)
        if groups:
            log.warning("Apify run %s returned posts for profiles not in the batch: %s", run.id, sorted(groups))
        leads.update_leads(updates)
        return BatchOutcome(
            lead_ids=ids,
            profiles_submitted=len(ids),
            posts_harvested=harvested,
            cost_usd=round(harvested * self.cost_per_post_usd, 4),
            apify_run_id=run.id,
            apify_status=run.status,
            no_posts=no_posts,
        )

    def _back_to_pending(self, ids: list[str], leads: LeadBase, exc: BaseException) -> None:
        category = exc.category if isinstance(exc, LeadkitError) else type(exc).__name__
        message = f"{category}: {exc}"[:1000]
        leads.update_leads(
            {
                lead_id: {
                    "harvest_status": HarvestStatus.PENDING,
                    "last_error": message,
                    "last_check_at": self.now(),
                    "posts_found": None,
                }
                for lead_id in ids
            }
        )
