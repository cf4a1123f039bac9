"""Apify API v2 client: start an actor run, poll it, read its dataset with paging.

The API holds a `waitForFinish` request at most 60 s, so a long run is polled in a loop bounded by
`max_wait_s`; statuses it does not know (ABORTING, TIMING-OUT...) count as not finished. A run that
ends in anything but SUCCEEDED raises, so a failed run is never read as "no posts".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from leadkit.config import Settings
from leadkit.deadline import Deadline
from leadkit.errors import ConfigError, DeadlineExceeded, LeadkitError, RateLimitError, UpstreamError
from leadkit.http import HttpClient, JsonResponse, Timeouts

__all__ = [
    "CAPACITY_REFUSALS",
    "FAILED_STATUSES",
    "TERMINAL_STATUSES",
    "ActorResult",
    "ApifyClient",
    "ApifyRun",
    "StartedRun",
    "name_interrupted_run",
]

log = logging.getLogger(__name__)

SUCCEEDED = "SUCCEEDED"
FAILED_STATUSES = frozenset({"FAILED", "ABORTED", "TIMED-OUT"})
TERMINAL_STATUSES = FAILED_STATUSES | {SUCCEEDED}

#: Start refusals that mean "not now, the account is at capacity": wait and offer the run again.
CAPACITY_REFUSALS = frozenset({"actor-memory-limit-exceeded", "concurrent-runs-limit-exceeded"})

#: The API never holds a request longer than this.
MAX_WAIT_FOR_FINISH_S = 60
#: The least time one call of a lost start's look-up gets.
_LOOKUP_CALL_MIN_S = 2.0
#: Headroom between the `waitForFinish` asked for and the read timeout of the request.
_READ_TIMEOUT_MARGIN_S = 5


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class ApifyRun:
    id: str
    status: str
    dataset_id: str | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    usage_usd: float | None = None
    max_total_charge_usd: float | None = None
    kv_store_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ApifyRun:
        usage = data.get("usageTotalUsd")
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or "UNKNOWN").upper(),
            dataset_id=str(data["defaultDatasetId"]) if data.get("defaultDatasetId") else None,
            started_at=_parse_time(data.get("startedAt")),
            finished_at=_parse_time(data.get("finishedAt")),
            usage_usd=float(usage) if isinstance(usage, int | float) and not isinstance(usage, bool) else None,
            max_total_charge_usd=_float_or_none((data.get("options") or {}).get("maxTotalChargeUsd")),
            kv_store_id=str(data["defaultKeyValueStoreId"]) if data.get("defaultKeyValueStoreId") else None,
        )


@dataclass(frozen=True)
class StartedRun:
    """A run this client started, or adopted after a lost start answer, and what happened on the way."""

    run: ApifyRun
    notes: list[str] = field(default_factory=list)
    adopted: bool = False


@dataclass(frozen=True)
class _Found:
    """What the look-up for a lost start found: its run, or runs that may be it (their INPUT unreadable)."""

    run: ApifyRun | None
    unsure: list[ApifyRun]
    #: The actor's runs could be listed at least once (False: nothing is known, a start must not be re-sent).
    listed: bool = True


@dataclass(frozen=True)
class ActorResult:
    """A SUCCEEDED run, its dataset's items and its log."""

    run: ApifyRun
    items: list[dict[str, Any]]
    log: str
    notes: list[str] = field(default_factory=list)
    adopted: bool = False


class ApifyClient:
    """Apify API v2 for one actor. `http` is bound to the API root (without `/v2`)."""

    def __init__(
        self,
        http: HttpClient,
        actor_id: str,
        *,
        max_wait_s: float = 600,
        poll_wait_s: int = 60,
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        reconcile_s: float = 10.0,
        reconcile_interval_s: float = 0.5,
        clock_skew_s: float = 5.0,
        capacity_wait_s: float = 5.0,
        capacity_max_wait_s: float = 600.0,
        abort_budget_s: float = 10.0,
    ) -> None:
        # "user/name" is the Console's spelling; the API wants "user~name".
        actor_id = actor_id.strip().strip("/").replace("/", "~")
        if not actor_id:
            raise ConfigError("APIFY_ACTOR_ID is empty; accepted: an actor ID or user~name")
        self.http = http
        self.actor_id = actor_id
        self.max_wait_s = max_wait_s
        # A held poll must come back before the read timeout fires.
        read_budget = int(http.timeouts.read) - _READ_TIMEOUT_MARGIN_S
        self.poll_wait_s = max(0, min(int(poll_wait_s), MAX_WAIT_FOR_FINISH_S, read_budget))
        self.poll_interval_s = poll_interval_s
        self.reconcile_s = reconcile_s
        self.reconcile_interval_s = reconcile_interval_s
        self.clock_skew_s = clock_skew_s
        self.capacity_wait_s = capacity_wait_s
        self.capacity_max_wait_s = capacity_max_wait_s
        self.abort_budget_s = abort_budget_s
        self._clock = clock
        self._sleep = sleep
        #: Runs this client started or adopted: never adopted a second time.
        self._known: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> ApifyClient:
        """A client from APIFY_TOKEN, APIFY_API_URL, APIFY_ACTOR_ID, APIFY_MAX_WAIT_S and APIFY_TIMEOUT_S.

        Keyword arguments go to the client (max_wait_s, poll_wait_s, ...) or to its HttpClient
        (retry, timeouts, transport)."""
        token = settings.apify_token.get_secret_value() if settings.apify_token else ""
        if not token:
            raise ConfigError(
                "APIFY_TOKEN is not set; leadkit needs an Apify API token to harvest posts",
                hint="Set APIFY_TOKEN in the environment or .env (Apify Console > Settings > API & Integrations).",
            )
        root = settings.apify_api_url.strip().rstrip("/")
        if root.endswith("/v2"):
            root = root[: -len("/v2")]
        http_kw = {k: kw.pop(k) for k in ("retry", "timeouts", "transport") if k in kw}
        http_kw.setdefault("timeouts", Timeouts(read=settings.apify_timeout_s))
        http = HttpClient(root, service="Apify", token=token, **http_kw)
        kw.setdefault("max_wait_s", settings.apify_max_wait_s)
        return cls(http, settings.apify_actor_id, **kw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApifyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------
    def _data(self, resp: JsonResponse) -> dict[str, Any]:
        """The `data` object of an enveloped answer; anything else means we are not talking to Apify."""
        data = resp.data.get("data") if isinstance(resp.data, dict) else None
        if not isinstance(data, dict):
            raise ConfigError(
                f"Apify answered {resp.status} for {resp.url} with JSON that has no 'data' object; "
                f"check APIFY_API_URL (the API root without /v2, e.g. https://api.apify.com)",
                url=resp.url,
                status=resp.status,
            )
        return data

    def _run(self, resp: JsonResponse) -> ApifyRun:
        data = self._data(resp)
        if not data.get("id"):
            raise ConfigError(
                f"Apify answered {resp.status} for {resp.url} with a run that has no 'id'",
                url=resp.url,
                status=resp.status,
            )
        return ApifyRun.from_api(data)

    def _actor_path(self, suffix: str) -> str:
        return f"/v2/acts/{quote(self.actor_id, safe='~')}/{suffix}"

    def start_run(
        self,
        input: dict[str, Any],
        *,
        max_total_charge_usd: float | None = None,
        deadline: Deadline | None = None,
    ) -> StartedRun:
        """Start the actor with `input` as its INPUT: one start, one paid run.

        A start that fails after it was sent (read timeout, connection dropped, 408, 5xx) may have started a run:
        the actor's newest runs are looked up (started since just before the call, with this INPUT) and the run
        found is adopted; only when none turns up within `reconcile_s` is the start sent again. A start refused
        for want of capacity (`actor-memory-limit-exceeded`, `concurrent-runs-limit-exceeded`) waits and offers
        the run again while the deadline allows, then raises RateLimitError. What happened is in `notes`."""
        deadline = deadline or Deadline.unbounded()
        params: dict[str, Any] = {}
        if max_total_charge_usd is not None:
            params["maxTotalChargeUsd"] = f"{max(0.0, max_total_charge_usd):.4f}"
        notes: list[str] = []
        lost = 0
        refusals = 0
        error_type: Any = None
        capacity_until = self._clock() + self.capacity_max_wait_s
        while True:
            sent_at = datetime.now(UTC)
            try:
                resp = self.http.request_json(
                    "POST", self._actor_path("runs"), params=params, json=input, idempotent=False, deadline=deadline
                )
            except UpstreamError as exc:
                if not exc.details.get("sent", True):
                    if refusals and isinstance(exc, DeadlineExceeded):
                        # the budget ran out while waiting for capacity (a slow machine's wait outlasted the
                        # check before it): what stopped the start is the capacity, said as such
                        raise self._no_capacity(refusals, error_type, notes) from None
                    raise
                try:
                    found = self._find_started(input, sent_at)
                except KeyboardInterrupt as interrupt:  # SIGTERM during the look-up: the run may exist all the same
                    self._abort_lost_start(input, sent_at, interrupt)
                    raise
                if found.run is not None:
                    notes.append(
                        f"the start call failed after it was sent ({exc}); adopted run {found.run.id}, "
                        "which it had started"
                    )
                    self._known.add(found.run.id)
                    return StartedRun(found.run, notes, adopted=True)
                if found.unsure or not found.listed:
                    raise self._unresolved(exc, found.unsure, notes) from None
                lost += 1
                if isinstance(exc, DeadlineExceeded) or lost >= self.http.retry.attempts:
                    notes.append(f"the start call failed after it was sent ({exc}) and no run had started")
                    exc.details["notes"] = notes
                    raise
                notes.append(
                    f"the start call failed after it was sent ({exc}); no run had started, so it was sent again"
                )
                self._sleep(deadline.cap(self.http.retry.initial_s * 2**lost))
                continue
            except KeyboardInterrupt as exc:
                # SIGTERM or Ctrl-C while the start was in flight: it may have started a run. Find it (on a
                # budget of its own) and abort it, so nothing is left billing unread.
                self._abort_lost_start(input, sent_at, exc)
                raise
            except ConfigError as exc:
                if exc.details.get("error_type") not in CAPACITY_REFUSALS:
                    raise
                refusals += 1
                error_type = exc.details.get("error_type")
                if min(deadline.remaining(), capacity_until - self._clock()) <= self.capacity_wait_s:
                    raise self._no_capacity(refusals, error_type, notes) from None
                if refusals == 1:
                    notes.append(
                        f"Apify refused the start for want of capacity ({exc.details.get('error_type')}); waiting"
                    )
                self._sleep(self.capacity_wait_s)
                continue
            run = self._run(resp)
            self._known.add(run.id)
            if refusals:
                notes.append(f"started run {run.id} after {refusals} capacity refusals")
            return StartedRun(run, notes)

    def _no_capacity(self, refusals: int, error_type: Any, notes: list[str]) -> RateLimitError:
        return RateLimitError(
            f"Apify refused to start {self.actor_id} {refusals} times for want of capacity ({error_type}) and the "
            "time to wait for capacity ran out",
            hint="The Apify account runs as many actor runs at once as its plan allows (memory and concurrent "
            "runs): run fewer clients at once, lower their batch size, or raise the plan; `GET /v2/users/me/limits` "
            "shows the capacity.",
            error_type=error_type,
            notes=notes,
        )

    def _unresolved(self, exc: UpstreamError, unsure: list[ApifyRun], notes: list[str]) -> UpstreamError:
        """A lost start whose candidate runs could not be told apart from others (their INPUT unreadable):
        nothing new is started; the candidates are aborted (they may be ours, and nobody would read them) and
        named in the error, so the record holds them."""
        if not unsure:
            notes.append(f"the start call failed after it was sent ({exc}) and the actor's runs could not be listed")
            return UpstreamError(
                f"the start of {self.actor_id} failed after it was sent and Apify's list of runs could not be read "
                "to find out whether it started one; no run was started again",
                hint="Look for a run of the actor started just now in the Apify Console; the leads are Pending.",
                notes=notes,
            )
        aborted = []
        for run in unsure:
            self._known.add(run.id)
            if self._abort_quietly(run.id) is not None:
                aborted.append(run.id)
        ids = ", ".join(r.id for r in unsure)
        notes.append(
            f"the start call failed after it was sent ({exc}); candidate Apify run {ids} could not be checked "
            f"(its INPUT could not be read), so nothing new was started and it was aborted"
        )
        return UpstreamError(
            f"the start of {self.actor_id} failed after it was sent and could not be resolved: Apify run "
            f"{unsure[0].id} may be the one it started (aborted: {'yes' if aborted else 'no'}); no run was started "
            f"again",
            hint="The leads are Pending and are tried again next run; the candidate run is named in the record.",
            apify_run_id=unsure[0].id,
            apify_status="ABORTED" if aborted else unsure[0].status,
            candidate_run_ids=[r.id for r in unsure],
            aborted=bool(aborted),
            notes=notes,
        )

    def _abort_lost_start(self, input: dict[str, Any], sent_at: datetime, exc: BaseException) -> None:
        """On an interrupt during a start: abort whatever run the start made, naming it on the exception."""
        try:
            found = self._find_started(input, sent_at)
        except (LeadkitError, KeyboardInterrupt) as err:
            log.warning("could not look up the run an interrupted start may have made: %s", err)
            return
        runs = [found.run] if found.run is not None else found.unsure
        ended: list[ApifyRun | None] = []
        for run in runs:
            self._known.add(run.id)
            ended.append(self._abort_quietly(run.id))
            log.warning("aborted Apify run %s, started by a start call that was interrupted (%s)", run.id, exc)
        if runs:
            exc.apify_run_id = runs[0].id  # type: ignore[attr-defined]
            # The abort's answer says what the run is now: one that SUCCEEDED before the abort reached it was
            # paid, so it is named with its status for the caller to keep it read-pending (not "aborted"); one
            # whose abort failed may go on and succeed, so it is named for the caller to keep it too.
            if ended[0] is not None and ended[0].succeeded:
                exc.apify_status = ended[0].status  # type: ignore[attr-defined]
            elif ended[0] is None and not runs[0].finished:
                exc.unaborted_run_id = runs[0].id  # type: ignore[attr-defined]

    def _find_started(self, input: dict[str, Any], sent_at: datetime) -> _Found:
        """The run a lost start call started: among the actor's newest runs, one that started after the call was
        sent (less clock skew), that this client has not adopted yet, and whose INPUT is the one sent.

        The look-up has a budget of its own (`reconcile_s`), not the client's: a start whose answer came after
        the client's budget ran out is exactly the one to look for. A candidate whose INPUT cannot be read within
        that budget is returned as unsure: it may be ours."""
        lower = sent_at - timedelta(seconds=self.clock_skew_s)
        budget = Deadline(self.reconcile_s, clock=self._clock)
        unsure: dict[str, ApifyRun] = {}
        ever_listed = False
        while True:
            # each call of the look-up gets at least a few seconds, even at the end of its budget
            call = Deadline(max(budget.remaining(), _LOOKUP_CALL_MIN_S), clock=self._clock)
            try:
                listed = self.list_runs(deadline=call)
                ever_listed = True
            except UpstreamError:
                listed = []
            for data in listed:
                if data["id"] in self._known:
                    continue
                run = ApifyRun.from_api(data)
                if run.started_at is None or run.started_at < lower:
                    continue
                try:
                    seen = self._input_of(data, call)
                except (ConfigError, UpstreamError):
                    unsure[run.id] = run
                    continue
                unsure.pop(run.id, None)
                if seen == input:
                    try:
                        run = self.get_run(run.id, deadline=Deadline(self.reconcile_s, clock=self._clock))
                    except UpstreamError:
                        pass  # the listed state will do: the run is ours either way
                    return _Found(run, [])
            if budget.remaining() <= self.reconcile_interval_s:
                return _Found(None, list(unsure.values()), listed=ever_listed)
            self._sleep(self.reconcile_interval_s)

    def _input_of(self, run: dict[str, Any], budget: Deadline) -> Any:
        store = run.get("defaultKeyValueStoreId")
        if not store:
            return None
        return self.run_input(str(store), deadline=budget)

    def run_input(self, store_id: str, *, deadline: Deadline | None = None) -> Any:
        """The INPUT record of a run's default key-value store (what the run was started with)."""
        return self.http.request_json(
            "GET", f"/v2/key-value-stores/{quote(store_id)}/records/INPUT", deadline=deadline
        ).data

    def list_runs(self, *, limit: int = 50, deadline: Deadline | None = None) -> list[dict[str, Any]]:
        """The actor's newest runs (newest first), as the API lists them."""
        listed = self._data(
            self.http.request_json(
                "GET", self._actor_path("runs"), params={"desc": 1, "limit": limit}, deadline=deadline
            )
        )
        return [item for item in listed.get("items") or [] if isinstance(item, dict) and item.get("id")]

    def get_run(self, run_id: str, *, wait_s: int = 0, deadline: Deadline | None = None) -> ApifyRun:
        params = {"waitForFinish": wait_s} if wait_s else None
        return self._run(
            self.http.request_json("GET", f"/v2/actor-runs/{quote(run_id)}", params=params, deadline=deadline)
        )

    def abort_run(self, run_id: str) -> ApifyRun:
        """Abort a run (`POST .../abort`; aborting twice is harmless). Uses its own short budget: it is what runs
        when the client's budget is spent."""
        resp = self.http.request_json(
            "POST", f"/v2/actor-runs/{quote(run_id)}/abort", idempotent=True, deadline=Deadline(self.abort_budget_s)
        )
        return self._run(resp)

    def run_log(self, run_id: str, *, deadline: Deadline | None = None) -> str:
        """The run's log (plain text), where the actor names the targets it could not scrape."""
        resp = self.http.request_json("GET", f"/v2/actor-runs/{quote(run_id)}/log", deadline=deadline, expect="text")
        return resp.data if isinstance(resp.data, str) else ""

    def wait(self, run_id: str, *, deadline: Deadline | None = None) -> ApifyRun:
        """Poll the run until it reaches a terminal status, for at most `max_wait_s` and within `deadline`."""
        deadline = deadline or Deadline.unbounded()
        own = self._clock() + self.max_wait_s
        while True:
            remaining = min(own - self._clock(), deadline.remaining() - _READ_TIMEOUT_MARGIN_S)
            wait_s = max(0, min(self.poll_wait_s, math.floor(remaining)))
            asked_at = self._clock()
            run = self.get_run(run_id, wait_s=wait_s, deadline=deadline)
            if run.finished:
                return run
            if deadline.remaining() <= self.poll_interval_s:
                raise DeadlineExceeded(
                    f"Apify run {run_id} was still {run.status} when the client's time budget of "
                    f"{deadline.seconds:.1f} s ran out",
                    hint="The budget comes from the notebook timeout (`leadkit batch --timeout`): raise it or lower "
                    "the client's batch size so one actor run fits.",
                    apify_run_id=run_id,
                    apify_status=run.status,
                )
            if self._clock() >= own:
                raise UpstreamError(
                    f"Apify run {run_id} did not finish within {self.max_wait_s:g}s "
                    f"(last status {run.status}); it may still be running: see it in the Apify Console "
                    f"or raise APIFY_MAX_WAIT_S",
                    apify_run_id=run_id,
                    apify_status=run.status,
                )
            # A server that answered before the wait it was asked for is polled at a gentle pace.
            if self._clock() - asked_at < max(wait_s, self.poll_interval_s):
                self._sleep(min(self.poll_interval_s, max(0.0, deadline.remaining())))

    def dataset_items(
        self, dataset_id: str, *, page_size: int = 1000, deadline: Deadline | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a dataset: `offset` steps by `limit` until `X-Apify-Pagination-Total` (or, without that
        header, an empty page). With `clean=1` a page may be short while items remain, so a short page never
        ends the reading."""
        if page_size < 1:
            raise ValueError(f"page_size is {page_size}; accepted: 1 or more")
        items: list[dict[str, Any]] = []
        offset = 0
        path = f"/v2/datasets/{quote(dataset_id)}/items"
        while True:
            params = {"format": "json", "clean": "1", "offset": offset, "limit": page_size}
            resp = self.http.request_json("GET", path, params=params, deadline=deadline)
            if not isinstance(resp.data, list):
                raise ConfigError(
                    f"Apify answered {resp.status} for {resp.url} with {type(resp.data).__name__} where a "
                    f"list of dataset items was expected; check APIFY_API_URL",
                    url=resp.url,
                    status=resp.status,
                )
            items.extend(i for i in resp.data if isinstance(i, dict) and i)
            offset += page_size
            total = _int_header(resp.headers, "x-apify-pagination-total")
            if (total is not None and offset >= total) or (total is None and not resp.data):
                return items

    def run_actor(
        self,
        input: dict[str, Any],
        *,
        deadline: Deadline | None = None,
        max_total_charge_usd: float | None = None,
        on_started: Callable[[StartedRun], None] | None = None,
    ) -> ActorResult:
        """Start (or adopt), wait, read: the finished run, its items and its log. A run that did not succeed
        raises (with its ID, status and cost in the error's details). When the deadline runs out or the wait is
        interrupted (SIGTERM, Ctrl-C), the run is aborted before the error goes up."""
        deadline = deadline or Deadline.unbounded()
        started = self.start_run(input, max_total_charge_usd=max_total_charge_usd, deadline=deadline)
        run = started.run
        try:
            if on_started is not None:
                on_started(started)
            run = self.wait(run.id, deadline=deadline)
        except BaseException as exc:
            # an interrupt during this abort goes up in place of `exc`, naming the run (see _abort_quietly)
            aborted = self._abort_quietly(run.id)
            if isinstance(exc, LeadkitError):
                exc.details.setdefault("apify_run_id", run.id)
                exc.details["apify_status"] = aborted.status if aborted else run.status
                exc.details["usage_usd"] = aborted.usage_usd if aborted else None
                exc.details["aborted"] = aborted is not None
                exc.details.setdefault("notes", started.notes)
            elif isinstance(exc, KeyboardInterrupt):
                # SIGTERM during the wait: the run is named for the caller, see `name_interrupted_run`
                name_interrupted_run(exc, run.id, aborted, last=run)
            raise
        details: dict[str, Any] = {
            "apify_run_id": run.id,
            "apify_status": run.status,
            "usage_usd": run.usage_usd,
            "notes": started.notes,
        }
        if not run.succeeded:
            raise UpstreamError(
                f"Apify run {run.id} of {self.actor_id} ended {run.status}; its dataset was not read "
                f"and no lead was marked as having no posts",
                **details,
            )
        if not run.dataset_id:
            raise ConfigError(f"Apify run {run.id} SUCCEEDED but names no defaultDatasetId", **details)
        items, log_text = self._read_outputs(run, run.dataset_id, details, deadline)
        return ActorResult(run, items, log_text, started.notes, started.adopted)

    def _read_outputs(
        self, run: ApifyRun, dataset_id: str, details: dict[str, Any], deadline: Deadline | None
    ) -> tuple[list[dict[str, Any]], str]:
        """A SUCCEEDED run's dataset items and log. A failed read raises with the run named in its details; SIGTERM
        during the read (KeyboardInterrupt) names the run too, so the paid run is kept to be read later."""
        try:
            return self.dataset_items(dataset_id, deadline=deadline), self.run_log(run.id, deadline=deadline)
        except LeadkitError as exc:
            for key, value in details.items():
                exc.details.setdefault(key, value)
            raise
        except KeyboardInterrupt as exc:
            exc.apify_run_id = run.id  # type: ignore[attr-defined]
            exc.apify_status = run.status  # type: ignore[attr-defined]
            raise

    def read_run(self, run_id: str, *, deadline: Deadline | None = None) -> ActorResult:
        """The items and log of a run that SUCCEEDED earlier and could not be read then (read-pending), or that an
        earlier attempt could not abort (waited for first, aborted if the wait fails). A run that did not succeed
        raises UpstreamError with its status; an unknown run raises as the API answers."""
        run = self.get_run(run_id, deadline=deadline)
        if not run.finished:
            # left going by an attempt that could not abort it: waited for (it is being paid for), aborted on failure
            try:
                run = self.wait(run.id, deadline=deadline)
            except BaseException:
                self._abort_quietly(run.id)
                raise
        details: dict[str, Any] = {"apify_run_id": run.id, "apify_status": run.status, "usage_usd": run.usage_usd}
        if not run.succeeded or not run.dataset_id:
            raise UpstreamError(f"Apify run {run.id} is {run.status}; there is nothing of it to read", **details)
        items, log_text = self._read_outputs(run, run.dataset_id, details, deadline)
        return ActorResult(run, items, log_text, [f"read Apify run {run.id}, which SUCCEEDED on an earlier attempt"])

    def _abort_quietly(self, run_id: str) -> ApifyRun | None:
        """Abort a run on the way out of an error; the abort's own failure is logged, never raised over it.

        An interrupt (SIGTERM, Ctrl-C) during the abort may have cut it before it reached Apify, and it goes up in
        place of the error being handled: the abort is sent once more (aborting twice is harmless; during a
        harvest a later SIGTERM is only noted, see `terminate_on_sigterm`) and the run is named on the interrupt
        (`name_interrupted_run`), so the caller keeps a run that SUCCEEDED or could not be aborted (found by
        bench/chaos.py, seed 20261209 #30: a poll's answer was not JSON, SIGTERM came during the abort, and the
        run went on, SUCCEEDED, and was neither read nor kept)."""
        try:
            return self.abort_run(run_id)
        except LeadkitError as exc:
            log.warning("could not abort Apify run %s: %s", run_id, exc)
            return None
        except KeyboardInterrupt as interrupt:
            try:
                ended: ApifyRun | None = self.abort_run(run_id)
            except LeadkitError as exc:
                log.warning("could not abort Apify run %s after an interrupt (%s): %s", run_id, interrupt, exc)
                ended = None
            name_interrupted_run(interrupt, run_id, ended)
            raise

    def whoami(self) -> dict[str, Any]:
        """The token's user (`GET /v2/users/me`): the cheapest authenticated check."""
        return self._data(self.http.request_json("GET", "/v2/users/me"))


def name_interrupted_run(
    interrupt: BaseException, run_id: str, ended: ApifyRun | None, *, last: ApifyRun | None = None
) -> None:
    """Name on an interrupt (SIGTERM, Ctrl-C) the run that was aborted on its way up, as the caller reads it:
    `apify_run_id` always; `apify_status` as the abort answered it (SUCCEEDED when the run succeeded before the
    abort reached it: it was paid, kept read-pending, not reported aborted) or, the abort failed, as `last` seen
    when that was a final status; `unaborted_run_id` when the abort failed and the run was not seen finished (it
    may go on and succeed: kept the same way)."""
    interrupt.apify_run_id = run_id  # type: ignore[attr-defined]
    if ended is not None:
        interrupt.apify_status = ended.status  # type: ignore[attr-defined]
    elif last is not None and last.finished:
        interrupt.apify_status = last.status  # type: ignore[attr-defined]
    else:
        interrupt.unaborted_run_id = run_id  # type: ignore[attr-defined]


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
