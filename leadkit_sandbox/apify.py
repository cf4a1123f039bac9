"""An Apify-compatible API (v2) for the sandbox: actor runs that move over time, datasets, logs, users.

Routes (everything under /v2 needs a known token, as `Authorization: Bearer` or `?token=`):

    GET  /v2/users/me                                  {"data": user}
    POST /v2/acts/{actor}/runs[?waitForFinish&maxTotalChargeUsd&timeout&memory]   201 {"data": run}
    GET  /v2/acts/{actor}/runs[?desc=1&offset&limit&status]   {"data": {total, offset, limit, count, desc, items}}
    POST /v2/acts/{actor}/run-sync-get-dataset-items   bare item array + X-Apify-Pagination-* headers
    GET  /v2/actor-runs/{id}[?waitForFinish=N]         {"data": run} (held until finished, at most 60 s)
    GET  /v2/acts/{actor}/runs/{id}                    the same
    GET  /v2/actor-runs/{id}/log                       the run's log, text/plain
    POST /v2/actor-runs/{id}/abort                     {"data": run} (ABORTING, then ABORTED)
    GET  /v2/key-value-stores/{id}/records/INPUT       the run's input, bare JSON
    GET  /v2/datasets/{id}                             {"data": dataset}
    GET  /v2/datasets/{id}/items?offset&limit&desc&clean&skipEmpty   bare item array + X-Apify-Pagination-*

(`/v2/actors/...` is accepted as an alias of `/v2/acts/...`.)

The posts actor `harvestapi~linkedin-profile-posts` behaves as the real one does (api-contracts.md 1.3):
- input `targetUrls` (or the older `profileUrls`), `maxPosts` (unset: one page of `ACTOR_PAGE_POSTS`; 0: every
  post), `postedLimit` (`any`, `1h`, `24h`, `week`, `month`, `3months`, `6months`, `year`), `postedLimitDate`
  (`YYYY-MM-DD`, the more recent cutoff wins), `includeReposts`;
- targets are worked through one after the other over the run's duration; items appear in the dataset as each
  target finishes; a target that fails upstream is logged as an ERROR, pushes an empty item `{}` and the run
  still SUCCEEDS (choose the targets with a `skip_targets` fault rule whose `body` matches their URLs);
- each profile posts on its own cadence, dated relative to now, so a later run finds newer posts; about one
  profile in four has never posted;
- pay per event: `PRICE_PER_POST_USD` per item and `PRICE_PER_EMPTY_TARGET_USD` per target that returned nothing,
  summed in the run's `usageTotalUsd`; `maxTotalChargeUsd` stops the run (SUCCEEDED, with a log line) before it
  would charge more.

A run is READY, then RUNNING, then SUCCEEDED after `run_duration_s`; it ends FAILED, ABORTED or TIMED-OUT instead
when its input has `"_sandboxOutcome": "FAILED"` (etc.) or `app.outcome` is set.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from leadkit.harvest.posts import normalize_profile_url
from leadkit_sandbox.core import ApiError, Request, Response, ServiceApp, SharedState, json_response

__all__ = [
    "ACTOR_PAGE_POSTS",
    "POSTS_ACTOR",
    "PRICE_PER_EMPTY_TARGET_USD",
    "PRICE_PER_POST_USD",
    "ApifyApp",
    "posts_for_profile",
]

POSTS_ACTOR = "harvestapi~linkedin-profile-posts"
POSTS_ACTOR_ID = "A3cAPGpwBEG8RJwse"
SANDBOX_USER_ID = "sandboxUser00001"
SANDBOX_USERNAME = "leadkit-sandbox"
MAX_WAIT_FOR_FINISH_S = 60
DEFAULT_MAX_RUNS = 32
#: How long a new run stays READY (at most) before it is RUNNING.
READY_FOR_S = 0.2
#: How long an aborted run stays ABORTING before it is ABORTED.
ABORTING_FOR_S = 0.1
OUTCOMES = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED-OUT")
#: Posts the actor returns per target when `maxPosts` is not set (one page only, as the real actor does).
ACTOR_PAGE_POSTS = 5
#: Pay-per-event prices of the posts actor.
PRICE_PER_POST_USD = 0.002
PRICE_PER_EMPTY_TARGET_USD = 0.002
#: When the actor's pay-per-event pricing took effect (Apify sends it with every run's `pricingInfo`).
PRICING_SINCE = "2025-01-01T00:00:00.000Z"
#: How far back a profile's posts go.
POSTS_WINDOW = timedelta(days=30)
POSTED_LIMITS: dict[str, timedelta | None] = {
    "any": None,
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
    "3months": timedelta(days=91),
    "6months": timedelta(days=182),
    "year": timedelta(days=365),
}

#: Apify's error type and message for each status (https://docs.apify.com/api/v2#errors).
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid-request", "The request is not valid."),
    401: ("user-or-token-not-found", "User was not found or authentication token is not valid"),
    402: ("not-enough-usage-to-run-paid-actor", "You do not have enough usage left to run this Actor."),
    403: ("insufficient-permissions", "You do not have permission to perform this action."),
    404: ("record-not-found", "The record was not found."),
    405: ("method-not-allowed", "This method is not allowed on this resource."),
    408: ("request-timeout", "The request timed out."),
    429: ("rate-limit-exceeded", "You have exceeded the rate limit of 60 requests per second"),
    500: ("internal-server-error", "Internal server error."),
    502: ("bad-gateway", "Bad gateway."),
    503: ("service-unavailable", "The service is temporarily unavailable."),
}
#: Error bodies of fault modes that stand for a particular Apify refusal.
_MODE_ERRORS: dict[str, tuple[str, str]] = {
    "memory_limit_402": (
        "actor-memory-limit-exceeded",
        "By launching this job you will exceed the memory limit of 8192MB for all your Actor runs and builds "
        "(currently used: 8192MB, requested: 1024MB).",
    ),
}

_TOPICS = (
    ("pipeline", "What we learned rebuilding our sales pipeline this quarter"),
    ("hiring", "We are hiring two account executives in Austin"),
    ("ai", "Three ways small teams are using AI for outbound without sounding like robots"),
    ("events", "Great conversations at the SaaS Growth Summit this week"),
    ("leadership", "The best managers I worked with all did one thing: they wrote things down"),
    ("customers", "A customer told us our onboarding was the best they had seen. Here is the checklist"),
)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _apify_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=17))


def _handle(key: str) -> str:
    return key.rsplit("/", 1)[-1] or "member"


def _display_name(handle: str) -> str:
    words = [w for w in handle.replace("_", "-").split("-") if w and not w.isdigit()]
    return " ".join(w.capitalize() for w in words) or handle


def _post_times(digest: int, now: datetime) -> list[tuple[int, datetime]]:
    """(post number, time) of a profile's posts in the last `POSTS_WINDOW`, newest first.

    The profile posts every `cadence` hours from a fixed phase, so its posts keep their numbers (and IDs) from
    one run to the next while new ones appear as time passes."""
    cadence_h = 36 + (digest >> 4) % 180  # one post every 1.5 to 9 days
    phase_h = (digest >> 12) % cadence_h
    hours_now = int(now.timestamp() // 3600)
    newest = (hours_now - phase_h) // cadence_h
    oldest_allowed = now - POSTS_WINDOW
    out: list[tuple[int, datetime]] = []
    number = newest
    while True:
        moment = datetime.fromtimestamp((number * cadence_h + phase_h) * 3600, UTC)
        moment += timedelta(minutes=(digest >> (number % 32)) % 60)
        if moment < oldest_allowed:
            return out
        if moment <= now:
            out.append((number, moment))
        number -= 1


def posts_for_profile(
    url: str, max_posts: int | None = None, *, now: datetime | None = None, include_reposts: bool = True
) -> list[dict[str, Any]]:
    """The items the posts actor returns for one profile URL at `now` (default: the current time), newest first:
    deterministic for a given time, none for ~1 in 4 profiles. `max_posts` None means one page, 0 every post."""
    try:
        key = normalize_profile_url(url)
    except ValueError:
        return []
    if not key.startswith(("linkedin.com/in/", "linkedin.com/company/")):
        return []
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    if digest % 4 == 0:
        return []
    now = now or datetime.now(UTC)
    handle = _handle(key)
    name = _display_name(handle)
    profile_url = f"https://www.linkedin.com/{key.removeprefix('linkedin.com/')}"
    author = {
        "publicIdentifier": handle,
        "universalName": None,
        "type": "company" if "/company/" in key else "profile",
        "name": name,
        "linkedinUrl": profile_url,
        "info": "Head of Growth at Globex",
        "avatar": {"url": f"https://media.licdn.com/dms/image/sandbox/{handle}.jpg", "width": 200, "height": 200},
    }
    items: list[dict[str, Any]] = []
    for number, posted in _post_times(digest, now):
        bits = (digest * (number + 1) >> 7) & 0xFFFF
        post_id = str(7_300_000_000_000_000_000 + (digest + number * 7919) % 10**17)
        slug, text = _TOPICS[(bits + number) % len(_TOPICS)]
        likes = 5 + bits % 400
        age = now - posted
        item: dict[str, Any] = {
            "type": "post",
            "id": post_id,
            "linkedinUrl": f"https://www.linkedin.com/posts/{handle}_{slug}-activity-{post_id}-{bits:04x}",
            "content": f"{text}. #{slug}",
            "author": author,
            "postedAt": {
                "timestamp": int(posted.timestamp() * 1000),
                "date": _iso(posted),
                "postedAgoShort": f"{age.days}d",
                "postedAgoText": f"{age.days} days ago",
            },
            "postImages": (
                [{"url": f"https://media.licdn.com/dms/image/sandbox/{post_id}.jpg", "width": 1200, "height": 627}]
                if bits % 3 == 0
                else []
            ),
            "socialContent": {
                "shareUrl": f"https://www.linkedin.com/posts/{handle}_{slug}-activity-{post_id}-{bits:04x}"
                "?utm_source=share&utm_medium=member_desktop"
            },
            "engagement": {
                "likes": likes,
                "comments": bits % 37,
                "shares": bits % 11,
                "reactions": [{"type": "LIKE", "count": likes - likes // 5}, {"type": "PRAISE", "count": likes // 5}],
            },
            "query": {"targetUrl": url},
        }
        if bits % 5 == 1:  # a repost: the lead shared someone else's post
            if not include_reposts:
                continue
            original_id = str(7_200_000_000_000_000_000 + bits * 104729)
            item["content"] = ""
            item["repostId"] = original_id
            item["repost"] = {
                "id": original_id,
                "linkedinUrl": f"https://www.linkedin.com/feed/update/urn:li:activity:{original_id}/",
                "content": "Our State of B2B Outbound report is out: reply rates are up when messages are short.",
                "author": {
                    "name": "Initech",
                    "type": "company",
                    "linkedinUrl": "https://www.linkedin.com/company/initech/posts",
                    "universalName": "initech",
                },
            }
        items.append(item)
    limit = ACTOR_PAGE_POSTS if max_posts is None else max_posts
    return items[:limit] if limit > 0 else items


@dataclass
class _Target:
    """What the actor does for one target URL: its items, or the upstream error that made it skip the target."""

    url: str
    items: list[dict[str, Any]]
    error: str | None = None

    @property
    def charge_usd(self) -> float:
        return PRICE_PER_POST_USD * len(self.items) if self.items else PRICE_PER_EMPTY_TARGET_USD


@dataclass
class _Run:
    id: str
    act_id: str
    actor_name: str
    dataset_id: str
    kv_store_id: str
    queue_id: str
    build_id: str
    created: float  # time.monotonic() at start
    started_at: datetime
    duration_s: float
    outcome: str
    input: dict[str, Any]
    input_len: int
    timeout_secs: int
    memory_mbytes: int
    targets: list[_Target] = field(default_factory=list)
    #: How many targets the run works through before it stops (fewer than `targets` under a charge cap).
    planned: int = 0
    max_charge_usd: float | None = None
    finished: bool = False
    finished_at: datetime | None = None
    aborted_at: float | None = None  # time.monotonic() of the abort call

    def done_targets(self, now: float) -> int:
        """How many targets are finished at monotonic time `now`."""
        if self.outcome != "SUCCEEDED" and self.aborted_at is None:
            return 0
        if self.finished and self.aborted_at is None:
            return self.planned
        moment = now if self.aborted_at is None else min(now, self.aborted_at)
        if self.duration_s <= 0 or not self.targets:
            return self.planned
        per_target = self.duration_s / len(self.targets)
        return min(self.planned, int((moment - self.created) / per_target))

    def dataset(self, now: float) -> list[dict[str, Any]]:
        """The dataset as it stands: each finished target's items, `{}` for a target that failed upstream."""
        out: list[dict[str, Any]] = []
        for target in self.targets[: self.done_targets(now)]:
            out += target.items if target.error is None else [{}]
        return out

    def usage_usd(self, now: float) -> float:
        return round(sum(t.charge_usd for t in self.targets[: self.done_targets(now)]), 6)

    def posts(self, now: float) -> int:
        return sum(len(t.items) for t in self.targets[: self.done_targets(now)])


class ApifyApp(ServiceApp):
    """The Apify API v2, as far as leadkit uses it. Settable in-process: `run_duration_s` (how long a
    run takes), `outcome` (force every new run to end FAILED, ABORTED or TIMED-OUT; None: per input)."""

    service = "apify"

    def __init__(self, state: SharedState, *, run_duration_s: float = 0.3) -> None:
        self.state = state
        self.run_duration_s = run_duration_s
        self.outcome: str | None = None
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._datasets: dict[str, _Run] = {}
        self._stores: dict[str, _Run] = {}
        self._rng = random.Random()
        self.user = {"id": SANDBOX_USER_ID, "username": SANDBOX_USERNAME}

    # what tests count ------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        """Every run started so far (oldest first), as the API shows them: what a test counts."""
        with self._lock:
            runs = list(self._runs.values())
        return [self._run_object(r) for r in runs]

    def clear_runs(self) -> None:
        """Forget every run, dataset and store (a test's fresh start)."""
        with self._lock:
            self._runs.clear()
            self._datasets.clear()
            self._stores.clear()

    def run_input(self, run_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._runs[run_id].input)

    # ServiceApp ------------------------------------------------------------------------------
    def error_body(self, status: int, mode: str) -> dict[str, Any]:
        err_type, message = _MODE_ERRORS.get(mode) or _ERRORS.get(
            status, ("internal-server-error", f"Sandbox error {status} ({mode})")
        )
        return {"error": {"type": err_type, "message": message}}

    def _error(self, status: int, err_type: str | None = None, message: str | None = None) -> ApiError:
        body = self.error_body(status, "error")
        if err_type:
            body["error"]["type"] = err_type
        if message:
            body["error"]["message"] = message
        return ApiError(status, body)

    # the account's concurrent-run limit (`--apify-max-runs`) ---------------------------------
    #: Runs the account may have in flight at once; a start beyond it is refused, as Apify refuses it.
    max_runs: int = DEFAULT_MAX_RUNS
    #: The most runs that were ever in flight at once, and the runs started: what a concurrency test counts.
    peak_runs: int = 0
    runs_started: int = 0

    def active_runs(self) -> int:
        """Runs started and not finished (READY, RUNNING, ABORTING)."""
        with self._lock:
            runs = list(self._runs.values())
        return sum(1 for run in runs if not self._snapshot(run).finished)

    def started_inputs(self) -> list[dict[str, Any]]:
        """The INPUT of every run started so far: which targets the sandbox was asked for, and how often."""
        with self._lock:
            return [dict(run.input) for run in self._runs.values()]

    def _limits_object(self) -> dict[str, Any]:
        """`GET /v2/users/me/limits`: the account's caps and what it uses now."""
        active = self.active_runs()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "monthlyUsageCycle": {"startAt": _iso(today.replace(day=1)), "endAt": _iso(today + timedelta(days=30))},
            "limits": {
                "maxConcurrentActorJobs": self.max_runs,
                "maxActorMemoryGbytes": 32,
                "maxMonthlyUsageUsd": 100,
                "maxMonthlyActorComputeUnits": 1000,
                "maxMonthlyExternalDataTransferGbytes": 7,
                "maxMonthlyProxySerps": 50,
                "maxMonthlyResidentialProxyGbytes": 0.5,
                "maxActorCount": 100,
                "maxActorTaskCount": 1000,
                "maxTeamAccountSeatCount": 9,
                "dataRetentionDays": 7,
            },
            "current": {
                "activeActorJobCount": active,
                "actorMemoryGbytes": active,
                "monthlyUsageUsd": 0.0,
                "monthlyActorComputeUnits": 0.0,
                "monthlyExternalDataTransferGbytes": 0.0,
                "monthlyProxySerps": 0,
                "monthlyResidentialProxyGbytes": 0.0,
                "actorCount": 1,
                "actorTaskCount": 0,
                "teamAccountSeatCount": 1,
            },
        }

    @contextmanager
    def _within_run_limit(self) -> Iterator[None]:
        """A start beyond `max_runs` runs in flight is refused (402 `concurrent-runs-limit-exceeded`)."""
        with self.__dict__.setdefault("_run_limit_lock", threading.Lock()):
            active = self.active_runs()
            if active >= self.max_runs:
                raise self._error(
                    402,
                    "concurrent-runs-limit-exceeded",
                    f"By launching this job you will exceed the limit of {self.max_runs} concurrent Actor runs "
                    f"of your plan ({active} are running).",
                )
            yield
            self.peak_runs = max(self.peak_runs, active + 1)
            self.runs_started += 1

    def handle(self, req: Request) -> Response:
        segs = req.segments()
        if not segs or segs[0] != "v2":
            raise self._error(404, "page-not-found", f"The path {req.path} was not found on this server.")
        self._authenticate(req)
        rest = segs[1:]
        method = req.method
        if rest == ["users", "me", "limits"]:
            self._allow(method, "GET")
            return json_response(200, {"data": self._limits_object()})
        if rest == ["users", "me"]:
            self._allow(method, "GET")
            return json_response(200, {"data": self._user_object(full=True)})
        if len(rest) >= 3 and rest[0] in ("acts", "actors"):
            actor = self._actor(rest[1])
            if rest[2:] == ["runs"]:
                if method == "GET":
                    return self._list_runs(req)
                self._allow(method, "POST")
                return self._start(req, actor)
            if rest[2:] == ["run-sync-get-dataset-items"]:
                self._allow(method, "POST")
                return self._run_sync(req, actor)
            if len(rest) == 4 and rest[2] == "runs":
                self._allow(method, "GET")
                return self._get_run(req, rest[3])
        if len(rest) == 2 and rest[0] == "actor-runs":
            self._allow(method, "GET")
            return self._get_run(req, rest[1])
        if len(rest) == 3 and rest[0] == "actor-runs":
            return self._run_action(req, rest[1], rest[2])
        if len(rest) == 4 and rest[0] == "key-value-stores" and rest[2] == "records":
            self._allow(method, "GET")
            return self._kv_record(rest[1], rest[3])
        if len(rest) in (2, 3) and rest[0] == "datasets":
            self._allow(method, "GET")
            run = self._dataset(rest[1])
            if len(rest) == 2:
                return json_response(200, {"data": self._dataset_object(run)})
            if rest[2] == "items":
                self._snapshot(run)
                return self._items(req, run.dataset(time.monotonic()))
        raise self._error(404, "page-not-found", f"The path {req.path} was not found on this server.")

    # helpers ---------------------------------------------------------------------------------
    def _authenticate(self, req: Request) -> None:
        token = req.bearer_token()
        if token is None:
            raise self._error(401, "token-not-provided", "Authentication token was not provided")
        if not self.state.tokens.known(token):
            raise self._error(401)

    def _allow(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise self._error(405, message=f"Method {method} is not allowed here; use {allowed}.")

    def _actor(self, ref: str) -> str:
        if ref.replace("/", "~") in (POSTS_ACTOR, POSTS_ACTOR_ID):
            return POSTS_ACTOR
        raise self._error(404, "record-not-found", "Actor was not found")

    def _user_object(self, *, full: bool) -> dict[str, Any]:
        user: dict[str, Any] = dict(self.user)
        if full:
            user.update(
                profile={"name": "Leadkit Sandbox", "bio": None},
                email="sandbox@example.invalid",
                proxy={"password": "***", "groups": [{"name": "BUYPROXIES94952", "availableCount": 5}]},
                plan={"id": "FREE", "isEnabled": True, "monthlyUsageCreditsUsd": 5},
            )
        return user

    def _wait_param(self, req: Request) -> float:
        raw = req.param("waitForFinish")
        if raw in (None, ""):
            return 0.0
        try:
            value = float(raw)
        except ValueError:
            raise self._error(
                400, "invalid-value", f"waitForFinish must be a number of seconds from 0 to 60, got {raw!r}"
            ) from None
        if value < 0:
            raise self._error(400, "invalid-value", f"waitForFinish must be 0 or more, got {raw!r}")
        return min(value, MAX_WAIT_FOR_FINISH_S)

    def _invalid(self, message: str) -> ApiError:
        return self._error(400, "invalid-input", f"Input is not valid: {message}")

    def _input(self, req: Request) -> tuple[dict[str, Any], list[str]]:
        payload = req.json(default={})
        if not isinstance(payload, dict):
            raise self._invalid("the input must be a JSON object")
        urls: list[str] = []
        for key in ("targetUrls", "profileUrls"):
            value = payload.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                raise self._invalid(f"Field input.{key} must be an array of strings")
            urls += value
        max_posts = payload.get("maxPosts")
        if max_posts is not None and (isinstance(max_posts, bool) or not isinstance(max_posts, int) or max_posts < 0):
            raise self._invalid("Field input.maxPosts must be an integer of 0 or more")
        limit = payload.get("postedLimit", "any")
        if limit not in POSTED_LIMITS:
            raise self._invalid(f"Field input.postedLimit must be one of {list(POSTED_LIMITS)}, got {limit!r}")
        limit_date = payload.get("postedLimitDate")
        if limit_date is not None:
            try:
                date.fromisoformat(str(limit_date))
            except ValueError:
                raise self._invalid(
                    f"Field input.postedLimitDate must be a date YYYY-MM-DD, got {limit_date!r}"
                ) from None
        if not isinstance(payload.get("includeReposts", True), bool):
            raise self._invalid("Field input.includeReposts must be boolean")
        outcome = payload.get("_sandboxOutcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise self._error(400, "invalid-input", f"_sandboxOutcome must be one of {list(OUTCOMES)}")
        return payload, urls

    def _float_param(self, req: Request, name: str) -> float | None:
        raw = req.param(name)
        if raw in (None, ""):
            return None
        try:
            value = float(raw)
        except ValueError:
            raise self._error(400, "invalid-value", f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise self._error(400, "invalid-value", f"{name} must be 0 or more, got {raw!r}")
        return value

    def _create_run(self, req: Request, actor: str) -> _Run:
        payload, urls = self._input(req)
        outcome = self.outcome or payload.get("_sandboxOutcome") or "SUCCEEDED"
        max_charge = self._float_param(req, "maxTotalChargeUsd")
        try:
            timeout_secs = int(req.param("timeout") or 3600)
            memory = int(req.param("memory") or 1024)
        except ValueError:
            raise self._error(400, "invalid-value", "timeout and memory must be integers") from None
        targets = _plan_targets(payload, urls, skip=_skip_pattern(req))
        planned = _planned_targets(targets, max_charge)
        with self._lock:
            ids = [_apify_id(self._rng) for _ in range(5)]
            run = _Run(
                id=ids[0],
                act_id=POSTS_ACTOR_ID,
                actor_name=actor,
                dataset_id=ids[1],
                kv_store_id=ids[2],
                queue_id=ids[3],
                build_id=ids[4],
                created=time.monotonic(),
                started_at=datetime.now(UTC),
                duration_s=max(0.0, float(self.run_duration_s)),
                outcome=str(outcome),
                input=payload,
                input_len=len(req.body),
                timeout_secs=timeout_secs,
                memory_mbytes=memory,
                targets=targets,
                planned=planned,
                max_charge_usd=max_charge,
            )
            self._runs[run.id] = run
            self._datasets[run.dataset_id] = run
            self._stores[run.kv_store_id] = run
        return run

    def _run_length_s(self, run: _Run) -> float:
        """A run that stops early at its charge cap finishes when its last planned target does."""
        if run.outcome == "SUCCEEDED" and run.targets:
            return run.duration_s * run.planned / len(run.targets)
        return run.duration_s

    def _snapshot(self, run: _Run) -> _Run:
        """Bring the run's status up to date with the clock (finishing it when its time is up)."""
        with self._lock:
            now = time.monotonic()
            if run.finished:
                return run
            if run.aborted_at is not None:
                if now - run.aborted_at >= ABORTING_FOR_S:
                    run.finished = True
                    run.outcome = "ABORTED"
                    run.finished_at = run.started_at + timedelta(seconds=run.aborted_at - run.created)
            elif now - run.created >= self._run_length_s(run):
                run.finished = True
                run.finished_at = run.started_at + timedelta(seconds=self._run_length_s(run))
            return run

    def _status(self, run: _Run) -> str:
        if run.finished:
            return run.outcome
        if run.aborted_at is not None:
            return "ABORTING"
        ready_s = min(run.duration_s * 0.1, READY_FOR_S)
        return "READY" if time.monotonic() - run.created < ready_s else "RUNNING"

    def _hold(self, run: _Run, wait_s: float) -> _Run:
        """Answer when the run finishes or `wait_s` has passed, whichever comes first."""
        deadline = time.monotonic() + wait_s
        while True:
            self._snapshot(run)
            now = time.monotonic()
            if run.finished or now >= deadline:
                return run
            ends = run.created + self._run_length_s(run) if run.aborted_at is None else run.aborted_at + ABORTING_FOR_S
            time.sleep(max(0.001, min(deadline, ends) - now + 0.001))

    def _run_object(self, run: _Run) -> dict[str, Any]:
        self._snapshot(run)
        now = time.monotonic()
        elapsed = (run.finished_at or datetime.now(UTC)) - run.started_at
        seconds = max(0.0, elapsed.total_seconds())
        posts = run.posts(now)
        empty = sum(1 for t in run.targets[: run.done_targets(now)] if not t.items)
        return {
            "id": run.id,
            "actId": run.act_id,
            "userId": SANDBOX_USER_ID,
            "actorTaskId": None,
            "startedAt": _iso(run.started_at),
            "finishedAt": _iso(run.finished_at),
            "status": self._status(run),
            "statusMessage": {
                "SUCCEEDED": f"Finished: {posts} posts scraped",
                "FAILED": "The Actor process exited with code 1",
                "ABORTED": "Run was aborted",
                "TIMED-OUT": "Run timed out",
            }.get(run.outcome if run.finished else "", "Scraping posts..."),
            "isStatusMessageTerminal": run.finished,
            "meta": {"origin": "API", "userAgent": "leadkit"},
            "stats": {
                "inputBodyLen": run.input_len,
                "restartCount": 0,
                "resurrectCount": 0,
                "computeUnits": round(seconds * run.memory_mbytes / 1024 / 3600, 6),
                "durationMillis": int(seconds * 1000),
                "runTimeSecs": round(seconds, 3),
            },
            "options": {
                "build": "latest",
                "timeoutSecs": run.timeout_secs,
                "memoryMbytes": run.memory_mbytes,
                "diskMbytes": run.memory_mbytes * 2,
                "maxTotalChargeUsd": run.max_charge_usd,
            },
            "buildId": run.build_id,
            "buildNumber": "0.0.42",
            "exitCode": (0 if run.outcome == "SUCCEEDED" else 1) if run.finished else None,
            "defaultKeyValueStoreId": run.kv_store_id,
            "defaultDatasetId": run.dataset_id,
            "defaultRequestQueueId": run.queue_id,
            "containerUrl": f"https://{run.id.lower()}.runs.apify.net",
            "pricingInfo": {
                "pricingModel": "PAY_PER_EVENT",
                "apifyMarginPercentage": 0.2,
                "createdAt": PRICING_SINCE,
                "startedAt": PRICING_SINCE,
                "pricingPerEvent": {
                    "actorChargeEvents": {
                        "post": {
                            "eventPriceUsd": PRICE_PER_POST_USD,
                            "eventTitle": "Post",
                            "eventDescription": "One post scraped from a profile",
                        },
                        "no-result": {
                            "eventPriceUsd": PRICE_PER_EMPTY_TARGET_USD,
                            "eventTitle": "No result",
                            "eventDescription": "A profile that returned no posts",
                        },
                    }
                },
            },
            "consoleUrl": f"https://console.apify.com/view/runs/{run.id}",
            "chargedEventCounts": {"post": posts, "no-result": empty},
            "usageTotalUsd": run.usage_usd(now),
        }

    def _dataset_object(self, run: _Run) -> dict[str, Any]:
        self._snapshot(run)
        items = run.dataset(time.monotonic())
        return {
            "id": run.dataset_id,
            "name": None,
            "userId": SANDBOX_USER_ID,
            "createdAt": _iso(run.started_at),
            "modifiedAt": _iso(run.finished_at or run.started_at),
            "accessedAt": _iso(datetime.now(UTC)),
            "itemCount": len(items),
            "cleanItemCount": sum(1 for i in items if i),
            "actId": run.act_id,
            "actRunId": run.id,
            "consoleUrl": f"https://console.apify.com/storage/datasets/{run.dataset_id}",
        }

    def _dataset(self, dataset_id: str) -> _Run:
        with self._lock:
            run = self._datasets.get(dataset_id)
        if run is None:
            raise self._error(404, "record-not-found", "Dataset was not found")
        return run

    def _find_run(self, run_id: str) -> _Run:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise self._error(404, "record-not-found", "Actor run was not found")
        return run

    # endpoints -------------------------------------------------------------------------------
    def _start(self, req: Request, actor: str) -> Response:
        wait_s = self._wait_param(req)
        with self._within_run_limit():
            run = self._create_run(req, actor)
        if wait_s:
            self._hold(run, wait_s)
        return json_response(201, {"data": self._run_object(run)})

    def _get_run(self, req: Request, run_id: str) -> Response:
        wait_s = self._wait_param(req)
        run = self._find_run(run_id)
        self._hold(run, wait_s)
        return json_response(200, {"data": self._run_object(run)})

    def _run_sync(self, req: Request, actor: str) -> Response:
        run = self._create_run(req, actor)
        self._hold(run, 300)
        if run.outcome == "TIMED-OUT":
            raise self._error(408, "run-timeout-exceeded", f"Actor run {run.id} timed out.")
        if run.outcome != "SUCCEEDED":
            raise self._error(400, "run-failed", f"Actor run did not succeed (run ID: {run.id}, status: {run.outcome})")
        return self._items(req, run.dataset(time.monotonic()))

    def _items(self, req: Request, items: list[dict[str, Any]]) -> Response:
        """A page of items. `clean`/`skipEmpty` drop empty items *from the page*: offset, limit and the total
        count every item, so a clean page may be short while more remain (as Apify's are)."""
        fmt = req.param("format") or "json"
        if fmt != "json":
            raise self._error(400, "invalid-value", f"format {fmt!r} is not supported by the sandbox; use json")
        try:
            offset = int(req.param("offset") or 0)
            limit_raw = req.param("limit")
            limit = int(limit_raw) if limit_raw not in (None, "") else None
        except ValueError:
            raise self._error(400, "invalid-value", "offset and limit must be integers") from None
        if offset < 0 or (limit is not None and limit < 0):
            raise self._error(400, "invalid-value", "offset and limit must be 0 or more")
        desc = req.param("desc") in ("1", "true")
        skip_empty = any(req.param(name) in ("1", "true") for name in ("clean", "skipEmpty"))
        ordered = list(reversed(items)) if desc else items
        page = ordered[offset:] if limit is None else ordered[offset : offset + limit]
        if skip_empty:
            page = [item for item in page if item]
        headers = {
            "X-Apify-Pagination-Offset": str(offset),
            "X-Apify-Pagination-Limit": str(limit if limit is not None else max(len(items), 1)),
            "X-Apify-Pagination-Count": str(len(page)),
            "X-Apify-Pagination-Total": str(len(items)),
            "X-Apify-Pagination-Desc": "true" if desc else "false",
        }
        return json_response(200, page, headers)

    def _list_runs(self, req: Request) -> Response:
        """The actor's runs, oldest first (`desc=1`: newest first), as Apify's list endpoints page them."""
        try:
            offset = int(req.param("offset") or 0)
            limit = min(int(req.param("limit") or 1000), 1000)
        except ValueError:
            raise self._error(400, "invalid-value", "offset and limit must be integers") from None
        desc = req.param("desc") in ("1", "true")
        status = req.param("status")
        with self._lock:
            runs = list(self._runs.values())
        objects = [self._run_object(r) for r in runs]
        if status:
            objects = [o for o in objects if o["status"] == status]
        if desc:
            objects.reverse()
        keys = (
            *("id", "actId", "actorTaskId", "status", "startedAt", "finishedAt", "buildId", "buildNumber", "meta"),
            *("usageTotalUsd", "defaultKeyValueStoreId", "defaultDatasetId", "defaultRequestQueueId"),
        )
        page = [{k: o[k] for k in keys} for o in objects[offset : offset + limit]]
        return json_response(
            200,
            {
                "data": {
                    "total": len(objects),
                    "offset": offset,
                    "limit": limit,
                    "count": len(page),
                    "desc": desc,
                    "items": page,
                }
            },
        )

    def _run_action(self, req: Request, run_id: str, action: str) -> Response:
        run = self._find_run(run_id)
        if action == "log":
            self._allow(req.method, "GET")
            self._snapshot(run)
            body = self._log(run).encode()
            return Response(200, body, "text/plain; charset=utf-8")
        if action == "abort":
            self._allow(req.method, "POST")
            self._snapshot(run)  # a run whose time is up has finished: aborting it changes nothing, as on Apify
            with self._lock:
                if not run.finished and run.aborted_at is None:
                    run.aborted_at = time.monotonic()
            return json_response(200, {"data": self._run_object(run)})
        raise self._error(404, "page-not-found", f"The path {req.path} was not found on this server.")

    def _kv_record(self, store_id: str, key: str) -> Response:
        with self._lock:
            run = self._stores.get(store_id)
        if run is None:
            raise self._error(404, "record-not-found", "Key-value store was not found")
        if key != "INPUT":
            raise self._error(404, "record-not-found", "Record was not found")
        return json_response(200, run.input)

    def _log(self, run: _Run) -> str:
        """The run's log as the actor writes it: one line per finished target, errors naming the target URL."""
        now = time.monotonic()
        done = run.done_targets(now)
        lines = [f"{_iso(run.started_at)} ACTOR: Starting the Actor run {run.id}"]
        opts = {k: run.input.get(k) for k in ("maxPosts", "postedLimit", "postedLimitDate") if k in run.input}
        lines.append(f"{_iso(run.started_at)} INFO  Scraping posts of {len(run.targets)} profiles {json.dumps(opts)}")
        per_target = run.duration_s / len(run.targets) if run.targets else 0.0
        for i, target in enumerate(run.targets[:done]):
            at = _iso(run.started_at + timedelta(seconds=per_target * (i + 1)))
            if target.error:
                lines.append(f"{at} ERROR Error scraping {target.url}: {target.error}")
            elif target.items:
                lines.append(f"{at} INFO  Scraped {len(target.items)} posts of {target.url}")
            else:
                lines.append(f"{at} INFO  No posts found for {target.url}")
        if run.finished or run.aborted_at is not None:
            at = _iso(run.finished_at or datetime.now(UTC))
            if run.aborted_at is not None:
                lines.append(f"{at} ACTOR: The run was aborted by the user")
            elif run.outcome != "SUCCEEDED":
                lines.append(f"{at} ERROR The Actor process exited with code 1 ({run.outcome})")
            else:
                if run.planned < len(run.targets):
                    lines.append(
                        f"{at} WARN  Stopping: the run's maxTotalChargeUsd of {run.max_charge_usd} USD is reached; "
                        f"{len(run.targets) - run.planned} profiles were not scraped"
                    )
                lines.append(f"{at} INFO  Finished: {run.posts(now)} posts of {done} profiles")
        return "\n".join(lines) + "\n"


def _skip_pattern(req: Request) -> re.Pattern[str] | None:
    """The URL pattern of a `skip_targets` fault rule that chose this request, if any."""
    rule = getattr(req, "fault", None)
    if rule is None or rule.mode != "skip_targets":
        return None
    return rule.body or re.compile(".")


def _cutoff(payload: dict[str, Any], now: datetime) -> datetime | None:
    """The oldest post time the input asks for: the more recent of `postedLimit` and `postedLimitDate`."""
    cutoffs: list[datetime] = []
    span = POSTED_LIMITS[payload.get("postedLimit", "any")]
    if span is not None:
        cutoffs.append(now - span)
    if payload.get("postedLimitDate"):
        cutoffs.append(datetime.combine(date.fromisoformat(str(payload["postedLimitDate"])), datetime.min.time(), UTC))
    return max(cutoffs) if cutoffs else None


def _plan_targets(payload: dict[str, Any], urls: list[str], *, skip: re.Pattern[str] | None) -> list[_Target]:
    now = datetime.now(UTC)
    cutoff = _cutoff(payload, now)
    max_posts = payload.get("maxPosts")
    targets: list[_Target] = []
    for url in urls:
        if skip is not None and skip.search(url):
            targets.append(_Target(url, [], "Request failed with status code 429 (LinkedIn rate limit); skipping"))
            continue
        items = posts_for_profile(url, 0, now=now, include_reposts=payload.get("includeReposts", True))
        if cutoff is not None:
            items = [i for i in items if i["postedAt"]["timestamp"] >= cutoff.timestamp() * 1000]
        limit = ACTOR_PAGE_POSTS if max_posts is None else max_posts
        targets.append(_Target(url, items[:limit] if limit > 0 else items))
    return targets


def _planned_targets(targets: list[_Target], max_charge_usd: float | None) -> int:
    """How many targets fit under the charge cap (a target is worked through whole or not at all)."""
    if max_charge_usd is None:
        return len(targets)
    spent = 0.0
    for i, target in enumerate(targets):
        if spent + target.charge_usd > max_charge_usd + 1e-9:
            return i
        spent += target.charge_usd
    return len(targets)
