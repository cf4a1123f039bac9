"""Tests of the diagnosis: auth checks, doctor, failure groups, client health, record stats, notebooks, Lab.

Shared helpers (fixtures live in each test module): sandbox settings and the CLI runner.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from leadkit.config import Settings
from leadkit.store.schema import CLIENT_TABLES, MASTER_TABLES, TableSpec
from leadkit_sandbox.server import Sandbox

TOKEN = "tokDiagnosisTests00000000000001"


def tables_spec(tables: tuple[TableSpec, ...], *, drop: dict[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """The meta API spec of `tables`, without the fields named in `drop` ({table: {field, ...}})."""
    drop = drop or {}
    return [
        {"name": t.name, "fields": [f.meta() for f in t.fields if f.name not in drop.get(t.name, set())]}
        for t in tables
    ]


def master_base(sandbox: Sandbox, **kw: Any) -> str:
    return sandbox.airtable.create_base("Master Clients", tables_spec(MASTER_TABLES, **kw))


def client_base(sandbox: Sandbox) -> str:
    return sandbox.airtable.create_base("Client base", tables_spec(CLIENT_TABLES))


def sandbox_env(sandbox: Sandbox, *, token: str | None = None, store: str = "") -> dict[str, str]:
    """Environment variables that point leadkit at the sandbox."""
    return {
        "AIRTABLE_API_KEY": token or sandbox.token,
        "AIRTABLE_ENDPOINT_URL": sandbox.airtable_url,
        "AIRTABLE_RATE_LIMIT_WAIT_S": "0.5",
        "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
        "APIFY_TOKEN": token or sandbox.token,
        "APIFY_API_URL": sandbox.apify_url,
        "LEADKIT_STORE": store,
    }


def sandbox_settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "airtable_api_key": SecretStr(sandbox.token),
        "airtable_endpoint_url": sandbox.airtable_url,
        "airtable_rate_limit_wait_s": 0.5,
        "airtable_max_requests_per_s": 1000.0,
        "apify_token": SecretStr(sandbox.token),
        "apify_api_url": sandbox.apify_url,
        **overrides,
    }
    return Settings(**values)


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def cli(*args: str) -> tuple[int, str]:
    """Run `leadkit ARGS` in-process; (exit code, stdout). A leadkit error escaping a command fails the test."""
    from leadkit.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def cli_json(*args: str) -> tuple[int, Any]:
    code, out = cli(*args, "--json")
    return code, json.loads(out)
