"""A second SIGTERM while a harvest is cleaning up after the first: the cleanup (the abort of the actor run, the
write that puts the leads back to Pending) is finished, not cut short.

A batch killed with SIGKILL sends its kernels two: the parent death signal fires when the batch thread that started
the kernel dies, and again when the batch's last thread has gone. Found by bench/chaos.py (seed 20261207 #51, #39):
on Airtable the second one cut the release PATCH (the sandbox logged a 400 for its half-sent body), the leads stayed
Processing and the ClientRun recorded them "put back to Pending".

Here a real process harvests on the Airtable store of the sandbox; the write that releases the leads is answered
429 once (Airtable's penalty, waited out by the client), and the second SIGTERM comes during that wait. What is
checked is what the Airtable sandbox holds and counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from leadkit.config import Settings
from leadkit.models import Client, HarvestStatus, NewLead
from leadkit.sandbox.server import Sandbox
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, Leads, TableSpec

from .conftest import TOKEN, profile_url

HARVEST = textwrap.dedent(
    """
    import os, sys
    from pydantic import SecretStr
    from leadkit.config import Settings
    from leadkit.harvest.apify import ApifyClient
    from leadkit.harvest.harvester import Harvester, terminate_on_sigterm
    from leadkit.store.airtable import AirtableStore

    master, home = sys.argv[1], sys.argv[2]
    settings = Settings(
        leadkit_home=home,
        airtable_api_key=SecretStr(os.environ["AIRTABLE_API_KEY"]),
        airtable_endpoint_url=os.environ["AIRTABLE_ENDPOINT_URL"],
        airtable_rate_limit_wait_s=1.5,
        airtable_max_requests_per_s=1000.0,
        apify_token=SecretStr(os.environ["APIFY_TOKEN"]),
        apify_api_url=os.environ["APIFY_API_URL"],
    )
    store = AirtableStore(master, settings)
    client = store.get_client("Acme-Co")
    with ApifyClient.from_settings(settings) as apify, terminate_on_sigterm():
        Harvester(apify).run(client, store.lead_base(client), "run-1-Acme-Co")
    """
)


def _spec(tables: tuple[TableSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": t.name, "fields": [f.meta() for f in t.fields]} for t in tables]


def _wait_for(what: str, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if ready():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_sigterm_does_not_cut_the_release_of_the_leads(sandbox: Sandbox, tmp_path: Path) -> None:
    """Seen to fail without the fix (a second SIGTERM raised `Terminated` again, into the 429 wait before the
    release was re-sent): the four leads stayed Processing and no release reached the sandbox."""
    master = sandbox.airtable.create_base("Master Clients", _spec(MASTER_TABLES))
    settings = Settings(
        leadkit_home=tmp_path,
        airtable_api_key=SecretStr(sandbox.token),
        airtable_endpoint_url=sandbox.airtable_url,
        airtable_max_requests_per_s=1000.0,
    )
    store = AirtableStore(master, settings)
    store.init()
    client = Client("Acme-Co", "Acme Co", service_level=2, post_access=True, daily_target=50, batch_size=4)
    client.base_id = sandbox.airtable.create_base("Acme base", _spec(CLIENT_TABLES))
    store.save_client(client)
    base = store.lead_base(client)
    base.import_leads([NewLead(profile_url(i)) for i in range(4)])
    sandbox.apify.run_duration_s = 60
    release = r'"Pending"'  # the body of the write that puts the leads back (the claim writes "Processing")
    sandbox.add_fault(service="airtable", mode="rate_limit_429", path=r"^/v0/app[^/]+/Leads", body=release, times=1)
    env = {
        **os.environ,
        "AIRTABLE_API_KEY": sandbox.token,
        "AIRTABLE_ENDPOINT_URL": sandbox.airtable_url,
        "APIFY_TOKEN": TOKEN,
        "APIFY_API_URL": sandbox.apify_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HARVEST, master, str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for("a running actor run", lambda: any(r["status"] == "RUNNING" for r in sandbox.apify.runs()))
        proc.send_signal(signal.SIGTERM)

        def refused() -> bool:
            return any(
                r.get("fault") == "rate_limit_429" and r["method"] == "PATCH" for r in sandbox.stats()["requests"]
            )

        _wait_for("the release answered 429", refused)
        proc.send_signal(signal.SIGTERM)  # during the client's wait before it sends the release again
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        store.close()
    assert proc.returncode != 0 and "Terminated" in err, err[-2000:]
    (run,) = sandbox.apify.runs()
    assert run["status"] == "ABORTED", "the actor run stops billing"
    held = [r["fields"].get(Leads.HARVEST_STATUS) for r in sandbox.airtable.records(client.base_id, "Leads")]
    assert held == [HarvestStatus.PENDING.value] * 4, f"the leads as the Airtable sandbox holds them: {held}"
    patches = [r for r in sandbox.stats()["requests"] if r["method"] == "PATCH" and "/Leads" in r["path"]]
    assert [r["status"] for r in patches] == [200, 429, 200], patches
