"""`leadkit lab` really starts JupyterLab on loopback with the workspace's settings; the diagnosis notebooks run
under papermill with injected parameters against a real workspace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from leadkit.diagnosis import example_run
from leadkit.logs import LOG_FILE_ENV
from leadkit.workspace import Workspace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
DIAGNOSIS_NOTEBOOKS = {"diagnose_run.ipynb", "client_health.ipynb", "auth_check.ipynb"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _printed_url(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    for _ in range(5):
        line = proc.stdout.readline().decode()
        if line.startswith("open: "):
            return line.removeprefix("open: ").strip()
    raise AssertionError("leadkit lab printed no URL")


def test_lab_serves_the_notebooks_and_the_kernel(workspace: Workspace, tmp_path: Path) -> None:
    port, token = free_port(), "labTestToken0001"
    (workspace.home / "251128-093000").mkdir()
    (workspace.home / "251128-093000" / "Acme-Co.ipynb").write_text(
        (NOTEBOOKS / "auth_check.ipynb").read_text(encoding="utf-8"), encoding="utf-8"
    )
    env = {
        **os.environ,
        "LEADKIT_HOME": str(workspace.home),
        "APIFY_TOKEN": "tokLabKernelsNeedThis000000001",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    env.pop("LEADKIT_STORE", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from leadkit.cli import main; main()", "lab", "--port", str(port), "--token", token],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = _printed_url(proc)
        assert url == f"http://127.0.0.1:{port}/lab?token={token}"
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer within 40 s"
            time.sleep(0.25)
        assert httpx.get(f"{base}/api/contents", timeout=5).status_code == 403  # the token is required
        root = httpx.get(f"{base}/api/contents", params={"token": token}, timeout=5).json()
        assert {"notebooks", "251128-093000"} <= {item["name"] for item in root["content"]}
        contents = httpx.get(f"{base}/api/contents/notebooks", params={"token": token}, timeout=5).json()
        names = {item["name"] for item in contents["content"]}
        assert DIAGNOSIS_NOTEBOOKS | {"client_workflow.ipynb"} <= names
        executed = httpx.get(f"{base}/api/contents/251128-093000/Acme-Co.ipynb", params={"token": token}, timeout=5)
        assert executed.status_code == 200 and executed.json()["type"] == "notebook"
        specs = httpx.get(f"{base}/api/kernelspecs", params={"token": token}, timeout=5).json()
        assert "python3" in specs["kernelspecs"]
        assert httpx.get(url, timeout=5).status_code == 200  # the printed URL opens the Lab as it is
        server_env = psutil.Process(proc.pid).environ()  # the environment every kernel inherits
        assert server_env["LEADKIT_HOME"] == str(workspace.home)
        assert server_env["APIFY_TOKEN"] == env["APIFY_TOKEN"] and server_env["LEADKIT_STORE"] == ""
        assert server_env[LOG_FILE_ENV] == str(workspace.home / "lab.log.jsonl")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_diagnose_run_notebook_with_parameters(workspace: Workspace, tmp_path: Path) -> None:
    import papermill

    run_id = example_run(workspace)
    out = tmp_path / "diagnose.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / "diagnose_run.ipynb"),
        str(out),
        parameters={"run_id": run_id, "workspace": str(workspace.home)},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
        shutdown_kernel="immediate",
    )
    text = out.read_text()
    assert f"run {run_id}: Completed with Errors" in text
    assert "APIFY_TOKEN is not set" in text and "Acme-Co" in text


@pytest.mark.parametrize("name", sorted(DIAGNOSIS_NOTEBOOKS))
def test_notebook_defaults_touch_no_user_workspace(name: str) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'workspace = ""' in params[0].source
    assert "Workspace.scratch" in "".join(c.source for c in nb.cells)
