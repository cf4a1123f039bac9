"""`leadkit demo`: a demo workspace, a sandbox for Apify (and Airtable), a batch, then the dashboard."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

import typer
from pydantic import SecretStr

from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.errors import DataError
from leadkit.workspace import Workspace


def run_demo(*, clients: int, backend: str, workers: int | None, dashboard: bool, port: int) -> int:
    from leadkit.batch import run_batch

    if backend not in ("sqlite", "airtable"):
        raise DataError(f"--backend {backend!r} is not accepted; use sqlite or airtable")
    settings = get_settings()
    with ExitStack() as stack:
        sandbox: Any = None
        if backend == "airtable" or not os.environ.get("APIFY_API_URL"):
            from leadkit.sandbox.server import Sandbox

            sandbox = stack.enter_context(Sandbox(rate_limit=5, penalty_s=30))
            typer.echo(f"sandbox: Airtable API at {sandbox.airtable_url}, Apify API at {sandbox.apify_url}")
        if sandbox is not None and not os.environ.get("APIFY_API_URL"):
            settings = settings.model_copy(
                update={"apify_api_url": sandbox.apify_url, "apify_token": SecretStr(sandbox.token)}
            )
        if backend == "airtable":
            from leadkit.store.provision import provision_demo

            settings = provision_demo(sandbox, settings, clients)
        ws = Workspace.create(settings=settings)
        typer.echo(f"workspace: {ws.home} (store: {ws.store.url})")
        made = seed(ws.store, clients)
        typer.echo(f"demo: {len(made)} fictional clients with their leads")
        result = run_batch(ws, workers=workers)
        from leadkit.cli.batchcmd import _print_batch

        _print_batch(result)
        ran = {r.client_id for r in result.records}
        for client in ws.store.list_clients():
            if client.client_id not in ran:
                typer.echo(f"{client.client_id}: not in this run: status {client.status!r}, only Active clients are run")
        if dashboard:
            from leadkit.dashboard_server import serve_dashboard

            serve_dashboard(ws, port=port, address="127.0.0.1", open_message=True)
    return 0
