"""What a client's harvest left behind when its process died (watchdog, OOM killer, kill -9, a notebook timeout):
its actor runs are aborted and its leads released, so nothing goes on billing unread and nothing stays Processing.

The runs are those the ClientRun's events name (a started run's ID is written as soon as it is known) and, for a
process that died before it could write one, those found by the same look-up as a lost start answer: a run of the
actor started since the ClientRun opened whose INPUT names one of the client's Processing leads. A run found
SUCCEEDED is not aborted: its leads keep its ID (read-pending) and the next attempt reads it instead of buying again.
A named run whose INPUT cannot be read is taken to cover the Processing leads when it is the run the dead process
had started and not yet settled (its events say so); otherwise it covers none.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from leadkit.config import Settings
from leadkit.deadline import Deadline
from leadkit.errors import LeadkitError
from leadkit.harvest.apify import ApifyClient, ApifyRun
from leadkit.harvest.harvester import READ_PENDING, apify_run_ids
from leadkit.harvest.posts import normalize_profile_url
from leadkit.models import ClientRun, EventKind, HarvestStatus, RunEvent, utcnow
from leadkit.store.base import Store

__all__ = ["Released", "release_orphans"]

log = logging.getLogger(__name__)

#: The event that names a run as soon as it is known (`harvest_stage`'s on_started).
_STARTED = re.compile(r"^Apify run ([A-Za-z0-9]{8,}) (?:started|adopted) for ")

#: How long the look-up of the dead process's runs may take, all calls together.
LOOKUP_BUDGET_S = 15.0


@dataclass
class Released:
    """What was done for a dead client's harvest."""

    aborted: list[str] = field(default_factory=list)
    read_pending: list[str] = field(default_factory=list)
    leads_released: int = 0
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        parts = []
        if self.aborted:
            parts.append(f"aborted Apify run {', '.join(self.aborted)} left running by the dead process")
        if self.read_pending:
            parts.append(f"Apify run {', '.join(self.read_pending)} SUCCEEDED unread: kept for the next attempt")
        if self.leads_released:
            parts.append(f"{self.leads_released} leads left Processing put back to Pending")
        return "; ".join(parts + self.notes)


def release_orphans(store: Store, settings: Settings, record: ClientRun) -> Released:
    """Abort the actor runs of `record`'s dead process and release its Processing leads (see the module)."""
    out = Released()
    try:
        client = store.get_client(record.client_id)
        base = store.lead_base(client)
        tag = f"{record.run_id}-{record.client_id}"
        processing = [
            lead for lead in base.list_leads(status=HarvestStatus.PROCESSING.value) if lead.harvest_run_id == tag
        ]
        events = store.list_events(run_id=record.run_id, client_id=record.client_id)
    except LeadkitError as exc:
        out.notes.append(f"could not read the client's leads or events: {exc}")
        return out
    harvest_events = sorted((e for e in events if e.stage == "harvest"), key=lambda e: e.at)
    named = apify_run_ids([e.message for e in harvest_events])
    urls = {_key(lead.profile_url): lead for lead in processing}
    covered: dict[str, str] = {}  # lead_id -> SUCCEEDED run that covered it
    going: dict[str, str] = {}  # lead_id -> its run, still going: the abort failed, it may yet succeed
    if settings.apify_token is not None and (named or processing):
        try:
            with ApifyClient.from_settings(settings) as apify:
                budget = Deadline(LOOKUP_BUDGET_S)
                runs = _runs_of(apify, named, _in_flight(harvest_events), record, set(urls), budget, out.notes)
                for run, targets in runs:
                    if not run.finished:
                        # The abort's answer says what the run is now: one that finished since it was looked up
                        # (SUCCEEDED, paid) is kept to be read, not counted as aborted.
                        try:
                            run = apify.abort_run(run.id)
                        except LeadkitError as exc:
                            out.notes.append(f"could not abort Apify run {run.id}: {exc}")
                            going.update({urls[t].lead_id: run.id for t in targets if t in urls})
                            continue
                        if not run.succeeded:
                            out.aborted.append(run.id)
                            continue
                    if run.succeeded:
                        hit = [urls[t] for t in targets if t in urls]
                        if hit:
                            out.read_pending.append(run.id)
                            covered.update({lead.lead_id: run.id for lead in hit})
        except LeadkitError as exc:
            out.notes.append(f"could not abort the dead process's Apify runs: {exc}")
            log.warning("ClientRun %s: could not abort its Apify runs: %s", record.client_run_id, exc)
    if processing:
        updates: dict[str, dict[str, Any]] = {}
        for lead in processing:
            run_id = covered.get(lead.lead_id)
            if run_id:
                message = (
                    f"{READ_PENDING}: Apify run {run_id} SUCCEEDED but the process harvesting it died before "
                    "reading it; it is read on the next attempt"
                )
            elif lead.lead_id in going:
                message = (
                    f"{READ_PENDING}: Apify run {going[lead.lead_id]} was still going when the process harvesting "
                    "it died and could not be aborted; the next attempt reads it if it SUCCEEDED"
                )
            elif out.aborted:
                message = "interrupted: the process harvesting this lead died; its actor run was aborted"
            else:
                message = "interrupted: the process harvesting this lead died"
            updates[lead.lead_id] = {
                "harvest_status": HarvestStatus.PENDING,
                "last_error": message,
                "posts_found": None,
                "next_check_at": None,
                "last_check_at": utcnow(),
            }
        try:
            base.update_leads(updates)
            out.leads_released = len(updates)
        except LeadkitError as exc:
            out.notes.append(f"could not release its Processing leads: {exc}")
    return out


def _key(url: str) -> str:
    try:
        return normalize_profile_url(url)
    except LeadkitError:
        return url


def _in_flight(events: list[RunEvent]) -> str | None:
    """The run the dead process had started (or adopted) and not yet settled, from its harvest events in order:
    the Processing leads are that run's. A batch's outcome (completed or failed) settles the run before it, and
    so does a new attempt's start of the stage; the next batch's leads are claimed only after that outcome is
    written, so leads Processing after a settled run were claimed for a run not started yet (or not named)."""
    current: str | None = None
    for event in events:
        if event.kind in (EventKind.STARTED, EventKind.COMPLETED, EventKind.FAILED):
            current = None
        elif event.kind is EventKind.INFO and (match := _STARTED.match(event.message)):
            current = match.group(1)
    return current


def _runs_of(
    apify: ApifyClient,
    named: list[str],
    in_flight: str | None,
    record: ClientRun,
    targets: set[str],
    budget: Deadline,
    notes: list[str],
) -> list[tuple[ApifyRun, list[str]]]:
    """The runs named in the record, and the actor's runs since the record opened whose INPUT names one of
    `targets`, each with the (normalised) target URLs of its INPUT. A named run whose INPUT cannot be read is
    kept with no targets (it is still aborted if it runs), except the run `in_flight`, which was started for
    the Processing leads: it is given `targets`, so that, SUCCEEDED or not aborted, they keep it (found by
    bench/chaos.py, seed 20261209 #3: a paid run whose INPUT answered 500 was neither read nor kept). One that
    cannot be read at all is noted in `notes`."""
    found: dict[str, tuple[ApifyRun, list[str]]] = {}
    for run_id in named:
        try:
            run = apify.get_run(run_id, deadline=budget)
        except LeadkitError as exc:
            notes.append(f"could not read Apify run {run_id}: {exc}")
            continue
        try:
            found[run.id] = (run, _targets(apify, run_id, run.kv_store_id, budget))
        except LeadkitError as exc:
            mine = run.id == in_flight
            notes.append(
                f"could not read the INPUT of Apify run {run_id}: {exc}"
                + ("; it is the run started for the Processing leads" if mine else "")
            )
            found[run.id] = (run, sorted(targets) if mine else [])
    if not targets:
        return list(found.values())
    lower = record.started_at - timedelta(seconds=apify.clock_skew_s)
    try:
        listed = apify.list_runs(limit=100, deadline=budget)
    except LeadkitError as exc:  # the named runs are still dealt with
        notes.append(f"could not list the actor's runs to find unnamed ones: {exc}")
        return list(found.values())
    for data in listed:
        if data["id"] in found:
            continue
        run = ApifyRun.from_api(data)
        if run.started_at is None or run.started_at < lower or run.finished and not run.succeeded:
            continue
        urls = _targets(apify, run.id, data.get("defaultKeyValueStoreId"), budget)
        if targets & set(urls):
            found[run.id] = (run, urls)
    return list(found.values())


def _targets(apify: ApifyClient, run_id: str, store_id: Any, budget: Deadline) -> list[str]:
    if not store_id:
        store_id = apify.get_run(run_id, deadline=budget).kv_store_id
    data = apify.run_input(str(store_id), deadline=budget) if store_id else None
    urls = (data.get("targetUrls") or []) if isinstance(data, dict) else []
    return [_key(u) for u in urls if isinstance(u, str)]
