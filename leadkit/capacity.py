"""Apify capacity shared by a whole batch: at most N actor runs in flight across every kernel (and every dask
worker) that the batch started.

The batch decides N once (`APIFY_MAX_CONCURRENT_RUNS`, else the account's free capacity from
`GET /v2/users/me/limits`, else `DEFAULT_RUNS`) and hands its kernels a limiter spec in `SLOTS_ENV`. A harvester
wraps each actor run in `apify_slot()`; outside a batch (no spec) the context manager does not wait.

Local batches share N lock files under the workspace: a slot is an exclusive `flock` on one of them, so a kernel
that dies frees its slot with its file descriptors, and no count can drift. On dask the slots are a
`distributed.Semaphore` on the batch's scheduler, shared by every worker's kernels.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadkit.errors import DataError, LeadkitError, RateLimitError

log = logging.getLogger("leadkit.capacity")

SLOTS_ENV = "LEADKIT_APIFY_SLOTS"
DEFAULT_RUNS = 8
POLL_S = 0.1


@dataclass(frozen=True)
class SlotSpec:
    """Where a batch's Apify slots live: `kind` "file" (`path`, a folder) or "dask" (`scheduler`, `name`)."""

    limit: int
    kind: str = "file"
    path: str = ""
    scheduler: str = ""
    name: str = ""

    def to_env(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> SlotSpec:
        try:
            data = json.loads(text)
            spec = cls(**data)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{SLOTS_ENV}={text!r} is not a slot spec written by a batch: {exc}") from None
        if spec.limit < 1 or spec.kind not in ("file", "dask"):
            raise DataError(f"{SLOTS_ENV}={text!r}: limit must be >= 1 and kind 'file' or 'dask'")
        return spec


@contextmanager
def apify_slot(*, timeout_s: float | None = None) -> Iterator[None]:
    """Hold one of the batch's Apify run slots for the duration of the block (wait for a free one first).

    RateLimitError when none came free within `timeout_s`. Without a batch's spec in the environment: no wait."""
    text = os.environ.get(SLOTS_ENV, "")
    if not text:
        yield
        return
    spec = SlotSpec.from_env(text)
    if spec.kind == "dask":
        with _dask_slot(spec, timeout_s):
            yield
    else:
        with file_slot(Path(spec.path), spec.limit, timeout_s=timeout_s):
            yield


class KeptSlot:
    """One client's Apify slot, taken at its first actor run and kept across its next ones until `release()`.

    A client runs one actor run at a time, so keeping its slot between its batches costs the others nothing,
    while handing it back after each run would let a client that has not started take it: clients would then
    finish late, one batch at a time, and the batch's last minutes would run with slots idle."""

    def __init__(self) -> None:
        self._held: ExitStack | None = None

    @property
    def held(self) -> bool:
        return self._held is not None

    def take(self, *, timeout_s: float | None = None) -> None:
        """Wait for a slot (`apify_slot`) unless this client holds one already."""
        if self._held is not None:
            return
        stack = ExitStack()
        stack.enter_context(apify_slot(timeout_s=timeout_s))
        self._held = stack

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()


@contextmanager
def file_slot(folder: Path, limit: int, *, timeout_s: float | None = None) -> Iterator[int]:
    """One of `limit` exclusive lock files in `folder`; yields the slot's number."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        for slot in random.sample(range(limit), limit):
            fd = os.open(folder / f"apify-slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield slot
            finally:
                os.close(fd)  # releases the lock
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise _no_slot(limit, timeout_s)
        time.sleep(POLL_S * (0.5 + random.random()))


_DASK: dict[str, Any] = {}


@contextmanager
def _dask_slot(spec: SlotSpec, timeout_s: float | None) -> Iterator[None]:
    from distributed import Client, Semaphore

    client = _DASK.get(spec.scheduler)
    if client is None:
        client = _DASK[spec.scheduler] = Client(spec.scheduler, set_as_default=False, timeout=30)
    semaphore = Semaphore(max_leases=spec.limit, name=spec.name, scheduler_rpc=client.scheduler, loop=client.loop)
    if not semaphore.acquire(timeout=timeout_s):
        raise _no_slot(spec.limit, timeout_s)
    try:
        yield
    finally:
        semaphore.release()


def _no_slot(limit: int, timeout_s: float | None) -> RateLimitError:
    return RateLimitError(
        f"no Apify run slot came free within {timeout_s:g} s (the batch allows {limit} runs at once)",
        hint="Raise APIFY_MAX_CONCURRENT_RUNS (within the account's limit) or lower --concurrency.",
    )


def account_free_runs(apify: Any) -> int | None:
    """The account's free actor-run capacity, from `GET /v2/users/me/limits`: `limits.maxConcurrentActorJobs`
    less `current.activeActorJobCount`; None when it cannot be read. `apify` is a `leadkit.harvest.ApifyClient`."""
    try:
        body = apify.http.request_json("GET", "/v2/users/me/limits").data
        data = body["data"]
        limit = int(data["limits"]["maxConcurrentActorJobs"])
        active = int(data["current"]["activeActorJobCount"])
    except (LeadkitError, KeyError, TypeError, ValueError) as exc:
        log.warning("could not read the Apify account's limits: %s", exc)
        return None
    return max(0, limit - active)
