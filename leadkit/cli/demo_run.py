"""`leadkit demo` (part of the CLI): a demo workspace, a sandbox for Apify (and Airtable), a batch, then the dashboard."""

from __future__ import annotations

import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr

from leadkit.config import Settings, get_settings
from leadkit.demo import client_names, seed
from leadkit.errors import DataError
from leadkit.words import plural
from leadkit.workspace import Workspace


def _refuse_real_workspace(settings: Settings, *, force: bool, again: bool) -> set[str]:
    """The demo's client IDs in the workspace; refuses (unless `force`) a workspace holding clients the demo did
    not create: the demo would add fictional clients beside them."""
    from leadkit.store.sqlite import workspace_exists
    from leadkit.workspace import demo_client_ids

    home = Path(settings.leadkit_home)
    if not workspace_exists(home):
        if again:
            raise DataError(f"no demo workspace at {home.resolve()}: run `leadkit demo` first")
        return set()
    ws = Workspace.open(home, settings=settings, read_only=True)
    try:
        existing = {c.client_id for c in ws.store.list_clients()}
    finally:
        ws.close()
    demo = demo_client_ids(home)
    foreign = sorted(existing - demo)
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DataError(
            f"{home.resolve()} holds clients the demo did not create ({shown}); refusing to add fictional clients "
            "there (nothing was changed)",
            hint="Point LEADKIT_HOME at another folder for the demo, or pass --force (the demo's batches then run "
            "only the demo's own clients).",
        )
    if again and not demo:
        raise DataError(f"{home.resolve()} holds no demo clients: run `leadkit demo` first")
    return demo


def run_demo(
    *,
    clients: int,
    backend: str,
    workers: int | None,
    dashboard: bool,
    port: int,
    incident: bool = True,
    force: bool = False,
    again: bool = False,
) -> int:
    """Returns 0 when the demo ran as designed (its scenario includes a failing client). `again` runs one more
    batch of an existing demo workspace's clients against a fresh sandbox, adding nothing."""
    from leadkit.batch import run_batch
    from leadkit.workspace import record_demo_clients

    if backend not in ("sqlite", "airtable"):
        raise DataError(f"--backend {backend!r} is not accepted; use sqlite or airtable")
    if again and backend != "sqlite":
        raise DataError("--again works on the SQLite demo workspace; use it without --backend airtable")
    settings = get_settings()
    if backend == "sqlite":
        settings = settings.model_copy(update={"leadkit_store": ""})  # never a real Airtable base from .env
        known = _refuse_real_workspace(settings, force=force, again=again)
    with ExitStack() as stack:
        sandbox: Any = None
        if backend == "airtable" or not os.environ.get("APIFY_API_URL"):
            from leadkit_sandbox.server import Sandbox

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
        if backend == "airtable":
            typer.echo(SANDBOX_ENDS)
        if again:
            made = [ws.store.get_client(c) for c in sorted(known)]
            incident = False
            typer.echo(f"demo: another batch of the {len(made)} demo clients, harvesting from a fresh sandbox")
        else:
            made = seed(ws.store, clients, base_ids=base_ids)
            if backend == "sqlite":
                record_demo_clients(ws.home, [c.client_id for c in made])
            typer.echo(f"demo: {len(made)} fictional clients with their leads")
        demo_ids = [c.client_id for c in made]
        incident_client = made[1].client_id if incident and own_apify and len(made) > 1 else None
        if incident_client is not None:
            slug = re.escape(f"/in/{incident_client.lower()}-lead-")
            sandbox.add_fault(service="apify", mode="html_404", times=-1, body=slug)
            typer.echo(
                f"\ndemo incident: for {incident_client}, Apify answers an HTML 404 page (as a proxy with a missing "
                "route would); the other clients are not affected"
            )
        result = run_batch(ws, workers=workers, client_ids=[c.client_id for c in made if c.active])
        _report(ws, result, demo_ids)
        if incident_client is not None:
            sandbox.clear_faults()
            typer.echo(f"\ndemo: the route is back; a second batch picks up {incident_client}'s leads again")
            result = run_batch(ws, workers=workers, client_ids=[c.client_id for c in made if c.active])
            _report(ws, result, demo_ids)
        from leadkit.checks import run_auth_checks

        checks = run_auth_checks(ws)
        typer.echo("\nauth checks: " + ", ".join(f"{c.name} {'ok' if c.ok else 'FAILED'}" for c in checks))
        if dashboard:
            from leadkit.dashboard_server import serve_dashboard

            serve_dashboard(ws, port=port, address="127.0.0.1", open_message=True)
    if backend == "airtable":
        typer.echo("\ndemo: the sandbox has ended, and the workspace's Airtable store with it")
    return 0


#: Said by `demo --backend airtable`: its store lives in the demo's own sandbox.
SANDBOX_ENDS = (
    "note: this workspace's store is a master base in the demo's own Airtable sandbox, which lives in this process "
    "and ends with the demo: afterwards `leadkit runs` finds no workspace there. For a try-out that lasts, start "
    "`leadkit sandbox --bases 2` and follow the README's section 'Airtable, from an account to a first batch'."
)


def _report(ws: Workspace, result: Any, demo_ids: list[str]) -> None:
    from leadkit.cli.batchcmd import _print_batch

    _print_batch(result)
    ran = {r.client_id for r in result.records}
    for client in ws.store.list_clients():
        if client.client_id in demo_ids and client.client_id not in ran:
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
    typer.echo(f"sandbox: provisioned master base {master} and {plural(len(base_ids), 'client base')}")
    return settings.model_copy(update={"leadkit_store": f"airtable://{master}"}), base_ids
