"""Opening an executed notebook in the Lab does not mark it modified: a real batch writes the notebook as nbformat
4.5 with cell IDs, with the kernelspec of the kernel that ran it (what the Lab writes when its kernel connects),
and the file round-trips through nbformat unchanged; opened in a real `leadkit lab` in headless Chromium, its tab
is not dirty once the kernel is idle."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from playwright.sync_api import Browser

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.workspace import Workspace

LEADKIT = str(Path(sys.executable).parent / "leadkit")
TOKEN = "labExecutedNotebook0001"


@pytest.fixture
def executed(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A workspace and the notebook a real `leadkit batch --dry-run` executed in it (relative to the workspace)."""
    home = tmp_path / "ws"
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    seed(ws.store, 2)
    ws.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
    env.update({"LEADKIT_HOME": str(home), "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    done = subprocess.run(
        [LEADKIT, "batch", "--dry-run", "--clients", "Acme-Co", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (client,) = json.loads(done.stdout)["clients"]
    yield home, Path(client["notebook"]).relative_to(home)


def test_the_executed_notebook_is_what_the_lab_would_save(executed: tuple[Path, Path]) -> None:
    home, notebook = executed
    text = (home / notebook).read_text(encoding="utf-8")
    raw = json.loads(text)
    assert (raw["nbformat"], raw["nbformat_minor"]) == (4, 5)
    assert all(isinstance(c.get("id"), str) and c["id"] for c in raw["cells"])
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert nbformat.writes(nb) == text.rstrip("\n")  # read -> write changes nothing
    installed = KernelSpecManager().get_kernel_spec("python3")
    assert raw["metadata"]["kernelspec"] == {
        "display_name": installed.display_name,
        "language": installed.language,
        "name": "python3",
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_opening_it_in_the_lab_does_not_mark_it_modified(
    executed: tuple[Path, Path], tmp_path: Path, browser: Browser
) -> None:
    home, notebook = executed
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
    env.update({"LEADKIT_HOME": str(home), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")})
    before = (home / notebook).read_bytes()
    proc = subprocess.Popen(
        [LEADKIT, "lab", "--port", str(port), "--token", TOKEN],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "leadkit lab ended"
            try:
                if httpx.get(f"{url}/api/status", params={"token": TOKEN}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer within 90 s"
            time.sleep(0.25)
        page = browser.new_page()
        page.goto(f"{url}/lab/tree/{notebook.as_posix()}?token={TOKEN}&reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        # the page's kernel is connected and idle (the server counts its connections): what the Lab changes when
        # its kernel connects (kernelspec, language_info) comes right after
        deadline = time.monotonic() + 90

        def connected_and_idle() -> bool:
            answer = httpx.get(f"{url}/api/kernels", params={"token": TOKEN}, timeout=5)
            kernels = answer.json() if answer.status_code == 200 else []  # a busy server may answer an error
            if not isinstance(kernels, list):  # seen once under load: an error object, not the list
                return False
            return any(k["connections"] >= 1 and k["execution_state"] == "idle" for k in kernels)

        while not connected_and_idle():
            assert time.monotonic() < deadline, "the notebook's kernel did not connect within 90 s"
            time.sleep(0.25)
        tab = page.locator(".lm-TabBar-tab.jp-mod-current", has_text=notebook.name)
        tab.wait_for(timeout=10_000)
        classes = []
        for _ in range(24):  # 6 s: a change on connect would mark it within this
            classes.append(tab.get_attribute("class") or "")
            page.wait_for_timeout(250)
        assert not [c for c in classes if "jp-mod-dirty" in c], classes[-1]
        page.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (home / notebook).read_bytes() == before  # nothing saved it behind our back
