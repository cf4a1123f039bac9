"""Tests of the alerts: real Apprise deliveries to an SMTP server (aiosmtpd) and a JSON webhook on loopback."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner


def cli(*args: str) -> tuple[int, str]:
    """Run `leadkit ARGS` in-process; (exit code, stdout and stderr). A leadkit error escaping a command is raised."""
    from leadkit.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def cli_json(*args: str) -> tuple[int, Any]:
    code, out = cli(*args, "--json")
    return code, json.loads(out)
