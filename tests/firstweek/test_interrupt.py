"""Ctrl-C explains itself: a real `leadkit batch` process harvesting on the sandbox is sent SIGINT; it says which
run it stopped, which clients were running and why they stopped, the Apify runs they had started, and the exact
`--resume` command, which then does what it says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

TOKEN = "tokFirstWeekInterrupt0000000001"
LEADKIT = str(Path(sys.executable).parent / "leadkit")


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


@pytest.fixture
def live_env(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Workspace, dict]]:
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
    yield ws, env
    ws.close()


def wait_for_actor_run(sandbox: Sandbox, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [r for r in sandbox.apify.runs() if r["status"] in ("READY", "RUNNING")]
        if running:
            return str(running[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no actor run started")


def test_sigint_prints_what_stopped_and_the_resume_command(live_env: tuple[Workspace, dict], sandbox: Sandbox) -> None:
    ws, env = live_env
    sandbox.apify.run_duration_s = 120
    proc = subprocess.Popen(
        [LEADKIT, "batch", "--concurrency", "1", "--clients", "Acme-Co,Globex", "--timeout", "300"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ws.home,
    )
    try:
        actor_run = wait_for_actor_run(sandbox)
        time.sleep(0.5)  # the kernel writes the "started" event right after the start answers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "batch interrupted by SIGINT (Ctrl-C): run " in err, err
    match = re.search(r"resume with: leadkit batch --resume (\S+)", err)
    assert match, err
    run_id = match.group(1)
    assert [r.run_id for r in ws.store.list_runs(limit=1)] == [run_id]
    assert re.search(r"  Acme-Co: Interrupted: .*interrupted \(", err), err  # the client that ran, and why
    assert "left Running" not in err
    assert "not started (1): Globex" in err
    assert actor_run in err, "the Apify run the stopped client had started is named"
    (record,) = ws.store.list_client_runs(run_id=run_id)
    assert record.outcome == "Interrupted" and record.notebook and Path(record.notebook).is_file(), record
    assert record.reason == "interrupted (signal 2)"  # the batch's signal (its kernel was sent SIGTERM)
    shown = subprocess.run([LEADKIT, "show", run_id], env=env, capture_output=True, text=True, timeout=60)
    line = next(x for x in shown.stdout.splitlines() if x.startswith("Acme-Co"))
    assert "Interrupted" in line and "interrupted (" in line and record.notebook in line, shown.stdout

    sandbox.apify.run_duration_s = 0.05
    resumed = subprocess.run(
        [LEADKIT, "batch", "--resume", run_id, "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    statuses = {r.client_id: r.status.value for r in ws.store.list_client_runs(run_id=run_id)}
    assert statuses == {"Acme-Co": "Completed", "Globex": "Completed"}
