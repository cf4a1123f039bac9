"""`leadkit demo` (part of the CLI): a demo workspace, a sandbox for Apify (and Airtable), a batch, then the dashboard."""

from __future__ import annotations

import os
import re
from contextlib import ExitStack
from typing import Any

import typer
from pydantic import SecretStr

from leadkit.config import Settings, get_settings
from leadkit.demo import client_names, seed
from leadkit.errors import DataError
from leadkit.workspace import Workspace


def run_demo(
    *, clients: int, backend: str, workers: int | None, dashboard: bool, port: int, incident: bool = True
) -> int:
    """Returns 0 when the demo ran as designed (its scenario includes a failing client)."""
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
        own_apify = sandbox is not None and not os.environ.get("APIFY_API_URL")
        if own_apify:
            settings = settings.model_copy(
                update={"apify_api_url": sandbox.apify_url, "apify_token": SecretStr(sandbox.token)}
            )
        base_ids: list[str] | None = None
        if backend == "airtable":
            settings, base_ids = _airtable_bases(sandbox, settings, clients)
        ws = Workspace.create(settings=settings)
        typer.echo(f"workspace: {ws.home} (store: {ws.store.url})")
        made = seed(ws.store, clients, base_ids=base_ids)
        typer.echo(f"demo: {len(made)} fictional clients with their leads")
        incident_client = made[1].client_id if incident and own_apify and len(made) > 1 else None
        if incident_client is not None:
            slug = re.escape(f"/in/{incident_client.lower()}-lead-")
            sandbox.add_fault(service="apify", mode="html_404", times=-1, body=slug)
            typer.echo(
                f"\ndemo incident: for {incident_client}, Apify answers an HTML 404 page (as a proxy with a missing "
                "route would); the other clients are not affected"
            )
        result = run_batch(ws, workers=workers)
        _report(ws, result)
        if incident_client is not None:
            sandbox.clear_faults()
            typer.echo(f"\ndemo: the route is back; a second batch picks up {incident_client}'s leads again")
            result = run_batch(ws, workers=workers)
            _report(ws, result)
        from leadkit.checks import run_auth_checks

        checks = run_auth_checks(ws)
        typer.echo("\nauth checks: " + ", ".join(f"{c.name} {'ok' if c.ok else 'FAILED'}" for c in checks))
        if dashboard:
            from leadkit.dashboard_server import serve_dashboard

            serve_dashboard(ws, port=port, address="127.0.0.1", open_message=True)
    return 0


def _report(ws: Workspace, result: Any) -> None:
    from leadkit.cli.batchcmd import _print_batch

    _print_batch(result)
    ran = {r.client_id for r in result.records}
    for client in ws.store.list_clients():
        if client.client_id not in ran:
            typer.echo(f"{client.client_id}: not in this run: status {client.status!r}, only Active clients are run")


def _airtable_bases(sandbox: Any, settings: Settings, clients: int) -> tuple[Settings, list[str]]:
    """A master base and one base per client in the sandbox, provisioned through the meta API."""
    from leadkit.store.airtable import make_api
    from leadkit.store.provision import provision

    settings = settings.model_copy(
        update={
            "airtable_api_key": SecretStr(sandbox.token),
            "airtable_endpoint_url": sandbox.airtable_url,
        }
    )
    api = make_api(settings)
    placeholder = [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    master = sandbox.airtable.create_base("Master Clients", placeholder)
    provision(api, master, "master")
    base_ids = []
    for name in client_names(clients):
        base_id = sandbox.airtable.create_base(f"{name} leads", placeholder)
        provision(api, base_id, "client")
        base_ids.append(base_id)
    typer.echo(f"sandbox: provisioned master base {master} and {len(base_ids)} client bases")
    return settings.model_copy(update={"leadkit_store": f"airtable://{master}"}), base_ids
