"""Two processes that share the Airtable pace never send a base more than Airtable allows, as the sandbox counts:
on one host (the pace folder) and, for kernels started by dask workers on two hosts (each its own temporary
folder), through the scheduler named by the batch's slot spec."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.capacity import SLOTS_ENV, SlotSpec
from leadkit_sandbox.server import Sandbox

TOKEN = "tokPacingHosts0000000000000000001"
EMPTY_TABLE = [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]
REQUESTS = 10
#: One process's requests: what it sends at leadkit's default pace (4 a second), counting the 429s it got.
SCRIPT = """
import sys
from leadkit.errors import RateLimitError
from leadkit.store.airtable.api import AirtableApi, ApiPolicy

endpoint, token, base, n = sys.argv[1:5]
api = AirtableApi(token, ApiPolicy(endpoint_url=endpoint, max_requests_per_s=4.0, rate_limit_attempts=1))
limited = 0
for _ in range(int(n)):
    try:
        api.table(base, "Table 1").all(max_records=1)
    except RateLimitError:
        limited += 1
print(limited)
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=5, penalty_s=30) as sb:  # Airtable's limit and penalty
        yield sb


def _most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _run_two(sandbox: Sandbox, base: str, envs: list[dict[str, str]]) -> list[int]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, sandbox.airtable_url, TOKEN, base, str(REQUESTS)],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        for env in envs
    ]
    out = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], out
    return [int(o.strip().splitlines()[-1]) for o in out]


def _check(sandbox: Sandbox, base: str, limited: list[int]) -> None:
    sent = [r for r in sandbox.stats()["requests"] if r["service"] == "airtable" and r["base"] == base]
    statuses = sorted({r["status"] for r in sent})
    assert len(sent) == 2 * REQUESTS
    assert statuses == [200], (statuses, limited)  # the sandbox answered no 429
    assert _most_in_a_second([r["time"] for r in sent]) <= 5


def test_two_processes_on_one_host_share_the_pace(sandbox: Sandbox, tmp_path: Path) -> None:
    base = sandbox.airtable.create_base("Shared on one host", EMPTY_TABLE)
    env = {"TMPDIR": str(tmp_path), SLOTS_ENV: ""}
    limited = _run_two(sandbox, base, [env, env])
    _check(sandbox, base, limited)


def test_kernels_on_two_hosts_share_the_pace_through_the_scheduler(sandbox: Sandbox, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    base = sandbox.airtable.create_base("Shared by two hosts", EMPTY_TABLE)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        spec = SlotSpec(4, "dask", scheduler=cluster.scheduler_address, name="leadkit-apify-test").to_env()
        envs = []
        for host in ("host-a", "host-b"):  # each kernel's own temporary folder: no pace file in common
            (tmp_path / host).mkdir()
            envs.append({"TMPDIR": str(tmp_path / host), SLOTS_ENV: spec})
        limited = _run_two(sandbox, base, envs)
    _check(sandbox, base, limited)
