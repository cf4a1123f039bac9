"""The `leadkit` command: the Typer app and the helpers every command module shares."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="leadkit: run records, post harvesting, auth checks and diagnosis for a multi-tenant lead pipeline.\n\n"
    "The workspace is LEADKIT_HOME (default ./runs); the store is LEADKIT_STORE (default: SQLite in the "
    "workspace; airtable://<base id> for Airtable).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
clients_app = typer.Typer(
    help="List, add, import, change, pause and remove clients.", invoke_without_command=True, no_args_is_help=False
)
leads_app = typer.Typer(help="Import, list and export a client's leads.", no_args_is_help=True)
airtable_app = typer.Typer(help="Airtable bases: provision tables and fields, check the schema.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(leads_app, name="leads")
app.add_typer(airtable_app, name="airtable")
failures_app = typer.Typer(help="Failure groups and their triage status.", invoke_without_command=True)
app.add_typer(failures_app, name="failures")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def _print_version(value: bool) -> None:
    if value:
        from leadkit import __version__

        typer.echo(f"leadkit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print leadkit's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """leadkit: run records, post harvesting, auth checks and diagnosis for a multi-tenant lead pipeline."""
    from leadkit.private import private_umask

    private_umask()  # nothing a command writes (stores, notebooks, logs, crash logs) is readable by every user


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") if r.get(c) is not None else "")) for r in rows)) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    typer.echo("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        typer.echo("  ".join(str(r.get(c) if r.get(c) is not None else "").ljust(widths[c]) for c in columns))


def _workspace(*, read_only: bool = False) -> Any:
    """The workspace at LEADKIT_HOME; `read_only=True` for commands that only read (they then work on a
    read-only workspace, and cannot change the store)."""
    from leadkit.workspace import Workspace

    return Workspace.open(read_only=read_only)
