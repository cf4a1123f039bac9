"""The doctor: declared dependencies from the installed metadata, settings, workspace, Airtable schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.config import get_settings
from leadkit.doctor import check_requirement, declared_requirements, run_doctor
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from . import TOKEN, client_base, master_base, sandbox_settings


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


def by_name(report: object) -> dict:
    return {c.name: c for c in report.checks}  # type: ignore[attr-defined]


def test_declared_dependencies_come_from_the_metadata() -> None:
    declared = declared_requirements()
    assert any(spec.startswith("httpx") for spec in declared) and any(s.startswith("panel") for s in declared)
    assert not any("extra" in spec for spec in declared)  # dev and dask extras are not required
    assert check_requirement("httpx>=0.1").ok
    too_new = check_requirement("httpx>=999")
    assert (too_new.ok, too_new.category) == (False, "dependency") and "is installed" in too_new.detail
    bad = check_requirement("not a requirement !!")
    assert bad.category == "data"


def test_healthy_workspace_and_extra_requirement(workspace: Workspace) -> None:
    settings = workspace.settings.model_copy(update={"apify_token": get_settings(apify_token="tok-x").apify_token})
    report = run_doctor(workspace, settings=settings)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert {"workspace", "store", "settings:APIFY_TOKEN", "dependency:pyairtable"} <= set(by_name(report))

    broken = run_doctor(workspace, settings=settings, extra_requirements=["no-such-pkg>=1"])
    check = by_name(broken)["dependency:no-such-pkg"]
    assert not broken.ok and check.category == "dependency" and "pip install 'no-such-pkg>=1'" in check.hint
    data = broken.to_dict()
    assert data["ok"] is False and set(data["checks"][0]) == {"name", "level", "ok", "category", "detail", "hint"}


def test_no_workspace_and_bad_settings(tmp_path: Path) -> None:
    settings = get_settings(leadkit_home=tmp_path / "nowhere", leadkit_store="", apify_api_url="ftp://x")
    report = by_name(run_doctor(None, settings=settings))
    assert not report["workspace"].ok and report["workspace"].hint.startswith("Run `leadkit init`")
    assert "store" not in report  # one failure for one cause
    assert report["settings:APIFY_API_URL"].category == "config"
    assert report["settings:APIFY_TOKEN"].level == "warn"  # no workspace: nobody is known to need it
    odd = by_name(run_doctor(None, settings=get_settings(leadkit_home=tmp_path, leadkit_store="mongodb://x")))
    assert odd["settings:LEADKIT_STORE"].category == "config"


def test_airtable_schema_problems_with_their_fix(sandbox: Sandbox, tmp_path: Path) -> None:
    master = master_base(sandbox, drop={"Client Run Results": {"Source"}})
    settings = sandbox_settings(sandbox, leadkit_home=tmp_path, leadkit_store=f"airtable://{master}")
    report = run_doctor(None, settings=settings)
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == [f"schema:{master}:Client Run Results.Source"]
    assert failed[0].category == "schema" and f"leadkit airtable provision --base {master}" in failed[0].hint

    healthy = master_base(sandbox)
    ws = Workspace.open(tmp_path, settings=settings.model_copy(update={"leadkit_store": f"airtable://{healthy}"}))
    from leadkit.models import Client

    ws.store.save_client(Client("Acme-Co", "Acme", base_id=client_base(sandbox)))
    report = run_doctor(ws)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert sum(c.name.startswith("schema:") for c in report.checks) == 2  # master and Acme-Co's base

    expired = settings.model_copy(
        update={"airtable_api_key": get_settings(airtable_api_key="tokNope").airtable_api_key}
    )
    refused = [c for c in run_doctor(None, settings=expired).checks if c.name.startswith("schema")]
    assert [c.category for c in refused] == ["auth"]


def test_a_declared_dependency_that_does_not_import(workspace: Workspace, tmp_path: Path) -> None:
    """pyairtable shadowed by a module that raises ImportError: present in the metadata, not loadable."""
    import os
    import subprocess
    import sys

    shadow = tmp_path / "shadow"
    (shadow / "pyairtable").mkdir(parents=True)
    (shadow / "pyairtable" / "__init__.py").write_text("raise ImportError(\"cannot import name 'Api'\")\n")
    env = {**os.environ, "PYTHONPATH": str(shadow), "LEADKIT_HOME": str(workspace.home), "APIFY_TOKEN": "tok-x"}
    done = subprocess.run(
        [sys.executable, "-m", "leadkit.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    import json

    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    check = checks["dependency:pyairtable"]
    assert check["level"] == "fail" and check["category"] == "dependency"
    assert "`import pyairtable` fails: ImportError: cannot import name 'Api'" in check["detail"]
    assert "--force-reinstall" in check["hint"] and "PYTHONPATH" in check["hint"]
    assert checks["dependency:httpx"]["level"] == "ok"


def test_a_kernel_that_cannot_import_leadkit(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    from leadkit.doctor import check_kernel

    other = shutil.which("python3", path="/usr/bin:/bin")
    assert other is not None
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [other, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "language": "python",
                "display_name": "system python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    check = check_kernel(workspace.settings, workspace)
    assert check.level == "fail" and f"runs {other}, which cannot import leadkit" in check.detail
    assert "ModuleNotFoundError" in check.detail and "ipykernel install" in check.hint
    monkeypatch.delenv("JUPYTER_PATH")
    good = check_kernel(workspace.settings, workspace)
    assert good.level == "ok" and "imports leadkit from" in good.detail


def test_warnings_do_not_fail(workspace: Workspace) -> None:
    from leadkit.models import Client

    for client in workspace.store.list_clients():
        workspace.store.save_client(Client(client.client_id, client.name, service_level=1))  # nobody harvests
    report = run_doctor(workspace, settings=workspace.settings)
    token = by_name(report)["settings:APIFY_TOKEN"]
    assert token.level == "warn" and token.ok and "not needed yet" in token.detail
    workspace.store.save_client(Client("Acme-Co", "Acme", service_level=2, post_access=True, daily_target=5))
    token = by_name(run_doctor(workspace, settings=workspace.settings))["settings:APIFY_TOKEN"]
    assert token.level == "fail" and "Acme-Co" in token.detail
