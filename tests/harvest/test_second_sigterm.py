"""SIGTERM at the moments a harvest writes its leads: none is left Processing by a process that ends saying it put
them back. A second SIGTERM while the harvest cleans up after the first does not cut the cleanup short (the abort
of the actor run, the write that puts the leads back to Pending); one during the claim of the leads or the write of
a SUCCEEDED run's outcome puts them back too (the run's ID kept on them, read-pending).

A batch killed with SIGKILL sends its kernels two: the parent death signal fires when the batch thread that started
the kernel dies, and again when the batch's last thread has gone. Found by bench/chaos.py (seed 20261207 #51, #39):
on Airtable the second one cut the release PATCH (the sandbox logged a 400 for its half-sent body), the leads stayed
Processing and the ClientRun recorded them "put back to Pending".

Here a real process harvests on the Airtable store of the sandbox; a fault holds one lead write (a 429 waited out,
or an answer late after the server acted) and the SIGTERM comes while it is held. What is checked is what the
Airtable sandbox holds and counted."""

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
from leadkit.store.airtable import AirtableStore
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, Leads, TableSpec
from leadkit_sandbox.server import Sandbox

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


class Harvest:
    """A client with four leads on the sandbox's Airtable store, and a process harvesting them."""

    def __init__(self, sandbox: Sandbox, tmp_path: Path) -> None:
        self.sandbox = sandbox
        self.master = sandbox.airtable.create_base("Master Clients", _spec(MASTER_TABLES))
        settings = Settings(
            leadkit_home=tmp_path,
            airtable_api_key=SecretStr(sandbox.token),
            airtable_endpoint_url=sandbox.airtable_url,
            airtable_max_requests_per_s=1000.0,
        )
        self.store = AirtableStore(self.master, settings)
        self.store.init()
        client = Client("Acme-Co", "Acme Co", service_level=2, post_access=True, daily_target=50, batch_size=4)
        client.base_id = sandbox.airtable.create_base("Acme base", _spec(CLIENT_TABLES))
        self.store.save_client(client)
        self.base_id = client.base_id
        self.store.lead_base(client).import_leads([NewLead(profile_url(i)) for i in range(4)])
        self.home = tmp_path

    def start(self) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "AIRTABLE_API_KEY": self.sandbox.token,
            "AIRTABLE_ENDPOINT_URL": self.sandbox.airtable_url,
            "APIFY_TOKEN": TOKEN,
            "APIFY_API_URL": self.sandbox.apify_url,
        }
        return subprocess.Popen(
            [sys.executable, "-c", HARVEST, self.master, str(self.home)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def lead_writes(self) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.stats()["requests"] if r["method"] == "PATCH" and "/Leads" in r["path"]]

    def held(self) -> list[dict[str, Any]]:
        """The leads' fields as the Airtable sandbox holds them."""
        return [r["fields"] for r in self.sandbox.airtable.records(self.base_id, "Leads")]

    def close(self) -> None:
        self.store.close()


def _ended(proc: subprocess.Popen[str]) -> str:
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Terminated" in err, err[-2000:]
    return err


def test_a_second_sigterm_does_not_cut_the_release_of_the_leads(sandbox: Sandbox, tmp_path: Path) -> None:
    """Seen to fail without the fix (a second SIGTERM raised `Terminated` again, into the 429 wait before the
    release was re-sent): the four leads stayed Processing and no release reached the sandbox."""
    harvest = Harvest(sandbox, tmp_path)
    sandbox.apify.run_duration_s = 60
    release = r'"Pending"'  # the body of the write that puts the leads back (the claim writes "Processing")
    sandbox.add_fault(service="airtable", mode="rate_limit_429", path=r"^/v0/app[^/]+/Leads", body=release, times=1)
    proc = harvest.start()
    try:
        _wait_for("a running actor run", lambda: any(r["status"] == "RUNNING" for r in sandbox.apify.runs()))
        proc.send_signal(signal.SIGTERM)
        _wait_for("the release answered 429", lambda: any(r["status"] == 429 for r in harvest.lead_writes()))
        proc.send_signal(signal.SIGTERM)  # during the client's wait before it sends the release again
        _ended(proc)
    finally:
        proc.kill()
        harvest.close()
    (run,) = sandbox.apify.runs()
    assert run["status"] == "ABORTED", "the actor run stops billing"
    held = [f.get(Leads.HARVEST_STATUS) for f in harvest.held()]
    assert held == [HarvestStatus.PENDING.value] * 4, f"the leads as the Airtable sandbox holds them: {held}"
    assert [r["status"] for r in harvest.lead_writes()] == [200, 429, 200]


def test_sigterm_while_the_claim_is_answered_late_puts_the_leads_back(sandbox: Sandbox, tmp_path: Path) -> None:
    """The claim (Processing) reached Airtable, its answer is late, SIGTERM comes: the leads go back to Pending.
    Seen to fail without the fix (the claim was outside the harvest's interrupt handling): they stayed
    Processing."""
    harvest = Harvest(sandbox, tmp_path)
    claim = r'"Processing"'
    sandbox.add_fault(
        service="airtable", mode="slow_after", path=r"^/v0/app[^/]+/Leads", body=claim, times=1, delay_s=3.0
    )
    proc = harvest.start()
    try:
        _wait_for("the claim acted on", lambda: bool(harvest.lead_writes()))
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _ended(proc)
    finally:
        proc.kill()
        harvest.close()
    assert sandbox.apify.runs() == [], "no actor run was started"
    held = [f.get(Leads.HARVEST_STATUS) for f in harvest.held()]
    assert held == [HarvestStatus.PENDING.value] * 4, f"the leads as the Airtable sandbox holds them: {held}"


def test_sigterm_while_a_paid_runs_outcome_is_written_keeps_the_run(sandbox: Sandbox, tmp_path: Path) -> None:
    """The run SUCCEEDED and its items were read; SIGTERM while its outcome write waits out a 429: the leads go
    back to Pending with the run's ID (read-pending), so the next attempt reads it instead of buying again. Seen to
    fail without the fix (the outcome write was outside the harvest's interrupt handling): they stayed
    Processing."""
    harvest = Harvest(sandbox, tmp_path)
    outcome = r'"(Done|No Posts)"'
    sandbox.add_fault(service="airtable", mode="rate_limit_429", path=r"^/v0/app[^/]+/Leads", body=outcome, times=1)
    proc = harvest.start()
    try:
        _wait_for("the outcome answered 429", lambda: any(r["status"] == 429 for r in harvest.lead_writes()))
        proc.send_signal(signal.SIGTERM)
        _ended(proc)
    finally:
        proc.kill()
        harvest.close()
    (run,) = sandbox.apify.runs()
    assert run["status"] == "SUCCEEDED"
    held = harvest.held()
    assert [f.get(Leads.HARVEST_STATUS) for f in held] == [HarvestStatus.PENDING.value] * 4, held
    assert all(f"read-pending: Apify run {run['id']}" in f.get(Leads.HARVEST_ERROR, "") for f in held), held
