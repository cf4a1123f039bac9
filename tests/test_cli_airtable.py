"""`leadkit airtable check` and `provision` against the Airtable-compatible sandbox, through the meta API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from leadkit.cli import app
from leadkit.errors import ConfigError
from leadkit_sandbox.server import Sandbox

runner = CliRunner()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox(rate_limit=0) as sb:
        monkeypatch.setenv("AIRTABLE_API_KEY", sb.token)
        monkeypatch.setenv("AIRTABLE_ENDPOINT_URL", sb.airtable_url)
        monkeypatch.setenv("AIRTABLE_MAX_REQUESTS_PER_S", "1000")
        monkeypatch.delenv("LEADKIT_STORE", raising=False)
        yield sb


def test_check_then_provision_then_check(sandbox: Sandbox) -> None:
    base = sandbox.airtable.create_base(
        "Master", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    result = runner.invoke(app, ["airtable", "check", "--base", base, "--json"])
    problems = json.loads(result.output)
    assert result.exit_code == 2
    assert {"kind": "missing_table", "table": "Client Run Results"}.items() <= next(
        p for p in problems if p["table"] == "Client Run Results"
    ).items()
    assert all(p["fix"] for p in problems)
    result = runner.invoke(app, ["airtable", "provision", "--base", base, "--json"])
    assert result.exit_code == 0, result.output
    assert any("Client Run Results" in item for item in json.loads(result.output)["created"])
    result = runner.invoke(app, ["airtable", "check", "--base", base])
    assert result.exit_code == 0 and "schema OK" in result.output


def test_client_base_kind_and_bad_input(sandbox: Sandbox) -> None:
    base = sandbox.airtable.create_base(
        "Leads", [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    )
    assert runner.invoke(app, ["airtable", "provision", "--base", base, "--kind", "client"]).exit_code == 0
    assert runner.invoke(app, ["airtable", "check", "--base", base, "--kind", "client"]).exit_code == 0
    result = runner.invoke(app, ["airtable", "check", "--base", "not-a-base"])
    assert result.exit_code != 0 and "not-a-base" in str(result.exception)
    result = runner.invoke(app, ["airtable", "check"])
    assert isinstance(result.exception, ConfigError) and "LEADKIT_STORE" in str(result.exception)
