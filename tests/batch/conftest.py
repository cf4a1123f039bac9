"""Batch fixtures: a SQLite workspace with demo clients, the `leadkit` command as a subprocess, test notebooks
that raise, kill their kernel or sleep, and a look at the processes a batch left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace

LEADKIT = str(Path(sys.executable).parent / "leadkit")
PARAMETERS = (
    'client_id = "Acme-Co"\nrun_id = ""\nstages = "eligibility"\nworkspace = ""\nstore_url = ""\n'
    'dry_run = True\nnotebook_path = ""\n'
)
WORKFLOW = (
    "import leadkit as lk\n"
    "ws = lk.Workspace.open(workspace, settings=lk.get_settings(leadkit_home=workspace, leadkit_store=store_url))\n"
    "outcome = lk.run_client(ws.store, ws.settings, lk.RunId.parse(run_id), client_id,\n"
    "    stages=stages.split(','), dry_run=dry_run, notebook=notebook_path or None, records=ws.records)\n"
    "print(outcome.status.value)\n"
)


@dataclass
class Env:
    """A workspace and the environment a `leadkit` subprocess runs it with (a marker finds its processes)."""

    ws: Workspace
    env: dict[str, str]
    marker: str

    def cli(
        self, *args: str, timeout: float = 120, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LEADKIT, *args],
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.ws.home,
        )

    def leftovers(self, wait_s: float = 10.0) -> list[str]:
        """Processes still carrying this environment's marker after up to `wait_s` seconds."""
        deadline = time.monotonic() + wait_s
        while True:
            alive = []
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if proc.pid == os.getpid():
                    continue
                try:
                    if proc.environ().get("LEADKIT_TEST_MARK") == self.marker and proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def make_workspace(home: Path, clients: int) -> Workspace:
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    seed(ws.store, clients)
    return ws


@pytest.fixture
def batch_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """8 demo clients (7 Active) in tmp_path/ws, secrets unset, and a subprocess environment for `leadkit`."""
    home = tmp_path / "ws"
    for name in ("LEADKIT_STORE", "APIFY_TOKEN", "AIRTABLE_API_KEY", "APIFY_API_URL", "LEADKIT_TEST_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADKIT_HOME", str(home))
    ws = make_workspace(home, 8)
    marker = uuid.uuid4().hex
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("APIFY_TOKEN", "AIRTABLE_API_KEY", "LEADKIT_STORE", "APIFY_API_URL", "LEADKIT_TEST_CRASH_AT")
    }
    env.update({"LEADKIT_HOME": str(home), "LEADKIT_TEST_MARK": marker, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    yield Env(ws, env, marker)
    ws.close()


@pytest.fixture
def notebook_factory(tmp_path: Path) -> Callable[[str], Path]:
    """A client notebook with the batch's parameters whose body is `source` (then the normal workflow)."""

    def make(source: str) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell(PARAMETERS)
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(source), nbformat.v4.new_code_cell(WORKFLOW)]
        path = tmp_path / f"nb-{uuid.uuid4().hex[:8]}.ipynb"
        nbformat.write(nb, path)
        return path

    return make


def add_harvest_clients(
    ws: Workspace, count: int, *, prefix: str = "Scale", stream: int = 1, batches: int = 1
) -> list[str]:
    """`count` Active clients that are due, each with `batches` batches of 5 leads to harvest; their IDs."""
    from leadkit.models import Client, NewLead

    ids = []
    for i in range(count):
        client = Client(
            f"{prefix}-{i:03d}",
            f"{prefix} {i:03d}",
            service_level=2,
            post_access=True,
            daily_target=1000,
            batch_size=5,
            max_batches=batches,
            stream=stream,
        )
        ws.store.save_client(client)
        ws.store.lead_base(client).import_leads(
            [
                NewLead(
                    profile_url=f"https://www.linkedin.com/in/{client.client_id.lower()}-lead-{n:02d}/",
                    name=f"Lead {n}",
                    company=f"{client.name} Prospect {n}",
                )
                for n in range(5 * batches)
            ]
        )
        ids.append(client.client_id)
    return ids


def runs_by_client(inputs: list[dict[str, Any]]) -> dict[str, int]:
    """How many actor runs the sandbox started for each client (client ID from the profile URLs of each input)."""
    counts: dict[str, int] = {}
    for payload in inputs:
        urls = payload.get("targetUrls") or []
        slug = str(urls[0]).rstrip("/").rsplit("/", 1)[-1].rsplit("-lead-", 1)[0] if urls else ""
        counts[slug] = counts.get(slug, 0) + 1
    return counts
