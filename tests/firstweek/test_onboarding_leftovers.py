"""First-week onboarding, through the real CLI in a subprocess: `init --store` with a bad base changes nothing,
`clients import --dry-run` lists each change, `lab --port` on a taken port is a clear error before any URL."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit_sandbox.server import Sandbox


def leadkit(*argv: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI (`python -m leadkit.cli`) with exactly `env` on top of a clean environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_", "JUPYTER"))}
    return subprocess.run(
        [sys.executable, "-m", "leadkit.cli", *argv],
        capture_output=True,
        text=True,
        env={**base, **env},
        cwd=cwd,
        timeout=180,
    )


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content (empty when the folder is missing)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------ init --store
@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(rate_limit=0) as sb:
        yield sb


def airtable_env(sb: Sandbox, home: Path) -> dict[str, str]:
    return {
        "AIRTABLE_API_KEY": sb.token,
        "AIRTABLE_ENDPOINT_URL": sb.airtable_url,
        "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
        "LEADKIT_HOME": str(home),
    }


@pytest.mark.parametrize(
    ("bad", "named"),
    [("appNOTAREALBASE", "appNOTAREALBASE"), ("appZZZZZZZZZZZZZZ", "appZZZZZZZZZZZZZZ")],
    ids=["malformed", "unreachable"],
)
def test_init_with_a_bad_master_base_changes_nothing(sandbox: Sandbox, tmp_path: Path, bad: str, named: str) -> None:
    env = airtable_env(sandbox, tmp_path / "missing")
    refused = leadkit("init", "--store", f"airtable://{bad}", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert named in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "missing").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o755)  # whatever umask an earlier in-process command left
    env = airtable_env(sandbox, empty)
    refused = leadkit("init", "--store", f"airtable://{bad}", env=env)
    assert refused.returncode == 2 and named in refused.stderr
    assert tree(empty) == {} and list(empty.iterdir()) == [] and (empty.stat().st_mode & 0o777) == 0o755

    master = sandbox.airtable.create_base(
        "Master", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    provision_env = airtable_env(sandbox, tmp_path / "elsewhere")
    assert leadkit("airtable", "provision", "--base", master, env=provision_env).returncode == 0
    fixed = leadkit("init", "--store", f"airtable://{master}", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "already a leadkit workspace" not in fixed.stdout
    assert f"LEADKIT_STORE=airtable://{master}" in (empty / ".env").read_text()
    assert json.loads((empty / "airtable-usage.json").read_text())["months"]  # the check's requests are counted


def test_init_without_a_token_then_with_it_in_the_env_file(sandbox: Sandbox, tmp_path: Path) -> None:
    master = sandbox.airtable.create_base(
        "Master", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    home = tmp_path / "ws"
    env = {k: v for k, v in airtable_env(sandbox, home).items() if k != "AIRTABLE_API_KEY"}
    first = leadkit("init", "--store", f"airtable://{master}", env=env)
    assert first.returncode == 2 and "AIRTABLE_API_KEY" in first.stderr and str(home / ".env") in first.stderr
    with (home / ".env").open("a") as f:
        f.write(f"AIRTABLE_API_KEY={sandbox.token}\n")
    again = leadkit("init", "--store", f"airtable://{master}", env=env)
    assert again.returncode == 2 and "leadkit airtable provision --base" in again.stderr  # checked this time
    assert "problem(s)" in again.stderr


# ------------------------------------------------------------------------------------------------ clients import
def write_clients(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_clients_import_dry_run_lists_each_change(tmp_path: Path) -> None:
    env = {"LEADKIT_HOME": str(tmp_path / "ws")}
    assert leadkit("init", env=env).returncode == 0
    first = write_clients(
        tmp_path / "first.csv",
        [
            {"client_id": "Acme-Co", "name": "Acme Co", "daily_target": "20", "post_access": "yes"},
            {"client_id": "Globex", "name": "Globex", "daily_target": "10", "post_access": "yes"},
        ],
    )
    assert leadkit("clients", "import", str(first), env=env).returncode == 0
    second = write_clients(
        tmp_path / "second.csv",
        [
            {"client_id": "Acme-Co", "name": "Acme Co", "daily_target": "35", "post_access": "no"},
            {"client_id": "Globex", "name": "Globex", "daily_target": "10", "post_access": "yes"},
            {"client_id": "Initech", "name": "Initech", "daily_target": "5", "post_access": "yes"},
        ],
    )
    before = leadkit("clients", "--json", env=env).stdout

    dry = leadkit("clients", "import", str(second), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    acme = lines.index("  Acme-Co: would be updated")
    assert lines[acme + 1 : acme + 3] == ["      post_access: yes -> no", "      daily_target: 20 -> 35"]
    initech = next(line for line in lines if line.startswith("  Initech:"))
    assert "would be added" in initech and "daily_target=5" in initech and "name=Initech" in initech
    assert not any("Globex" in line for line in lines), dry.stdout
    assert "1 client(s) would be added, 1 would be updated, 1 unchanged" in dry.stdout

    dry_json = json.loads(leadkit("clients", "import", str(second), "--dry-run", "--json", env=env).stdout)
    by_client = {c["client_id"]: c for c in dry_json["changes"]}
    assert set(by_client) == {"Acme-Co", "Initech"}
    assert by_client["Acme-Co"] == {
        "client_id": "Acme-Co",
        "change": "updated",
        "fields": [
            {"field": "post_access", "old": "yes", "new": "no"},
            {"field": "daily_target", "old": 20, "new": 35},
        ],
    }
    assert by_client["Initech"]["change"] == "added"
    assert {"field": "daily_target", "old": None, "new": 5} in by_client["Initech"]["fields"]
    assert leadkit("clients", "--json", env=env).stdout == before  # the dry runs changed nothing

    real = leadkit("clients", "import", str(second), "--json", env=env)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["changes"] == dry_json["changes"]
    after = {c["client_id"]: c for c in json.loads(leadkit("clients", "--json", env=env).stdout)}
    assert after["Acme-Co"]["daily_target"] == 35 and after["Acme-Co"]["post_access"] == "no"
    assert after["Initech"]["daily_target"] == 5 and after["Globex"]["daily_target"] == 10


# ------------------------------------------------------------------------------------------------ lab --port
def test_lab_on_a_taken_port_is_a_clear_error_before_any_url(tmp_path: Path) -> None:
    env = {"LEADKIT_HOME": str(tmp_path / "ws")}
    assert leadkit("init", env=env).returncode == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        taken = leadkit("lab", "--port", str(port), env=env)
    assert taken.returncode == 2, taken.stdout + taken.stderr
    assert f"port {port}" in taken.stderr and "--port" in taken.stderr
    assert "http://" not in taken.stdout + taken.stderr and "Traceback" not in taken.stderr


# ------------------------------------------------------------------------------------------------ lab notebooks
def test_lab_serves_read_only_copies_so_a_save_never_reaches_the_installed_notebooks(tmp_path: Path) -> None:
    import signal
    import time

    import httpx

    from leadkit.resources import notebooks_dir

    installed = notebooks_dir() / "client_workflow.ipynb"
    production = installed.read_bytes()
    home = tmp_path / "ws"
    env = {"LEADKIT_HOME": str(home), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    assert leadkit("init", env=env).returncode == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "labReadOnlyToken0001"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadkit.cli", "lab", "--port", str(port), "--token", token],
        env={**base_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        said = [proc.stdout.readline() for _ in range(3)]
        assert (home / "notebooks" / "client_workflow.ipynb").read_bytes() == production
        assert any("read-only copies" in line and "Save Notebook As" in line for line in said), said
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, said
            try:
                if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
            time.sleep(0.25)
        folder = home / "notebooks"
        copy = folder / "client_workflow.ipynb"
        # an analyst saves over client_workflow.ipynb in the Lab (as root the mode does not stop Jupyter)
        opened = httpx.get(f"{url}/api/contents/notebooks/client_workflow.ipynb", params={"token": token}, timeout=10)
        model = opened.json()
        model["content"]["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": "EDITED IN LAB"})
        saved = httpx.put(
            f"{url}/api/contents/notebooks/client_workflow.ipynb",
            params={"token": token},
            json={"type": "notebook", "format": "json", "content": model["content"]},
            timeout=10,
        )
        if os.geteuid() == 0:  # root writes the read-only copy: only the copy changed
            assert saved.status_code == 200 and b"EDITED IN LAB" in copy.read_bytes()
        else:
            assert saved.status_code >= 400 and copy.read_bytes() == production
        assert installed.read_bytes() == production  # the installed notebook batches run is untouched
        assert folder.is_dir() and not folder.is_symlink()
        assert (copy.stat().st_mode & 0o777) == 0o444
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # the next start puts the installed notebook back in place of the edited copy, read-only again
    from leadkit.cli.workspacecmd import lab_root
    from leadkit.workspace import Workspace

    ws = Workspace.open(home)
    try:
        lab_root(ws)
    finally:
        ws.close()
    assert copy.read_bytes() == production and (copy.stat().st_mode & 0o777) == 0o444
