"""SIGTERM of a real `leadkit batch` mid-run (SQLite, and Airtable through the sandbox): the batch exits 143 and
leaves, as the store says afterwards, no Run and no ClientRun Running; every client it had started reads
Interrupted with the reason "interrupted (signal 15)", keeps its executed notebook with the cells that ran, and
is what `show`, `failures` and `rerun --failed` report; the clients it never started have no record."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.models import ClientRunStatus, RunStatus
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from .conftest import LEADKIT, Env

CLIENTS = ["Acme-Co", "Globex", "Initech", "Hooli"]
#: The client notebook's first cell after the parameters: says it ran, leaves a mark, then waits to be stopped.
SLEEPER = (
    "import pathlib, time\n"
    "print('cell ran for ' + client_id, flush=True)\n"
    "pathlib.Path(notebook_path + '.began').touch()\n"
    "time.sleep(600)\n"
)


def _tables(specs: object) -> list[dict[str, object]]:
    return [{"name": t.name, "fields": [f.meta() for f in t.fields]} for t in specs]  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "airtable"])
def stopped_env(request: pytest.FixtureRequest, batch_env: Env, tmp_path: Path) -> Iterator[Env]:
    """`batch_env` as it is (SQLite), or with a fresh workspace on a sandbox's Airtable master and client bases."""
    if request.param == "sqlite":
        yield batch_env
        return
    with Sandbox(rate_limit=0) as sb:
        master = sb.airtable.create_base("Master", _tables(MASTER_TABLES))
        bases = [sb.airtable.create_base(f"Client {i}", _tables(CLIENT_TABLES)) for i in range(8)]
        sb.state.tokens.grant(sb.token, master)
        home = tmp_path / "airtable-ws"
        env = {
            **batch_env.env,
            "LEADKIT_HOME": str(home),
            "LEADKIT_STORE": f"airtable://{master}",
            "AIRTABLE_API_KEY": sb.token,
            "AIRTABLE_ENDPOINT_URL": sb.airtable_url,
            "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
        }
        settings = get_settings(
            leadkit_home=home,
            leadkit_store=f"airtable://{master}",
            airtable_api_key=sb.token,
            airtable_endpoint_url=sb.airtable_url,
        )
        ws = Workspace.create(home, settings=settings)
        seed(ws.store, 8, base_ids=bases)
        try:
            yield Env(ws, env, batch_env.marker)
        finally:
            ws.close()


def _wait_for(marks: Callable[[], list[Path]], proc: subprocess.Popen[str], timeout_s: float = 120) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = marks()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended before a notebook began: {proc.communicate()}")
        time.sleep(0.1)
    raise AssertionError("no client notebook began")


def test_sigterm_mid_batch_leaves_nothing_running_and_interrupted_clients_with_notebooks(
    stopped_env: Env, notebook_factory: Callable[[str], Path]
) -> None:
    ws, env = stopped_env.ws, stopped_env.env
    notebook = notebook_factory(SLEEPER)
    args = [
        "batch",
        "--notebook",
        str(notebook),
        "--clients",
        ",".join(CLIENTS),
        "--concurrency",
        "2",
        "--stages",
        "eligibility",
    ]
    proc = subprocess.Popen(
        [LEADKIT, *args, "--timeout", "300"],
        env=env,
        cwd=ws.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: list(ws.home.glob("*/*.began")), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert stopped_env.leftovers() == [], "kernels of the stopped batch are still running"

    (run,) = ws.store.list_runs()
    assert run.status is RunStatus.FAILED and "interrupted (signal 15)" in run.notes
    records = {r.client_id: r for r in ws.store.list_client_runs(run_id=run.run_id)}
    assert [r.client_id for r in records.values() if r.status is ClientRunStatus.RUNNING] == []
    assert len(records) == 2 and set(records) < set(CLIENTS)  # two at once: the other two never started
    began = {p.name.split(".")[0] for p in ws.home.glob("*/*.began")}
    for cid, record in records.items():
        assert record.outcome == "Interrupted", (cid, record.status, record.reason)
        assert record.reason == "interrupted (signal 15)"
        if cid in began:  # its notebook ran a cell: kept, with that cell's output
            assert record.notebook is not None and Path(record.notebook).is_file(), record
            executed = nbformat.read(record.notebook, as_version=4)
            printed = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
            assert any(f"cell ran for {cid}" in text for text in printed), printed
    assert f"resume with: leadkit batch --resume {run.run_id}" in err
    # the stopped clients are failures the operator hears of: one batch alert names them (recorded, no channel)
    alerted = {c for a in ws.store.list_alerts() if a.run_id == run.run_id for c in a.clients}
    assert set(records) <= alerted, ws.store.list_alerts()

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LEADKIT, *argv], env=env, cwd=ws.home, capture_output=True, text=True, timeout=120)

    shown = cli("show", run.run_id)
    assert shown.returncode == 0, shown.stderr
    for cid, record in records.items():
        line = next(x for x in shown.stdout.splitlines() if x.startswith(cid))
        assert "Interrupted" in line and "Failed" not in line, line
        if record.notebook:
            assert record.notebook in shown.stdout
    data = json.loads(cli("show", run.run_id, "--json").stdout)
    assert {c["client_id"]: c["outcome"] for c in data["clients"]} == dict.fromkeys(records, "Interrupted")
    rerun = cli("rerun", "--failed", "--dry-run", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert {f["client_id"] for f in json.loads(rerun.stdout)} == set(records)
    failures = cli("failures")
    assert failures.returncode == 0, failures.stderr
    for cid in records:
        assert cid in failures.stdout
