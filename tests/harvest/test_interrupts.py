"""Interrupted harvests, across processes: SIGTERM to a harvesting process, the notebook timeout of a batch, a
SIGTERM to a batch and a kill -9 of a batch then `--resume`, each with the harvest stage against the sandbox.

What is checked is what the sandbox did (runs started, their final status) and what the store holds (no lead
left Processing, no ClientRun claiming success)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.models import ClientRunStatus, HarvestStatus
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN

LEADKIT = str(Path(sys.executable).parent / "leadkit")
DUE = ["Acme-Co", "Globex"]  # the demo's first two clients are due (batch sizes 5 and 4, two batches each)


@dataclass
class Live:
    ws: Workspace
    env: dict[str, str]
    sandbox: Sandbox

    def leads(self, client_id: str) -> list[object]:
        return self.ws.store.lead_base(self.ws.store.get_client(client_id)).list_leads()

    def wait_for_running_run(self, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = [r for r in self.sandbox.apify.runs() if r["status"] in ("READY", "RUNNING")]
            if running:
                return str(running[0]["id"])
            time.sleep(0.1)
        raise AssertionError("no actor run started")

    def final_status(self, run_id: str, timeout_s: float = 10) -> str:
        deadline = time.monotonic() + timeout_s
        status = ""
        while time.monotonic() < deadline:
            status = next(r["status"] for r in self.sandbox.apify.runs() if r["id"] == run_id)
            if status in ("SUCCEEDED", "ABORTED", "FAILED", "TIMED-OUT"):
                return status
            time.sleep(0.1)
        return status


@pytest.fixture
def live(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    """Demo clients in a SQLite workspace, and the environment that makes a subprocess harvest on the sandbox."""
    home = tmp_path / "ws"
    for name in ("LEADKIT_STORE", "AIRTABLE_API_KEY", "LEADKIT_TEST_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    seed(ws.store, 8)
    env = {k: v for k, v in os.environ.items() if k not in ("LEADKIT_STORE", "LEADKIT_TEST_CRASH_AT")}
    env.update(
        {
            "LEADKIT_HOME": str(home),
            "APIFY_TOKEN": TOKEN,
            "APIFY_API_URL": sandbox.apify_url,
            "APIFY_TIMEOUT_S": "10",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        }
    )
    yield Live(ws, env, sandbox)
    ws.close()


HARVEST_SCRIPT = textwrap.dedent(
    """
    import sys
    import leadkit as lk
    from leadkit.models import Source

    ws = lk.Workspace.open(sys.argv[1], settings=lk.get_settings(leadkit_home=sys.argv[1]))
    run = lk.RunId.parse(ws.records.start_run().run_id)
    ws.records.open(run, ws.store.get_client("Acme-Co"), Source.NOTEBOOK)
    print(run, flush=True)
    lk.run_client(ws.store, ws.settings, run, "Acme-Co", stages=["harvest"], records=ws.records)
    """
)


def test_sigterm_while_harvesting_aborts_the_run_and_releases_the_leads(live: Live) -> None:
    live.sandbox.apify.run_duration_s = 60
    proc = subprocess.Popen(
        [sys.executable, "-c", HARVEST_SCRIPT, str(live.ws.home)],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = live.wait_for_running_run()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Terminated" in err
    assert live.final_status(run_id) == "ABORTED", "the actor run stops billing"
    leads = live.leads("Acme-Co")
    submitted = [x for x in leads if x.harvest_status is not None]  # type: ignore[attr-defined]
    assert submitted and all(x.harvest_status is HarvestStatus.PENDING for x in submitted)  # type: ignore[attr-defined]
    assert all("SIGTERM" in (x.last_error or "") for x in submitted)  # type: ignore[attr-defined]
    (record,) = live.ws.store.list_client_runs(client_id="Acme-Co")
    assert record.status is ClientRunStatus.FAILED and "interrupted" in (record.reason or "")
    assert record.failure is not None and record.failure.category and "--resume" in record.failure.hint
    events = live.ws.store.list_events(client_id="Acme-Co")
    assert any(run_id in e.message and "started" in e.message for e in events), "the run ID was on record at once"


def batch(
    live: Live, *args: str, extra: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEADKIT, "batch", "--workers", "2", *args],
        env={**live.env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=live.ws.home,
    )


def test_notebook_timeout_aborts_the_run(live: Live) -> None:
    live.sandbox.apify.run_duration_s = 60
    done = batch(live, "--clients", "Acme-Co", "--timeout", "15", "--json")
    assert done.returncode == 1, done.stderr
    (run,) = live.sandbox.apify.runs()
    assert live.final_status(str(run["id"])) == "ABORTED"
    leads = live.leads("Acme-Co")
    assert all(x.harvest_status in (None, HarvestStatus.PENDING) for x in leads)  # type: ignore[attr-defined]
    (record,) = live.ws.store.list_client_runs(client_id="Acme-Co")
    assert record.status is ClientRunStatus.FAILED
    assert record.failure is not None and record.failure.category == "upstream"
    assert (
        "budget" in record.failure.message and str(run["id"]) in json.dumps(record.to_dict()) + record.failure.message
    )


def test_sigterm_to_the_batch_aborts_the_kernels_runs(live: Live) -> None:
    live.sandbox.apify.run_duration_s = 60
    proc = subprocess.Popen(
        [LEADKIT, "batch", "--workers", "2", "--clients", "Acme-Co", "--timeout", "120"],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=live.ws.home,
    )
    try:
        run_id = live.wait_for_running_run(timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert live.final_status(run_id) == "ABORTED", "the kernel aborted its actor run when the batch went"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(x.harvest_status is not HarvestStatus.PROCESSING for x in live.leads("Acme-Co")):  # type: ignore[attr-defined]
            break
        time.sleep(0.2)
    assert all(x.harvest_status in (None, HarvestStatus.PENDING) for x in live.leads("Acme-Co"))  # type: ignore[attr-defined]


def test_kill_9_then_resume_with_the_harvest_stage(live: Live) -> None:
    live.sandbox.apify.run_duration_s = 0.3
    crashed = batch(live, "--clients", ",".join(DUE), extra={"LEADKIT_TEST_CRASH_AT": "notebook"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (run,) = live.ws.store.list_runs()
    time.sleep(1.0)
    resumed = batch(live, "--resume", run.run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    records = live.ws.store.list_client_runs(run_id=run.run_id)
    assert sorted(r.client_id for r in records) == sorted(DUE)
    assert all(r.status is ClientRunStatus.COMPLETED for r in records)
    runs = live.sandbox.apify.runs()
    assert all(r["status"] in ("SUCCEEDED", "ABORTED") for r in runs), "no actor run left billing"
    harvested: dict[str, int] = {}
    for r in runs:
        if r["status"] == "SUCCEEDED":
            for url in live.sandbox.apify.run_input(str(r["id"]))["targetUrls"]:
                harvested[url] = harvested.get(url, 0) + 1
    assert harvested and max(harvested.values()) == 1, "no lead was harvested twice"
    for client_id in DUE:
        for lead in live.leads(client_id):
            assert lead.harvest_status is not HarvestStatus.PROCESSING  # type: ignore[attr-defined]
            if lead.harvest_status in (HarvestStatus.DONE, HarvestStatus.NO_POSTS):  # type: ignore[attr-defined]
                assert harvested.get(lead.profile_url) == 1  # type: ignore[attr-defined]
    total = {r.client_id: r.metrics for r in records}
    for client_id, metrics in total.items():
        assert metrics.get("targets_submitted", 0) == (
            metrics.get("targets_with_posts", 0)
            + metrics.get("targets_empty", 0)
            + metrics.get("targets_not_covered", 0)
        ), client_id


def _kernels(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]


def test_a_killed_kernel_has_its_actor_run_aborted_and_its_leads_released(live: Live) -> None:
    live.sandbox.apify.run_duration_s = 60
    proc = subprocess.Popen(
        [LEADKIT, "batch", "--workers", "1", "--clients", "Acme-Co", "--timeout", "120", "--json"],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=live.ws.home,
    )
    try:
        run_id = live.wait_for_running_run(timeout_s=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            run_id in e.message for e in live.ws.store.list_events(client_id="Acme-Co")
        ):
            time.sleep(0.1)
        (kernel,) = _kernels(proc.pid)
        kernel.kill()  # the OOM killer, the watchdog or an operator: no chance to abort anything
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert live.final_status(run_id) == "ABORTED", "the dead kernel's actor run was aborted before the batch exited"
    assert all(x.harvest_status is not HarvestStatus.PROCESSING for x in live.leads("Acme-Co"))  # type: ignore[attr-defined]
    (record,) = live.ws.store.list_client_runs(client_id="Acme-Co")
    assert record.status is ClientRunStatus.FAILED
    assert any("aborted Apify run " + run_id in e.message for e in live.ws.store.list_events(client_id="Acme-Co"))


def test_a_kernel_whose_batch_was_killed_finishes_its_cleanup_first(live: Live) -> None:
    """kill -9 of the batch: the kernel gets SIGTERM (parent death) and aborts its run, releases its leads and
    settles its record before it ends, even when the abort takes longer than ipykernel's parent poller waits (it
    ends an orphaned kernel within a second). Found by bench/chaos.py (leads left Processing after a batch
    SIGKILL); seen to fail without `_hold_parent_poller`: the kernel died mid-abort, the leads stayed
    Processing and the record Running."""
    live.sandbox.apify.run_duration_s = 60
    live.sandbox.add_fault(service="apify", mode="slow", times=1, path=r"/abort", delay_s=2.5)
    proc = subprocess.Popen(
        [LEADKIT, "batch", "--workers", "1", "--clients", "Acme-Co", "--timeout", "120", "--json"],
        env=live.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=live.ws.home,
    )
    try:
        run_id = live.wait_for_running_run(timeout_s=60)
        (kernel,) = _kernels(proc.pid)
        proc.kill()
        proc.communicate(timeout=30)
        kernel.wait(timeout=30)
    finally:
        proc.kill()
    assert live.final_status(run_id) == "ABORTED"
    leads = live.leads("Acme-Co")
    assert not any(x.harvest_status is HarvestStatus.PROCESSING for x in leads), [x.harvest_status for x in leads]  # type: ignore[attr-defined]
    (record,) = live.ws.store.list_client_runs(client_id="Acme-Co")
    assert record.status is ClientRunStatus.FAILED, "the kernel settled its own record before it ended"
