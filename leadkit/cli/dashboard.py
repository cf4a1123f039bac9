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
            help="USER:PASSWORD required to see any page (a login form). Visible to every user of the host in the "
            "process list: set LEADKIT_DASHBOARD_AUTH in the workspace's .env or the environment instead.",
        ),
    ] = None,
    no_login: Annotated[
        bool,
        typer.Option(
            "--no-login",
            help="Serve without a login even on a non-loopback address (refused otherwise) or when "
            "LEADKIT_DASHBOARD_AUTH is set.",
        ),
    ] = False,
    refresh: Annotated[float, typer.Option(help="Seconds between refreshes of the open view (0: never).", min=0)] = 30,
    show: Annotated[bool, typer.Option("--show", help="Open it in the default browser.")] = False,
) -> None:
    """Serve the diagnostics dashboard for the workspace (LEADKIT_HOME) until Ctrl-C.

    The login (USER:PASSWORD) comes from LEADKIT_DASHBOARD_AUTH in the environment, ./.env or the workspace's
    .env. On an address other than loopback a login is required (or --no-login); put a TLS proxy in front of a
    dashboard others reach, since the login travels in the clear otherwise."""
    from leadkit.dashboard_server import check_address, decide_login, serve_dashboard

    check_address(address, port)
    login = decide_login(address, basic_auth, no_login=no_login)
    for warning in login.warnings:
        typer.echo(warning, err=True)
    ws = _workspace()
    serve_dashboard(ws, port=port, address=address, basic_auth=login.basic_auth, show=show, refresh_s=refresh)
