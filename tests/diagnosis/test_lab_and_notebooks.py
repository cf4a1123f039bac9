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


@pytest.mark.parametrize("name", sorted(DIAGNOSIS_NOTEBOOKS | {"client_history.ipynb"}))
def test_notebook_defaults_choose_the_workspace_in_one_place(name: str) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'workspace = ""' in params[0].source
    source = "".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "notebook_workspace(workspace, store_url" in source and "Workspace.scratch" not in source


def _execute(name: str, out: Path, env: dict[str, str], parameters: dict[str, object], *, offline: bool = False) -> str:
    """Execute a notebook under papermill in a child process with `env` (the kernel inherits it); `offline`: in a
    network namespace of its own with only loopback up (no route anywhere else). The executed notebook's text."""
    script = (
        "import json, sys, papermill\n"
        "papermill.execute_notebook(sys.argv[1], sys.argv[2], parameters=json.loads(sys.argv[3]), "
        "kernel_name='python3', progress_bar=False, cwd=sys.argv[4])\n"
    )
    import json

    argv = [sys.executable, "-c", script, str(NOTEBOOKS / name), str(out), json.dumps(parameters), str(out.parent)]
    if offline:
        argv = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out.read_text()


def _env_without_workspace() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LEADKIT_", "AIRTABLE_", "APIFY_"))}


def test_client_health_uses_the_labs_workspace_by_default(workspace: Workspace, tmp_path: Path) -> None:
    example_run(workspace)
    env = {**_env_without_workspace(), "LEADKIT_HOME": str(workspace.home)}
    text = _execute("client_health.ipynb", tmp_path / "health.ipynb", env, {"client_id": "Globex"})
    assert f"workspace: {workspace.home} (the Lab's LEADKIT_HOME" in text
    assert "throwaway" not in text.split("## Settings")[1]

    env = {**_env_without_workspace(), "LEADKIT_HOME": str(tmp_path / "nothing-here")}
    text = _execute("client_health.ipynb", tmp_path / "health-2.ipynb", env, {})
    assert "workspace: a throwaway demo workspace with made-up data" in text
    assert "holds no leadkit workspace" in text


def test_client_history_draws_offline_with_bokehjs_inline(tmp_path: Path) -> None:
    text = _execute("client_history.ipynb", tmp_path / "history.ipynb", _env_without_workspace(), {}, offline=True)
    assert "workspace: a throwaway demo workspace" in text
    assert "cdn.bokeh.org" not in text and "cdn.holoviz.org" not in text  # nothing to fetch
    assert "Bokeh.set_log_level" in text or "Bokeh = " in text  # BokehJS itself is in the notebook
    assert len(text) > 1_000_000


def test_diagnose_run_links_open_in_the_lab(workspace: Workspace, tmp_path: Path) -> None:
    from leadkit.runids import RunId

    run_id = example_run(workspace)
    record = workspace.store.get_client_run(run_id, "Globex")
    assert record is not None
    executed = workspace.run_dir(RunId.parse(run_id)) / "Globex.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    executed.write_text("{}")
    workspace.records.update(record, notebook=str(executed))
    env = {**_env_without_workspace(), "LEADKIT_HOME": str(workspace.home)}
    text = _execute("diagnose_run.ipynb", tmp_path / "diag.ipynb", env, {"run_id": run_id})
    relative = os.path.relpath(executed, workspace.home / "notebooks")
    assert relative.startswith("../") and f"]({relative})" in text
    assert f"]({executed})" not in text
