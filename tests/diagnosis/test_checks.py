"""Auth checks against the real sandbox on loopback: every credential, every way one can fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadkit.checks import check_credentials, run_auth_checks
from leadkit.models import Client
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from . import TOKEN, cli_json, client_base, master_base, sandbox_env, sandbox_settings, set_env


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tokens=[TOKEN], rate_limit=0) as sb:
        yield sb


@pytest.fixture(autouse=True)
def no_faults(sandbox: Sandbox) -> Iterator[None]:
    sandbox.clear_faults()
    yield
    sandbox.clear_faults()


def by_name(checks: list) -> dict:
    return {c.name: c for c in checks}


def test_every_credential_checked_and_stored(sandbox: Sandbox, workspace: Workspace) -> None:
    master = master_base(sandbox)
    acme, globex = client_base(sandbox), client_base(sandbox)
    settings = sandbox_settings(sandbox, leadkit_store=f"airtable://{master}")
    clients = [
        Client("Acme-Co", "Acme", base_id=acme),
        Client("Globex", "Globex", base_id=globex),
        Client("Initech", "Initech", status="Paused", base_id="appPausedBase00000"),
    ]
    checks = check_credentials(settings, clients=lambda: clients)
    assert [c.name for c in checks] == [
        "airtable",
        f"airtable:{master}",
        f"airtable:{acme}",
        f"airtable:{globex}",
        "apify",
    ]
    assert all(c.ok and c.status == 200 and c.category is None for c in checks), checks
    assert by_name(checks)[f"airtable:{acme}"].detail.startswith("Acme-Co:")

    workspace.settings = sandbox_settings(sandbox)
    stored = run_auth_checks(workspace)
    assert [c.name for c in stored] == ["airtable", "apify"]
    history = workspace.store.list_auth_checks()
    assert {c.name for c in history} == {"airtable", "apify"} and all(c.ok for c in history)
    assert run_auth_checks(workspace, store_results=False) and len(workspace.store.list_auth_checks()) == 2


def test_html_404_is_a_wrong_url_not_an_expired_token(sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="html_404", times=1)
    sandbox.add_fault(service="airtable", mode="html_200", times=1, path="whoami")
    checks = by_name(check_credentials(sandbox_settings(sandbox)))
    apify, airtable = checks["apify"], checks["airtable"]
    assert (apify.ok, apify.category, apify.status) == (False, "config", 404)
    assert "wrong base URL" in apify.hint and "not an expired token" in apify.hint
    assert "text/html" in apify.detail
    assert (airtable.ok, airtable.category, airtable.status) == (False, "config", 200)


def test_html_401_says_auth(sandbox: Sandbox) -> None:
    sandbox.add_fault(service="apify", mode="html_401", times=1)
    apify = by_name(check_credentials(sandbox_settings(sandbox)))["apify"]
    assert (apify.ok, apify.category, apify.status) == (False, "auth", 401)


def test_refused_token_base_without_access_rate_limit_and_missing_token(sandbox: Sandbox) -> None:
    master = master_base(sandbox)
    settings = sandbox_settings(sandbox, leadkit_store=f"airtable://{master}")
    other = Client("Globex", "Globex", base_id="appNoAccessBase000")
    sandbox.add_fault(service="apify", mode="rate_limit_429", times=1)
    checks = by_name(check_credentials(settings, clients=lambda: [other]))
    assert checks[f"airtable:{master}"].ok
    refused = checks["airtable:appNoAccessBase000"]
    assert (refused.ok, refused.category, refused.status) == (False, "auth", 403)
    assert "Globex" in refused.hint and "scopes" in refused.hint
    assert (checks["apify"].category, checks["apify"].status) == ("rate_limit", 429)

    expired = sandbox_settings(sandbox).model_copy(update={"airtable_api_key": None, "apify_token": None})
    missing = by_name(check_credentials(expired.model_copy(update={"leadkit_store": f"airtable://{master}"})))
    assert set(missing) == {"airtable", "apify"}
    assert missing["airtable"].category == "config" and "AIRTABLE_API_KEY" in missing["airtable"].hint
    assert missing["apify"].category == "config" and "APIFY_TOKEN" in missing["apify"].hint


def test_cli_json_exit_codes_and_no_secret(
    sandbox: Sandbox, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, sandbox_env(sandbox))
    code, items = cli_json("auth-check")
    assert code == 0, items
    assert {i["name"] for i in items} == {"airtable", "apify"}
    assert set(items[0]) >= {"name", "ok", "category", "status", "latency_ms", "hint", "checked_at"}

    set_env(monkeypatch, sandbox_env(sandbox, token="tokExpired0000000000000000000009"))
    code, items = cli_json("auth-check")
    assert code == 2
    assert [(i["name"], i["category"], i["status"]) for i in items] == [
        ("airtable", "auth", 401),
        ("apify", "auth", 401),
    ]
    assert "tokExpired" not in str(items)
    stored = Workspace.open(workspace.home).store.list_auth_checks()
    assert len(stored) == 4 and sum(not c.ok for c in stored) == 2


def test_entry_point_exit_code(sandbox: Sandbox, workspace: Workspace) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, **sandbox_env(sandbox, token="tokExpired0000000000000000000007")}
    done = subprocess.run(
        [sys.executable, "-c", "from leadkit.cli import main; main()", "auth-check", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert {i["category"] for i in json.loads(done.stdout)} == {"auth"}
    assert "tokExpired" not in done.stdout + done.stderr
