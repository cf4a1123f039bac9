"""Apify capacity shared by every batch of an account: at most N actor runs in flight across every kernel (and
every dask worker) that spends the same Apify account.

The batch decides N (`APIFY_MAX_CONCURRENT_RUNS`, else the account's limit from `GET /v2/users/me/limits`
(`account_run_limit`), else `DEFAULT_RUNS`) and hands its kernels a limiter spec in `SLOTS_ENV`. A harvester
wraps each actor run in `apify_slot()`; outside a batch (no spec) the context manager does not wait.

The slots belong to the account (a hash of APIFY_API_URL and APIFY_TOKEN), not to the batch: local batches of
every workspace of the user on the machine share N lock files in one folder per account (`account_slot_dir`), a
slot being an exclusive `flock` on one of them, so a kernel that dies frees its slot with its file descriptors
and no count can drift; batches with different N share the files, so together they never hold more than the
largest N. On dask the slots are one `distributed.Semaphore` per account on the scheduler, shared by every
batch's kernels on every worker. Without a token in the environment the slots are the batch's own (its folder,
its semaphore name).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import threading
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
def apify_slot(*, timeout_s: float | None = None, spec: SlotSpec | None = None) -> Iterator[None]:
    """Hold one of the account's Apify run slots for the duration of the block (wait for a free one first), as
    `spec` says (by default the batch's spec in the environment).

    RateLimitError when none came free within `timeout_s`. Without a spec: no wait."""
    if spec is None:
        text = os.environ.get(SLOTS_ENV, "")
        if not text:
            yield
            return
        spec = SlotSpec.from_env(text)
    if spec.kind == "dask":
        with _dask_slot(spec, timeout_s):
            yield
    else:
        with file_slot(account_slot_dir(spec), spec.limit, timeout_s=timeout_s):
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

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
_DASK_LOCK = threading.Lock()


def scheduler_client(address: str) -> Any:
    """This process's `distributed.Client` of the scheduler at `address` (made once, kept for the process)."""
    from distributed import Client

    with _DASK_LOCK:
        client = _DASK.get(address)
        if client is None:
            client = _DASK[address] = Client(address, set_as_default=False, timeout=30)
        return client


def dask_scheduler_from_env() -> str:
    """The scheduler address of the batch this process runs for (a kernel a dask worker started), or ""."""
    text = os.environ.get(SLOTS_ENV, "")
    if not text:
        return ""
    try:
        spec = SlotSpec.from_env(text)
    except DataError:
        return ""
    return spec.scheduler if spec.kind == "dask" else ""


def account_key() -> str:
    """Names the Apify account this process's runs are charged to: a hash of APIFY_API_URL and APIFY_TOKEN
    from the environment ("" without a token)."""
    token = os.environ.get("APIFY_TOKEN", "").strip()
    if not token:
        return ""
    url = os.environ.get("APIFY_API_URL", "https://api.apify.com").rstrip("/")
    return hashlib.sha256(f"{url}\n{token}".encode()).hexdigest()[:24]


def account_slot_dir(spec: SlotSpec) -> Path:
    """Where the file slots of the account live: one folder per user and account in the system's temporary
    folder, so every batch of every workspace of this user on this machine that spends the same Apify account
    shares them; the batch's own folder (`spec.path`) when the account is unknown (no token in the env)."""
    key = account_key()
    if not key:
        return Path(spec.path)
    return Path(tempfile.gettempdir()) / f"leadkit-apify-slots-{os.getuid()}" / key


def account_semaphore_name(spec: SlotSpec) -> str:
    """The dask semaphore of the account's slots (the batch's own name when the account is unknown)."""
    key = account_key()
    return f"leadkit-apify-account-{key}" if key else spec.name


@contextmanager
def _dask_slot(spec: SlotSpec, timeout_s: float | None) -> Iterator[None]:
    from distributed import Semaphore

    client = scheduler_client(spec.scheduler)
    semaphore = Semaphore(
        max_leases=spec.limit, name=account_semaphore_name(spec), scheduler_rpc=client.scheduler, loop=client.loop
    )
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


def account_run_limit(apify: Any) -> int | None:
    """The account's cap on actor runs at once (`limits.maxConcurrentActorJobs` of `GET /v2/users/me/limits`),
    which every batch of the account shares through its slots; None when it cannot be read. It does not
    shrink when another batch is running: that batch holds slots of the same account, so the two together stay
    within the cap."""
    try:
        body = apify.http.request_json("GET", "/v2/users/me/limits").data
        return max(1, int(body["data"]["limits"]["maxConcurrentActorJobs"]))
    except (LeadkitError, KeyError, TypeError, ValueError) as exc:
        log.warning("could not read the Apify account's limits: %s", exc)
        return None
