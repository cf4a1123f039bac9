"""Commands: airtable provision, airtable check."""

from __future__ import annotations

from typing import Annotated

import typer

from leadkit.cli.app import JsonOpt, _echo_json, airtable_app
from leadkit.config import Settings, get_settings
from leadkit.errors import ConfigError, DataError

KindOpt = Annotated[
    str, typer.Option(help="master (Clients, Client Run Results, Job Tracking, ...) or client (Leads).")
]
BaseOpt = Annotated[
    str | None, typer.Option(help="The base ID (default: the master base of LEADKIT_STORE=airtable://<base id>).")
]


def _target(settings: Settings, base: str | None, kind: str) -> str:
    from leadkit.store.airtable import validate_base_id

    if kind not in ("master", "client"):
        raise DataError(f"--kind {kind!r} is not accepted; use master or client")
    if base is None:
        if not settings.leadkit_store.startswith("airtable://"):
            raise ConfigError(
                "no base given and LEADKIT_STORE is not airtable://<master base id>",
                hint="Pass --base appXXXXXXXXXXXXXX, or set LEADKIT_STORE=airtable://<master base id>.",
            )
        base = settings.leadkit_store.removeprefix("airtable://").strip("/")
    return validate_base_id(base, what="--base")


@airtable_app.command("provision")
def provision_cmd(base: BaseOpt = None, kind: KindOpt = "master", json_out: JsonOpt = False) -> None:
    """Create the tables and fields leadkit needs that the base lacks (through Airtable's meta API)."""
    from leadkit.store.airtable import make_api
    from leadkit.store.provision import check_schema, provision

    settings = get_settings()
    base_id = _target(settings, base, kind)
    api = make_api(settings)
    created = provision(api, base_id, kind)  # type: ignore[arg-type]
    remaining = check_schema(api, base_id, kind)  # type: ignore[arg-type]
    if json_out:
        _echo_json({"base_id": base_id, "created": created, "remaining": [p.to_dict() for p in remaining]})
    else:
        typer.echo(f"{base_id}: created {len(created)} table(s)/field(s)")
        for item in created:
            typer.echo(f"  + {item}")
        for problem in remaining:
            typer.echo(f"  still needed by hand: {problem.describe()}", err=True)
    if remaining:
        raise typer.Exit(2)


@airtable_app.command("check")
def check_cmd(base: BaseOpt = None, kind: KindOpt = "master", json_out: JsonOpt = False) -> None:
    """List missing tables, fields and select options, each with what to add (exit 2 when any)."""
    from leadkit.store.airtable import make_api
    from leadkit.store.provision import check_schema

    settings = get_settings()
    base_id = _target(settings, base, kind)
    problems = check_schema(make_api(settings), base_id, kind)  # type: ignore[arg-type]
    if json_out:
        _echo_json([p.to_dict() for p in problems])
    else:
        typer.echo(f"{base_id}: {'schema OK' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            typer.echo(f"  {problem.describe()}")
    if problems:
        raise typer.Exit(2)
