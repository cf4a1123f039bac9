"""Commands: demo, runs, show, clients (list, add, set, import, pause, activate, remove), leads (import, list,
export), sandbox."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _table, _workspace, app, clients_app, leads_app
from leadkit.cli.rundata import failure_text, run_dict, targets_text
from leadkit.clients import save_clients
from leadkit.errors import DataError
from leadkit.ports import ensure_port_free
from leadkit.words import plural


# ------------------------------------------------------------------------------------------------ demo
@app.command()
def demo(
    clients: Annotated[int, typer.Option(help="How many fictional clients to create.", min=1, max=500)] = 8,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not serve the dashboard at the end.")
    ] = False,
    backend: Annotated[str, typer.Option(help="Store backend: sqlite, or airtable (through a sandbox).")] = "sqlite",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Notebooks at once (env LEADKIT_CONCURRENCY; default: available memory / 300 MB, 8 to 32).", min=1
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Dashboard port.")] = 5006,
    incident: Annotated[
        bool,
        typer.Option(
            help="Include the incident scenario: one client's Apify calls answer an HTML 404 page in a first batch, "
            "then a second batch recovers it."
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Add the demo's clients to a workspace holding other clients (the demo runs only its own)."
        ),
    ] = False,
    again: Annotated[
        bool,
        typer.Option("--again", help="Run one more batch of an existing demo workspace, from a fresh sandbox."),
    ] = False,
) -> None:
    """Fill the workspace (LEADKIT_HOME) with fictional clients and leads, then run a batch over them.

    Harvesting goes to a local Apify-compatible sandbox that the demo starts, unless APIFY_API_URL is set. A
    workspace holding clients the demo did not create is refused (unless --force).
    """
    from leadkit.cli.demo_run import run_demo

    code = run_demo(
        clients=clients,
        backend=backend,
        workers=workers,
        dashboard=not no_dashboard,
        port=port,
        incident=incident,
        force=force,
        again=again,
    )
    raise typer.Exit(code)


# ------------------------------------------------------------------------------------------------ runs
@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.", min=1)] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The latest runs, newest first; `clients_failed` counts the clients whose outcome counts as failed (Failed,
    Stale, Completed with Errors, Interrupted). A `batch --dry-run` is marked "(dry run)" (`dry_run` in --json)."""
    from leadkit.history import clients_failed, status_text

    ws = _workspace(read_only=True)
    items = []
    listed = ws.store.list_runs(limit=limit)
    for run in listed:
        item = run.to_dict()
        if run.status.value != "Completed":  # a Completed run has no client that counts as failed
            item["clients_failed"] = clients_failed(ws.store.list_client_runs(run_id=run.run_id))
        items.append(item)
    if json_out:
        _echo_json(items)
    else:
        rows = [{**item, "status": status_text(run)} for item, run in zip(items, listed, strict=True)]
        _table(rows, ["run_id", "status", "started_at", "ended_at", "clients_total", "clients_failed"])


@app.command()
def show(
    run_id: Annotated[
        str,
        typer.Argument(
            help="A run ID like 251128-093000 (any known format), or a client run ID like 251128-093000-Acme-Co "
            "for that one client."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """One run (or one client of it): its clients with status, metrics, notebook and failure."""
    ws = _workspace(read_only=True)
    data = run_dict(ws, run_id)
    if json_out:
        _echo_json(data)
        return
    mark = " (dry run: nothing was sent to Apify)" if data["dry_run"] else ""
    typer.echo(f"run {data['run_id']}: {data['status']}{mark} (started {data['started_at']}, ended {data['ended_at']})")
    rows = [
        {
            "client": c["client_id"],
            "status": c["outcome"],
            "source": c["source"],
            "posts": int(c["metrics"].get("posts_harvested", 0)),
            "targets": targets_text(c["metrics"]),
            "apify $": f"{c['metrics'].get('apify_cost_usd', 0.0):.3f}",
            "failure": failure_text(c),
            "notebook": c["notebook"] or "",
        }
        for c in data["clients"]
    ]
    _table(rows, ["client", "status", "source", "posts", "targets", "apify $", "failure", "notebook"])
    typer.echo("status history: " + " -> ".join(c["status"] for c in data["status_history"]))
    for c in data["clients"]:
        if len(c["attempts"]) > 1:
            typer.echo(f"attempts of {c['client_id']}:")
            for a in c["attempts"]:
                typer.echo(f"  {a['attempt']}. {a['status']}: {a['why'][:90]}  ({a['notebook'] or 'no notebook'})")


# ------------------------------------------------------------------------------------------------ clients
CLIENT_COLUMNS = ["client_id", "name", "status", "service_level", "post_access", "daily_target", "batch_size", "stream"]


def _client_dict(client: Any) -> dict[str, Any]:
    """Every setting of a client (what `clients --json` prints and `clients import` reads back)."""
    from dataclasses import asdict

    out = asdict(client)
    out.update(client.to_dict())
    return out


@clients_app.callback()
def clients_list(
    ctx: typer.Context,
    all_clients: Annotated[
        bool, typer.Option("--all", help="Include removed clients (kept with their records, hidden).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the clients; the subcommands add, import, change, pause, activate and remove them."""
    from leadkit.clients import REMOVED_STATUS

    if ctx.invoked_subcommand is not None:
        return
    ws = _workspace(read_only=True)
    items = [_client_dict(c) for c in ws.store.list_clients() if all_clients or c.status != REMOVED_STATUS]
    if json_out:
        _echo_json(items)
    else:
        _table(items, CLIENT_COLUMNS)


def _setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command one `--option` per client setting (from `leadkit.clients`), passed as text in **settings."""
    from leadkit.clients import client_settings

    sig = inspect.signature(func, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for setting in client_settings():
        option = typer.Option(setting.option, help=f"{setting.help} Accepted: {setting.accepted}.", show_default=False)
        params.append(
            inspect.Parameter(
                setting.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[str | None, option]
            )
        )
    func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return func


def _save_settings(client_id: str, given: dict[str, str | None], *, must_exist: bool) -> None:
    from leadkit.clients import apply_settings, client_settings, parse_value
    from leadkit.errors import MissingRecordError
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    changes = {
        s.field: parse_value(s, text, where=s.option)
        for s in client_settings()
        if (text := given.get(s.field)) is not None
    }
    ws = _workspace()
    try:
        current = ws.store.get_client(client_id)
    except MissingRecordError:
        if must_exist:
            raise
        current = None
    if must_exist and not changes:
        typer.echo(f"client {client_id}: nothing to change (give one or more options; `--help` lists them)")
        return
    client = apply_settings(client_id, current, changes)
    after = _client_dict(client)
    if current is None:
        ws.store.save_client(client)
        listed = ", ".join(_said(k, after[k]) for k in changes) or "the default settings"
        typer.echo(f"added client {client_id}: {listed}")
        return
    before = _client_dict(current)
    changed = [k for k in changes if before[k] != after[k]]
    already = ", ".join(_said(k, after[k]) for k in changes if before[k] == after[k])
    if not changed:
        typer.echo(f"client {client_id}: already {already}; nothing changed")
        return
    ws.store.save_client(client)
    what = ", ".join(f"{_said(k, after[k])} (was {_value(before[k])})" for k in changed)
    typer.echo(f"updated client {client_id}: {what}" + (f"; already {already}" if already else ""))


def _value(value: Any) -> str:
    return "none" if value is None else str(value)


def _said(field: str, value: Any) -> str:
    """A setting as the CSV and `clients --json` write it: `status=Paused`, `post_access=no` (never a Python
    True/False), `max_usd_per_day=none`."""
    return f"{field}={_value(value)}"


@clients_app.command("add")
@_setting_options
def clients_add(
    client_id: Annotated[str, typer.Argument(help="Letters, digits, - _ . (1 to 64; not starting with . or -).")],
    **settings: str | None,
) -> None:
    """Add a client (--name needed); for an existing client, change only the settings given."""
    _save_settings(client_id, settings, must_exist=False)


@clients_app.command("set")
@_setting_options
def clients_set(
    client_id: Annotated[str, typer.Argument(help="The client to change.")],
    **settings: str | None,
) -> None:
    """Change only the settings given, e.g. `leadkit clients set Acme-Co --daily-target 30 --post-access no`."""
    _save_settings(client_id, settings, must_exist=True)


@clients_app.command("pause")
def clients_pause(client_id: Annotated[str, typer.Argument(help="The client to pause.")]) -> None:
    """Pause a client: batches skip it until `leadkit clients activate`."""
    _save_settings(client_id, {"status": "Paused"}, must_exist=True)


@clients_app.command("activate")
def clients_activate(client_id: Annotated[str, typer.Argument(help="The client to activate.")]) -> None:
    """Make a paused (or removed and kept) client Active again: the next batch runs it."""
    _save_settings(client_id, {"status": "Active"}, must_exist=True)


@clients_app.command("remove")
def clients_remove(
    client_id: Annotated[str, typer.Argument(help="The client to remove.")],
    keep_records: Annotated[
        bool,
        typer.Option(
            "--keep-records", help="Keep the client's records and leads, hide it from lists and batches (Inactive)."
        ),
    ] = False,
) -> None:
    """Remove a client without runs (and its leads, in the SQLite store); one with runs only with --keep-records."""
    from dataclasses import replace

    from leadkit.clients import REMOVED_STATUS
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    ws = _workspace()
    client = ws.store.get_client(client_id)
    if keep_records:
        ws.store.save_client(replace(client, status=REMOVED_STATUS))
        typer.echo(
            f"client {client_id} removed from lists and batches ({REMOVED_STATUS}); its records and leads are kept "
            f"(`leadkit clients --all` shows it, `leadkit clients activate {client_id}` brings it back)"
        )
        return
    if ws.store.list_client_runs(client_id=client_id, limit=1):
        raise DataError(
            f"client {client_id} has runs on record; refusing to remove it (nothing was changed)",
            hint=f"Use `leadkit clients remove {client_id} --keep-records` to hide it and keep its records, or "
            f"`leadkit clients pause {client_id}` to stop running it.",
        )
    ws.store.remove_client(client_id)
    typer.echo(f"removed client {client_id} and its leads")


@clients_app.command("import")
def clients_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns client_id, name and any other setting (status, service_level, post_access, "
            "daily_target, batch_size, max_batches, stream, base, ...)."
        ),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file and say what would change.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add or update clients from a CSV, all or nothing: one bad row and nothing is changed (each bad row is
    reported with its column, value and what is accepted). A re-import updates what changed."""
    from leadkit.clients import apply_settings, field_changes, read_clients_csv

    rows, errors, note = read_clients_csv(file)
    if note:
        typer.echo(f"note: {note}", err=True)
    ws = _workspace(read_only=dry_run)
    existing = {c.client_id: c for c in ws.store.list_clients()}
    planned = []
    for row in rows:
        try:
            client = apply_settings(row.client_id, existing.get(row.client_id), row.changes)
        except DataError as exc:
            errors.append(f"row {row.line}: name is required for the new client {row.client_id!r} ({exc.message})")
            continue
        before = existing.get(row.client_id)
        planned.append((row, client, "added" if before is None else ("updated" if before != client else "same")))
    if errors:
        for line in errors:
            typer.echo(f"{file}: {line}", err=True)
        raise DataError(f"{file}: {len(errors)} bad row(s); nothing was imported", hint="Fix the rows named above.")
    if not dry_run:
        save_clients(ws.store, [client for _, client, outcome in planned if outcome != "same"])
    counts = {k: sum(1 for *_, o in planned if o == k) for k in ("added", "updated", "same")}
    changes = [
        (client.client_id, outcome, field_changes(existing.get(client.client_id), client))
        for _, client, outcome in planned
        if outcome != "same"
    ]
    if json_out:
        listed = [
            {"client_id": cid, "change": outcome, "fields": [f.to_dict() for f in fields]}
            for cid, outcome, fields in changes
        ]
        _echo_json({**counts, "dry_run": dry_run, "clients": [c.client_id for _, c, _ in planned], "changes": listed})
        return
    verb = "would be " if dry_run else ""
    if dry_run:
        for cid, outcome, fields in changes:
            if outcome == "added":
                settings = ", ".join(_said(f.column, f.new) for f in fields)
                typer.echo(f"  {cid}: would be added ({settings})")
            else:
                typer.echo(f"  {cid}: would be updated")
                for f in fields:
                    typer.echo(f"      {f.column}: {_value(f.old)} -> {_value(f.new)}")
    typer.echo(
        f"{file}: {counts['added']} client(s) {verb}added, {counts['updated']} {verb}updated, "
        f"{counts['same']} unchanged"
    )


# ------------------------------------------------------------------------------------------------ leads
#: Why a LinkedIn URL that is not a person's profile is skipped.
_NOT_A_PROFILE = {
    "company": "a company page, not a person's profile (the posts actor harvests people)",
    "school": "a school page, not a person's profile",
    "showcase": "a showcase page, not a person's profile",
    "posts": "a post, not a profile",
    "feed": "a post, not a profile",
    "pub": "an old public-profile URL: open it and copy the linkedin.com/in/... address",
}


def profile_url_problem(url: str) -> str | None:
    """Why `url` is not accepted as a lead (None: it is a linkedin.com/in/<handle> profile URL)."""
    import re

    from leadkit.linkedin_urls import normalize_profile_url

    if not url.strip():
        return "the profile_url is empty"
    try:
        key = normalize_profile_url(url)
    except DataError:
        return "not a URL"
    match = re.fullmatch(r"linkedin\.com/([^/]+)(?:/[^/]+)?", key)
    if match is None:
        return "not a LinkedIn profile URL (accepted: https://www.linkedin.com/in/<handle>)"
    kind = match.group(1)
    if kind == "in" and re.fullmatch(r"linkedin\.com/in/[^/]+", key):
        return None
    return _NOT_A_PROFILE.get(kind, "not a LinkedIn profile URL (accepted: https://www.linkedin.com/in/<handle>)")


@leads_app.command("import")
def leads_import(
    first: Annotated[
        str,
        typer.Argument(
            metavar="[CLIENT_ID] FILE",
            help="The client whose base gets the leads, then the CSV; the client may be left out when the file has "
            "a client_id column (one file, several clients).",
        ),
    ],
    second: Annotated[Path | None, typer.Argument(metavar="", help="", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Import leads from a CSV (UTF-8 or cp1252, any common delimiter). Headers people have are read: the profile
    URL as profile_url, LinkedIn URL or Profile URL (the only column needed); the name as name or First Name +
    Last Name; the company as company or Company Name; a client_id column sends each row to its client. Only
    LinkedIn profile URLs (linkedin.com/in/...) are leads: other rows are reported with the reason and skipped. A
    file naming an unknown client is refused whole. A re-import does not duplicate."""
    from leadkit.leadfiles import read_leads_csv
    from leadkit.runids import validate_client_id

    client_id, file = (None, Path(first)) if second is None else (first, second)
    if client_id is not None:
        validate_client_id(client_id)
    ws = _workspace()
    if client_id is not None:
        ws.store.get_client(client_id)  # an unknown client is not found (exit 2) before the file is read
    known = {c.client_id for c in ws.store.list_clients()}
    parsed = read_leads_csv(file, client_id=client_id, known_clients=known, url_problem=profile_url_problem)
    if parsed.note:
        typer.echo(f"note: {parsed.note}", err=True)
    per_client: dict[str, dict[str, int]] = {}
    for cid, leads in sorted(parsed.leads.items()):
        result = ws.store.lead_base(ws.store.get_client(cid)).import_leads(leads)
        per_client[cid] = {"created": result.created, "existing": result.existing}
    created = sum(c["created"] for c in per_client.values())
    existing = sum(c["existing"] for c in per_client.values())
    bad = parsed.skipped
    summary = {
        "created": created,
        "existing": existing,
        "skipped": bad,
        "encoding": parsed.encoding,
        "columns": parsed.columns,
        "clients": per_client,
    }
    if json_out:
        _echo_json(summary)
        return
    typer.echo(
        f"{created} lead(s) created, {existing} already there, {len(bad)} skipped"
        + (f" ({plural(len(per_client), 'client')})" if len(per_client) > 1 else "")
    )
    if len(per_client) > 1:
        for cid, c in per_client.items():
            typer.echo(f"  {cid}: {c['created']} created, {c['existing']} already there")
    for b in bad:
        typer.echo(f"  line {b['line']}: skipped {b['profile_url']!r}: {b['reason']}", err=True)


def _client_leads(ws: Any, client_id: str, status: str | None) -> list[Any]:
    from leadkit.models import HarvestStatus
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    accepted = [s.value for s in HarvestStatus] + ["blank"]
    if status is not None and status not in accepted:
        raise DataError(f"--status {status!r} is not accepted; use one of: {', '.join(accepted)}")
    client = ws.store.get_client(client_id)
    return list(ws.store.lead_base(client).list_leads(status=status))


@leads_app.command("list")
def leads_list(
    client_id: Annotated[str, typer.Argument(help="The client.")],
    status: Annotated[str | None, typer.Option(help="Pending, Processing, Done, No Posts, or blank.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A client's leads (name, company, profile) with their harvest status."""
    from leadkit.harvest.harvester import due_policy, lead_row
    from leadkit.models import utcnow

    ws = _workspace(read_only=True)
    policy, now = due_policy(ws.settings), utcnow()
    items = [
        {**lead_row(lead, now, policy), "name": lead.name, "company": lead.company}
        for lead in _client_leads(ws, client_id, status)
    ]
    if json_out:
        _echo_json(items)
    else:
        _table(
            items,
            [
                "lead_id",
                "name",
                "company",
                "profile_url",
                "harvest_status",
                "posts_found",
                "next_check_at",
                "last_error",
            ],
        )


EXPORT_COLUMNS = [
    "lead_id",
    "lead_name",
    "company",
    "profile_url",
    "post_url",
    "posted_at",
    "text",
    "likes",
    "comments",
    "reposts",
    "is_repost",
    "author_url",
]


#: Export column -> key of a post as stored with its lead (Post.to_dict)
_POST_KEYS = {
    "post_url": "postUrl",
    "posted_at": "postedAt",
    "text": "text",
    "likes": "likes",
    "comments": "comments",
    "reposts": "reposts",
    "is_repost": "isRepost",
    "author_url": "authorUrl",
}


@leads_app.command("export")
def leads_export(
    client_id: Annotated[str, typer.Argument(help="The client.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: standard output).")
    ] = None,
) -> None:
    """Write the harvested posts of a client's leads out: one row per post with its lead's name and company."""
    import csv
    import io
    import json

    if fmt not in ("csv", "json"):
        raise DataError(f"--format {fmt!r} is not accepted; use csv or json")
    if output is not None and output.exists() and output.is_dir():
        raise DataError(f"--output {output} is a folder; give a file name")
    ws = _workspace(read_only=True)
    rows = []
    for lead in _client_leads(ws, client_id, None):
        for post in lead.posts:
            rows.append(
                {
                    "lead_id": lead.lead_id,
                    "lead_name": lead.name,
                    "company": lead.company,
                    "profile_url": lead.profile_url,
                    **{column: post.get(key) for column, key in _POST_KEYS.items()},
                }
            )
    if fmt == "json":
        text = json.dumps(rows, indent=2, default=str) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"--output {output} cannot be written: {exc.strerror or exc}") from None
    typer.echo(f"wrote {len(rows)} post(s) of {client_id} to {output}", err=True)


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
    actor_seconds: Annotated[float, typer.Option(help="Seconds one Apify actor run takes.", min=0)] = 0.3,
    apify_max_runs: Annotated[
        int,
        typer.Option(help="Apify runs in flight at once; more are refused (concurrent-runs-limit-exceeded).", min=1),
    ] = 32,
    bases: Annotated[
        int,
        typer.Option(
            help="For a try-out of the Airtable store: make a master base and this many client bases (as Airtable's "
            "web app makes them, one placeholder table each) and print their IDs and the next commands.",
            min=0,
            max=100,
        ),
    ] = 0,
) -> None:
    """Serve local Airtable- and Apify-compatible APIs with fault injection, in the foreground (Ctrl-C stops it;
    its bases and runs live only as long as it does)."""
    import threading

    from leadkit.errors import ConfigError
    from leadkit_sandbox.server import generate_token, serve_forever

    for name, port in (("--airtable-port", airtable_port), ("--apify-port", apify_port)):
        ensure_port_free(host, port, option=name, what="the sandbox")
    tokens = list(token or [])
    if bases and not tokens:
        tokens = [generate_token()]
    if bases:
        url = f"http://{host}:{airtable_port}"
        chosen = tokens[0].split("=", 1)[0]

        def make_bases() -> None:
            from leadkit.tryout import create_tryout_bases, wait_until_up

            try:
                wait_until_up(url)
                made = create_tryout_bases(url, chosen, bases)
            except ConfigError as exc:
                typer.echo(f"error: the try-out bases were not made: {exc.message}", err=True)
                return
            lines = [
                f"Try-out bases:    master {made.master}; clients {', '.join(made.clients) or '(none)'}",
                "Next (README, 'Airtable, from an account to a first batch'):",
                f"  export AIRTABLE_API_KEY={chosen} AIRTABLE_ENDPOINT_URL={url}",
                f"  leadkit airtable provision --base {made.master}",
                *(f"  leadkit airtable provision --kind client --base {b}" for b in made.clients),
                f"  leadkit init --store airtable://{made.master}",
            ]
            typer.echo("\n".join(lines))

        threading.Thread(target=make_bases, name="leadkit-tryout-bases", daemon=True).start()
    serve_forever(
        host,
        airtable_port,
        apify_port,
        tokens,
        rate_limit,
        penalty_s,
        actor_seconds=actor_seconds,
        apify_max_runs=apify_max_runs,
    )
