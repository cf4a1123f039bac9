"""Commands: demo, runs, show, clients, leads, sandbox."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _table, _workspace, app, clients_app, leads_app
from leadkit.errors import DataError


# ------------------------------------------------------------------------------------------------ demo
@app.command()
def demo(
    clients: Annotated[int, typer.Option(help="How many fictional clients to create.", min=1, max=500)] = 8,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not serve the dashboard at the end.")
    ] = False,
    backend: Annotated[str, typer.Option(help="Store backend: sqlite, or airtable (through a sandbox).")] = "sqlite",
    workers: Annotated[int | None, typer.Option(help="Notebooks at once (default: number of cores).", min=1)] = None,
    port: Annotated[int, typer.Option(help="Dashboard port.")] = 5006,
    incident: Annotated[
        bool,
        typer.Option(
            help="Include the incident scenario: one client's Apify calls answer an HTML 404 page in a first batch, "
            "then a second batch recovers it."
        ),
    ] = True,
) -> None:
    """Fill the workspace (LEADKIT_HOME) with fictional clients and leads, then run a batch over them.

    Harvesting goes to a local Apify-compatible sandbox that the demo starts, unless APIFY_API_URL is set.
    """
    from leadkit.cli.demo_run import run_demo

    code = run_demo(
        clients=clients, backend=backend, workers=workers, dashboard=not no_dashboard, port=port, incident=incident
    )
    raise typer.Exit(code)


# ------------------------------------------------------------------------------------------------ runs
@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=1)] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The latest runs, newest first."""
    ws = _workspace()
    items = [r.to_dict() for r in ws.store.list_runs(limit=limit)]
    if json_out:
        _echo_json(items)
    else:
        _table(items, ["run_id", "status", "started_at", "ended_at", "clients_total", "clients_failed"])


def _show_dict(ws: Any, run_id: str) -> dict[str, Any]:
    from leadkit.runids import RunId

    run = ws.records.get_run(RunId.parse(run_id))
    out = run.to_dict()
    del out["clients_total"], out["clients_failed"]
    out["clients"] = [
        r.to_dict() for r in sorted(ws.store.list_client_runs(run_id=run.run_id), key=lambda r: r.client_id)
    ]
    _add_history(ws, run.run_id, out)
    return out


def _add_history(ws: Any, run_id: str, out: dict[str, Any]) -> None:
    """The run's status history and each client's attempts (see `leadkit.history`)."""
    from leadkit.history import list_attempts, run_history

    out["status_history"] = [{"at": c.at.isoformat(), "status": c.status} for c in run_history(ws, run_id)]
    records = {r.client_id: r for r in ws.store.list_client_runs(run_id=run_id)}
    for client in out["clients"]:
        client["attempts"] = [a.to_dict() for a in list_attempts(ws, records[client["client_id"]])]


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A base run ID like 251128-093000 (any known format).")],
    json_out: JsonOpt = False,
) -> None:
    """One run: its clients with status, metrics, notebook and failure."""
    ws = _workspace()
    data = _show_dict(ws, run_id)
    if json_out:
        _echo_json(data)
        return
    typer.echo(f"run {data['run_id']}: {data['status']} (started {data['started_at']}, ended {data['ended_at']})")
    rows = [
        {
            "client": c["client_id"],
            "status": c["status"],
            "source": c["source"],
            "posts": int(c["metrics"].get("posts_harvested", 0)),
            "failure": f"{c['failure']['category']}: {c['failure']['message']}"[:80] if c["failure"] else "",
            "notebook": c["notebook"] or "",
        }
        for c in data["clients"]
    ]
    _table(rows, ["client", "status", "source", "posts", "failure", "notebook"])
    typer.echo("status history: " + " -> ".join(c["status"] for c in data["status_history"]))
    for c in data["clients"]:
        if len(c["attempts"]) > 1:
            typer.echo(f"attempts of {c['client_id']}:")
            for a in c["attempts"]:
                typer.echo(f"  {a['attempt']}. {a['status']}: {a['why'][:90]}  ({a['notebook'] or 'no notebook'})")


# ------------------------------------------------------------------------------------------------ clients
@clients_app.callback()
def clients_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the clients (or add one with `leadkit clients add`)."""
    if ctx.invoked_subcommand is not None:
        return
    ws = _workspace()
    items = [c.to_dict() for c in ws.store.list_clients()]
    if json_out:
        _echo_json(items)
    else:
        _table(
            items,
            ["client_id", "name", "status", "service_level", "post_access", "daily_target", "batch_size", "stream"],
        )


@clients_app.command("add")
def clients_add(
    client_id: Annotated[str, typer.Argument(help="Letters, digits, - _ . (1 to 64; not starting with . or -).")],
    name: Annotated[str, typer.Option(help="The client's name.")],
    service_level: Annotated[
        int, typer.Option(help="1 = lead scoring only; 2 or more adds post harvesting.", min=1)
    ] = 2,
    status: Annotated[str, typer.Option(help="Active, or Paused (only Active clients are run).")] = "Active",
    post_access: Annotated[str, typer.Option(help="yes or no: may Apify harvest posts for this client?")] = "yes",
    daily_target: Annotated[int, typer.Option(help="Posts Daily Target.", min=0)] = 20,
    batch_size: Annotated[int, typer.Option(help="Leads Batch Size for Post Collection.", min=1)] = 20,
    max_batches: Annotated[int, typer.Option(help="Max Post Batches Per Day Guardrail.", min=1)] = 10,
    stream: Annotated[int, typer.Option(help="Processing Stream.", min=1)] = 1,
    base: Annotated[str | None, typer.Option(help="The client's own Airtable base ID (Airtable store).")] = None,
) -> None:
    """Add a client (or update the one with that ID)."""
    from leadkit.models import Client
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    if post_access.lower() not in ("yes", "no"):
        raise DataError(f"--post-access {post_access!r} is not accepted; use yes or no")
    if status not in ("Active", "Paused"):
        raise DataError(f"--status {status!r} is not accepted; use Active or Paused")
    if base is not None and not (len(base) == 17 and base.startswith("app") and base[3:].isalnum()):
        raise DataError(f"--base {base!r} is not an Airtable base ID (app followed by 14 letters and digits)")
    ws = _workspace()
    client = Client(
        client_id=client_id,
        name=name,
        status=status,
        service_level=service_level,
        post_access=post_access.lower() == "yes",
        daily_target=daily_target,
        batch_size=batch_size,
        max_batches=max_batches,
        stream=stream,
        base_id=base,
    )
    ws.store.save_client(client)
    typer.echo(f"saved client {client_id}")


# ------------------------------------------------------------------------------------------------ leads
@leads_app.command("import")
def leads_import(
    client_id: Annotated[str, typer.Argument(help="The client whose base gets the leads.")],
    file: Annotated[Path, typer.Argument(help="CSV with columns profile_url, name, company.")],
    json_out: JsonOpt = False,
) -> None:
    """Import leads from a CSV (profile_url, name, company); rows with a bad URL are reported and skipped, and a
    re-import does not duplicate."""
    from leadkit.harvest.posts import is_valid_profile_url
    from leadkit.models import NewLead
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    if not file.is_file():
        raise DataError(f"{file} is not a readable file; give a CSV with columns profile_url, name, company")
    with file.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower() for c in (reader.fieldnames or [])}
        missing = {"profile_url", "name", "company"} - columns
        if missing:
            raise DataError(
                f"{file} lacks the column(s) {', '.join(sorted(missing))}; the header must have profile_url, name, company"
            )
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    good, bad = [], []
    for number, row in enumerate(rows, start=2):
        if is_valid_profile_url(row["profile_url"]):
            good.append(NewLead(row["profile_url"], row["name"], row["company"]))
        else:
            bad.append({"line": number, "profile_url": row["profile_url"]})
    ws = _workspace()
    client = ws.store.get_client(client_id)
    result = ws.store.lead_base(client).import_leads(good)
    summary = {"created": result.created, "existing": result.existing, "skipped": bad}
    if json_out:
        _echo_json(summary)
        return
    typer.echo(f"{result.created} lead(s) created, {result.existing} already there, {len(bad)} skipped")
    for b in bad:
        typer.echo(f"  line {b['line']}: not a LinkedIn profile URL: {b['profile_url']!r}", err=True)


@leads_app.command("list")
def leads_list(
    client_id: Annotated[str, typer.Argument(help="The client.")],
    status: Annotated[str | None, typer.Option(help="Pending, Processing, Done, No Posts, or blank.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A client's leads with their harvest status."""
    from leadkit.models import HarvestStatus
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    accepted = [s.value for s in HarvestStatus] + ["blank"]
    if status is not None and status not in accepted:
        raise DataError(f"--status {status!r} is not accepted; use one of: {', '.join(accepted)}")
    ws = _workspace()
    client = ws.store.get_client(client_id)
    items = [lead.to_dict() for lead in ws.store.lead_base(client).list_leads(status=status)]
    if json_out:
        _echo_json(items)
    else:
        _table(items, ["lead_id", "profile_url", "harvest_status", "posts_found", "last_check_at", "last_error"])


# ------------------------------------------------------------------------------------------------ sandbox
@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    airtable_port: Annotated[int, typer.Option(help="Airtable-compatible API port.")] = 8701,
    apify_port: Annotated[int, typer.Option(help="Apify-compatible API port.")] = 8702,
    token: Annotated[
        list[str] | None, typer.Option(help="Accepted token (repeatable); T=appA,appB limits bases.")
    ] = None,
    rate_limit: Annotated[float, typer.Option(help="Airtable requests per second per base (0: off).", min=0)] = 5,
    penalty_s: Annotated[float, typer.Option(help="Seconds of 429 after the rate limit is exceeded.", min=0)] = 30,
) -> None:
    """Serve local Airtable- and Apify-compatible APIs with fault injection, in the foreground."""
    from leadkit.sandbox.server import serve_forever

    serve_forever(host, airtable_port, apify_port, token or [], rate_limit, penalty_s)
