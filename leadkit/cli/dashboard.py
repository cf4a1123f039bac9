"""Command: dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from leadkit.cli.app import _workspace, app


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).", min=0, max=65535)] = 5006,
    address: Annotated[
        str, typer.Option(help="Address to listen on; the default serves this machine only (loopback).")
    ] = "127.0.0.1",
    basic_auth: Annotated[
        str | None,
        typer.Option(
            "--basic-auth",
            envvar="LEADKIT_DASHBOARD_AUTH",
            show_envvar=True,
            help="USER:PASSWORD required to see any page (a login form). Prefer the environment variable, "
            "which does not show in the process list.",
        ),
    ] = None,
    refresh: Annotated[float, typer.Option(help="Seconds between refreshes of the open view (0: never).", min=0)] = 30,
    show: Annotated[bool, typer.Option("--show", help="Open it in the default browser.")] = False,
) -> None:
    """Serve the diagnostics dashboard for the workspace (LEADKIT_HOME) until Ctrl-C."""
    from leadkit.dashboard_server import check_address, parse_basic_auth, serve_dashboard

    check_address(address, port)
    if basic_auth is not None:
        parse_basic_auth(basic_auth)
    if address not in ("127.0.0.1", "localhost", "::1") and basic_auth is None:
        typer.echo(
            f"warning: serving on {address} without --basic-auth: anyone who can reach it sees the records",
            err=True,
        )
    ws = _workspace()
    serve_dashboard(ws, port=port, address=address, basic_auth=basic_auth, show=show, refresh_s=refresh)
