"""The Airtable usage of kernels on other hosts reaches the coordinator's workspace: a kernel of a dask batch
keeps its counts on the scheduler, and `leadkit airtable usage --scheduler` adds them to the workspace's tally,
each once, so the month's figures count every host (checked against the requests the sandbox counted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.capacity import SLOTS_ENV, SlotSpec
from leadkit.store.airtable.usage import USAGE_FILE, read_tally
from leadkit_sandbox.server import Sandbox

TOKEN = "tokUsageHosts00000000000000000001"
EMPTY_TABLE = [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]
REQUESTS = 5
#: A kernel on another host: the workspace path it was given does not exist there.
SCRIPT = """
import sys
from pathlib import Path
from leadkit.store.airtable.api import AirtableApi, ApiPolicy

endpoint, token, base, n, tally = sys.argv[1:6]
api = AirtableApi(token, ApiPolicy(endpoint_url=endpoint, max_requests_per_s=50.0, usage_path=Path(tally)))
for _ in range(int(n)):
    api.table(base, "Table 1").all(max_records=1)
api.usage.client_runs(base, 2)
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


def test_usage_on_other_hosts_reaches_the_coordinators_tally(sandbox: Sandbox, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    base = sandbox.airtable.create_base("Counted on two hosts", EMPTY_TABLE)
    home = tmp_path / "coordinator"  # the coordinator's workspace, which the other hosts do not have
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster:
        spec = SlotSpec(4, "dask", scheduler=cluster.scheduler_address, name="leadkit-apify-test").to_env()
        for host in ("host-a", "host-b"):
            (tmp_path / host).mkdir()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    SCRIPT,
                    sandbox.airtable_url,
                    TOKEN,
                    base,
                    str(REQUESTS),
                    str(home / USAGE_FILE),
                ],
                env={**os.environ, "TMPDIR": str(tmp_path / host), SLOTS_ENV: spec},
                check=True,
                timeout=180,
            )
        home.mkdir()
        assert read_tally(home) == {}
        env = {
            **os.environ,
            SLOTS_ENV: "",
            "LEADKIT_HOME": str(home),
            "LEADKIT_STORE": f"airtable://{base}",
            "AIRTABLE_API_KEY": TOKEN,
            "AIRTABLE_ENDPOINT_URL": sandbox.airtable_url,
        }
        command = [
            str(Path(sys.executable).parent / "leadkit"),
            "airtable",
            "usage",
            "--no-records",
            "--json",
            "--scheduler",
            cluster.scheduler_address,
        ]
        reports = [
            json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)
            for _ in range(2)
        ]
    sent = [r for r in sandbox.stats()["requests"] if r["service"] == "airtable" and r["base"] == base]
    assert len(sent) == 2 * REQUESTS
    for report in reports:  # collected twice: each host's counts are added once
        assert report["master_requests"] == 2 * REQUESTS
        assert report["client_runs"] == 4
