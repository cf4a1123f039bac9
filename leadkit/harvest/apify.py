"""Apify API v2 client: start an actor run, poll it, read its dataset with paging.

The API holds a `waitForFinish` request at most 60 s, so a long run is polled in a loop bounded by
`max_wait_s`; statuses it does not know (ABORTING, TIMING-OUT...) count as not finished. A run that
ends in anything but SUCCEEDED raises, so a failed run is never read as "no posts".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from leadkit.config import Settings
from leadkit.errors import ConfigError, LeadkitError, UpstreamError
from leadkit.http import HttpClient, JsonResponse, Timeouts

__all__ = ["FAILED_STATUSES", "TERMINAL_STATUSES", "ApifyClient", "ApifyRun"]

SUCCEEDED = "SUCCEEDED"
FAILED_STATUSES = frozenset({"FAILED", "ABORTED", "TIMED-OUT"})
TERMINAL_STATUSES = FAILED_STATUSES | {SUCCEEDED}

#: The API never holds a request longer than this.
MAX_WAIT_FOR_FINISH_S = 60
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
        )


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
        self._clock = clock
        self._sleep = sleep

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

    def start_run(self, input: dict[str, Any]) -> ApifyRun:
        """Start the actor with `input` as its INPUT; returns the run as Apify created it."""
        path = f"/v2/acts/{quote(self.actor_id, safe='~')}/runs"
        return self._run(self.http.request_json("POST", path, json=input))

    def get_run(self, run_id: str, *, wait_s: int = 0) -> ApifyRun:
        params = {"waitForFinish": wait_s} if wait_s else None
        return self._run(self.http.request_json("GET", f"/v2/actor-runs/{quote(run_id)}", params=params))

    def wait(self, run_id: str) -> ApifyRun:
        """Poll the run until it reaches a terminal status, for at most `max_wait_s` in all."""
        deadline = self._clock() + self.max_wait_s
        while True:
            remaining = deadline - self._clock()
            wait_s = max(0, min(self.poll_wait_s, math.floor(remaining)))
            asked_at = self._clock()
            run = self.get_run(run_id, wait_s=wait_s)
            if run.finished:
                return run
            if self._clock() >= deadline:
                raise UpstreamError(
                    f"Apify run {run_id} did not finish within {self.max_wait_s:g}s "
                    f"(last status {run.status}); it may still be running: see it in the Apify Console "
                    f"or raise APIFY_MAX_WAIT_S",
                    apify_run_id=run_id,
                    apify_status=run.status,
                )
            # A server that answered before the wait it was asked for is polled at a gentle pace.
            if self._clock() - asked_at < max(wait_s, self.poll_interval_s):
                self._sleep(min(self.poll_interval_s, max(0.0, deadline - self._clock())))

    def dataset_items(self, dataset_id: str, *, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every item of a dataset, read `page_size` at a time."""
        if page_size < 1:
            raise ValueError(f"page_size is {page_size}; accepted: 1 or more")
        items: list[dict[str, Any]] = []
        offset = 0
        path = f"/v2/datasets/{quote(dataset_id)}/items"
        while True:
            params = {"format": "json", "clean": "1", "offset": offset, "limit": page_size}
            resp = self.http.request_json("GET", path, params=params)
            if not isinstance(resp.data, list):
                raise ConfigError(
                    f"Apify answered {resp.status} for {resp.url} with {type(resp.data).__name__} where a "
                    f"list of dataset items was expected; check APIFY_API_URL",
                    url=resp.url,
                    status=resp.status,
                )
            items.extend(i for i in resp.data if isinstance(i, dict))
            offset += len(resp.data)
            total = _int_header(resp.headers, "x-apify-pagination-total")
            if not resp.data or len(resp.data) < page_size or (total is not None and offset >= total):
                return items

    def run_actor(self, input: dict[str, Any]) -> tuple[ApifyRun, list[dict[str, Any]]]:
        """Start, wait, read: the finished run and its items. A run that did not succeed raises."""
        run = self.start_run(input)
        try:
            run = self.wait(run.id)
        except LeadkitError as exc:
            exc.details.setdefault("apify_run_id", run.id)
            exc.details.setdefault("apify_status", run.status)
            raise
        if not run.succeeded:
            raise UpstreamError(
                f"Apify run {run.id} of {self.actor_id} ended {run.status}; its dataset was not read "
                f"and no lead was marked as having no posts",
                apify_run_id=run.id,
                apify_status=run.status,
            )
        if not run.dataset_id:
            raise ConfigError(f"Apify run {run.id} SUCCEEDED but names no defaultDatasetId", apify_run_id=run.id)
        try:
            items = self.dataset_items(run.dataset_id)
        except LeadkitError as exc:
            exc.details.setdefault("apify_run_id", run.id)
            exc.details.setdefault("apify_status", run.status)
            raise
        return run, items

    def whoami(self) -> dict[str, Any]:
        """The token's user (`GET /v2/users/me`): the cheapest authenticated check."""
        return self._data(self.http.request_json("GET", "/v2/users/me"))


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
