"""The `leadkit` command. Each module of this package adds its commands to the one Typer app."""

from __future__ import annotations

import os
import sys
from importlib import import_module

import typer

from leadkit.cli.app import app
from leadkit.errors import LeadkitError

COMMAND_MODULES = ["core", "batchcmd", "airtable", "diagnose", "dashboard", "alertscmd"]


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            import_module(f"leadkit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"leadkit.cli.{name}":
                raise


_load_commands()

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: leadkit errors print their message and hint and exit with their code."""
    from leadkit import logs

    logs.add_stderr()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        code = app(standalone_mode=False)
    except LeadkitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        typer.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
