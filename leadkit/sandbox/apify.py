"""An Apify-compatible API (v2) for the sandbox: actor runs that move over time, datasets, users.

Routes (everything under /v2 needs a known token, as `Authorization: Bearer` or `?token=`):

    GET  /v2/users/me                                  {"data": user}
    POST /v2/acts/{actor}/runs[?waitForFinish=N]       201 {"data": run}
    POST /v2/acts/{actor}/run-sync-get-dataset-items   bare item array + X-Apify-Pagination-* headers
    GET  /v2/actor-runs/{id}[?waitForFinish=N]         {"data": run} (held until finished, at most 60 s)
    GET  /v2/acts/{actor}/runs/{id}                    the same
    GET  /v2/datasets/{id}                             {"data": dataset}
    GET  /v2/datasets/{id}/items?offset&limit&desc     bare item array + X-Apify-Pagination-* headers

(`/v2/actors/...` is accepted as an alias of `/v2/acts/...`.) A run is READY, then RUNNING, then
SUCCEEDED after `run_duration_s`; it ends FAILED, ABORTED or TIMED-OUT instead when its input has
`"_sandboxOutcome": "FAILED"` (etc.) or `app.outcome` is set. The actor
`harvestapi~linkedin-profile-posts` returns, for each profile URL of `targetUrls` (or `profileUrls`),
posts derived from a hash of the normalised URL: about one profile in four has none.
"""

from __future__ import annotations

import hashlib
import random
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from leadkit.harvest.posts import normalize_profile_url
from leadkit.sandbox.core import ApiError, Request, Response, ServiceApp, SharedState, json_response

__all__ = ["POSTS_ACTOR", "ApifyApp", "posts_for_profile"]

POSTS_ACTOR = "harvestapi~linkedin-profile-posts"
POSTS_ACTOR_ID = "A3cAPGpwBEG8RJwse"
SANDBOX_USER_ID = "sandboxUser00001"
SANDBOX_USERNAME = "leadkit-sandbox"
MAX_WAIT_FOR_FINISH_S = 60
DEFAULT_MAX_RUNS = 32
#: How long a new run stays READY (at most) before it is RUNNING.
READY_FOR_S = 0.2
OUTCOMES = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED-OUT")

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

# A fixed "now" for post dates, so a profile's posts are the same on every run and every machine.
_POSTS_EPOCH = datetime(2025, 11, 1, 9, 0, tzinfo=UTC)
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


def posts_for_profile(url: str, max_posts: int | None = None) -> list[dict[str, Any]]:
    """The items the posts actor returns for one profile URL: deterministic, none for ~1 in 4."""
    try:
        key = normalize_profile_url(url)
    except ValueError:
        return []
    if not key.startswith(("linkedin.com/in/", "linkedin.com/company/")):
        return []
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    count = 0 if digest % 4 == 0 else 1 + (digest >> 4) % 3
    if max_posts is not None and max_posts > 0:
        count = min(count, max_posts)
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
    for i in range(count):
        bits = (digest >> (8 * i)) & 0xFFFF
        post_id = str(7_300_000_000_000_000_000 + (digest + i * 7919) % 10**17)
        slug, text = _TOPICS[(bits + i) % len(_TOPICS)]
        posted = _POSTS_EPOCH - timedelta(days=1 + (bits % 60) + 3 * i, hours=bits % 24)
        likes = 5 + bits % 400
        item: dict[str, Any] = {
            "type": "post",
            "id": post_id,
            "linkedinUrl": f"https://www.linkedin.com/posts/{handle}_{slug}-activity-{post_id}-{bits:04x}",
            "content": f"{text}. #{slug}",
            "author": author,
            "postedAt": {
                "timestamp": int(posted.timestamp() * 1000),
                "date": _iso(posted),
                "postedAgoShort": f"{(_POSTS_EPOCH - posted).days}d",
                "postedAgoText": f"{(_POSTS_EPOCH - posted).days} days ago",
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
            original_id = str(7_200_000_000_000_000_000 + bits * 104729)
            item["content"] = ""
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
    return items


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
    finished: bool = False
    finished_at: datetime | None = None
    items: list[dict[str, Any]] = field(default_factory=list)


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
        self._rng = random.Random()
        self.user = {"id": SANDBOX_USER_ID, "username": SANDBOX_USERNAME}

    # ServiceApp ------------------------------------------------------------------------------
    def error_body(self, status: int, mode: str) -> dict[str, Any]:
        err_type, message = _ERRORS.get(status, ("internal-server-error", f"Sandbox error {status} ({mode})"))
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
        return {
            "limits": {"maxConcurrentActorJobs": self.max_runs, "maxActorMemoryGbytes": 32, "maxMonthlyUsageUsd": 100},
            "current": {"activeActorJobCount": active, "actorMemoryGbytes": active, "monthlyUsageUsd": 0.0},
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
        if len(rest) in (2, 3) and rest[0] == "datasets":
            self._allow(method, "GET")
            run = self._dataset(rest[1])
            if len(rest) == 2:
                return json_response(200, {"data": self._dataset_object(run)})
            if rest[2] == "items":
                return self._items(req, self._snapshot(run).items)
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

    def _input(self, req: Request) -> tuple[dict[str, Any], list[str], int | None]:
        payload = req.json(default={})
        if not isinstance(payload, dict):
            raise self._error(400, "invalid-input", "Input is not valid: the input must be a JSON object")
        urls: list[str] = []
        for key in ("targetUrls", "profileUrls"):
            value = payload.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                raise self._error(
                    400, "invalid-input", f"Input is not valid: Field input.{key} must be an array of strings"
                )
            urls += value
        max_posts = payload.get("maxPosts")
        if max_posts is not None and (isinstance(max_posts, bool) or not isinstance(max_posts, int)):
            raise self._error(400, "invalid-input", "Input is not valid: Field input.maxPosts must be integer")
        outcome = payload.get("_sandboxOutcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise self._error(400, "invalid-input", f"_sandboxOutcome must be one of {list(OUTCOMES)}")
        return payload, urls, max_posts

    def _create_run(self, req: Request, actor: str) -> _Run:
        payload, urls, max_posts = self._input(req)
        outcome = self.outcome or payload.get("_sandboxOutcome") or "SUCCEEDED"
        items: list[dict[str, Any]] = []
        if outcome == "SUCCEEDED":
            for url in urls:
                items += posts_for_profile(url, max_posts if max_posts is not None else 100)
        try:
            timeout_secs = int(req.param("timeout") or 3600)
            memory = int(req.param("memory") or 1024)
        except ValueError:
            raise self._error(400, "invalid-value", "timeout and memory must be integers") from None
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
                items=items,
            )
            self._runs[run.id] = run
            self._datasets[run.dataset_id] = run
        return run

    def _snapshot(self, run: _Run) -> _Run:
        """Bring the run's status up to date with the clock (finishing it when its time is up)."""
        with self._lock:
            if not run.finished and time.monotonic() - run.created >= run.duration_s:
                run.finished = True
                run.finished_at = run.started_at + timedelta(seconds=run.duration_s)
            return run

    def _status(self, run: _Run) -> str:
        if run.finished:
            return run.outcome
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
            time.sleep(min(deadline, run.created + run.duration_s) - now + 0.001)

    def _run_object(self, run: _Run) -> dict[str, Any]:
        self._snapshot(run)
        elapsed = (run.finished_at or datetime.now(UTC)) - run.started_at
        seconds = max(0.0, elapsed.total_seconds())
        usage_usd = round(0.002 * len(run.items) + 0.0004 * seconds, 6) if run.finished else 0.0
        return {
            "id": run.id,
            "actId": run.act_id,
            "userId": SANDBOX_USER_ID,
            "actorTaskId": None,
            "startedAt": _iso(run.started_at),
            "finishedAt": _iso(run.finished_at),
            "status": self._status(run),
            "statusMessage": {
                "SUCCEEDED": f"Finished: {len(run.items)} posts scraped",
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
            },
            "buildId": run.build_id,
            "buildNumber": "0.0.42",
            "exitCode": (0 if run.outcome == "SUCCEEDED" else 1) if run.finished else None,
            "defaultKeyValueStoreId": run.kv_store_id,
            "defaultDatasetId": run.dataset_id,
            "defaultRequestQueueId": run.queue_id,
            "containerUrl": f"https://{run.id.lower()}.runs.apify.net",
            "usageTotalUsd": usage_usd,
        }

    def _dataset_object(self, run: _Run) -> dict[str, Any]:
        self._snapshot(run)
        return {
            "id": run.dataset_id,
            "name": None,
            "userId": SANDBOX_USER_ID,
            "createdAt": _iso(run.started_at),
            "modifiedAt": _iso(run.finished_at or run.started_at),
            "accessedAt": _iso(datetime.now(UTC)),
            "itemCount": len(run.items) if run.finished else 0,
            "cleanItemCount": len(run.items) if run.finished else 0,
            "actId": run.act_id,
            "actRunId": run.id,
        }

    def _dataset(self, dataset_id: str) -> _Run:
        with self._lock:
            run = self._datasets.get(dataset_id)
        if run is None:
            raise self._error(404, "record-not-found", "Dataset was not found")
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
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise self._error(404, "record-not-found", "Actor run was not found")
        self._hold(run, wait_s)
        return json_response(200, {"data": self._run_object(run)})

    def _run_sync(self, req: Request, actor: str) -> Response:
        run = self._create_run(req, actor)
        self._hold(run, 300)
        if run.outcome == "TIMED-OUT":
            raise self._error(408, "run-timeout-exceeded", f"Actor run {run.id} timed out.")
        if run.outcome != "SUCCEEDED":
            raise self._error(400, "run-failed", f"Actor run did not succeed (run ID: {run.id}, status: {run.outcome})")
        return self._items(req, run.items)

    def _items(self, req: Request, items: list[dict[str, Any]]) -> Response:
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
        ordered = list(reversed(items)) if desc else items
        page = ordered[offset:] if limit is None else ordered[offset : offset + limit]
        headers = {
            "X-Apify-Pagination-Offset": str(offset),
            "X-Apify-Pagination-Limit": str(limit if limit is not None else max(len(items), 1)),
            "X-Apify-Pagination-Count": str(len(page)),
            "X-Apify-Pagination-Total": str(len(items)),
            "X-Apify-Pagination-Desc": "true" if desc else "false",
        }
        return json_response(200, page, headers)
