"""Commands: airtable provision, airtable check, airtable usage, airtable archive."""

from __future__ import annotations

from typing import Annotated, Any

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


def _meta_api(settings: Settings) -> Any:
    """The API `provision` and `check` talk to the base with. Their requests are counted in the workspace's
    tally only when LEADKIT_HOME is a workspace: they run before `leadkit init` in the README's order, and a
    tally written into a folder that is not a workspace yet would make `init` refuse it."""
    from pathlib import Path

    from leadkit.store.airtable import make_api
    from leadkit.store.airtable.usage import UsageLog
    from leadkit.workspace import is_initialised

    api = make_api(settings)
    if not is_initialised(Path(settings.leadkit_home)):
        api.usage = UsageLog(None)  # this process's counts only
    return api


@airtable_app.command("provision")
def provision_cmd(base: BaseOpt = None, kind: KindOpt = "master", json_out: JsonOpt = False) -> None:
    """Create the tables and fields leadkit needs that the base lacks (through Airtable's meta API)."""
    from leadkit.store.provision import check_schema, provision

    settings = get_settings()
    base_id = _target(settings, base, kind)
    api = _meta_api(settings)
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
    from leadkit.store.provision import check_schema

    settings = get_settings()
    base_id = _target(settings, base, kind)
    problems = check_schema(_meta_api(settings), base_id, kind)  # type: ignore[arg-type]
    if json_out:
        _echo_json([p.to_dict() for p in problems])
    else:
        typer.echo(f"{base_id}: {'schema OK' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            typer.echo(f"  {problem.describe()}")
    if problems:
        raise typer.Exit(2)


def _airtable_store(settings: Settings) -> Any:
    from leadkit.store.airtable import AirtableStore

    if not settings.leadkit_store.startswith("airtable://"):
        raise ConfigError(
            f"LEADKIT_STORE={settings.leadkit_store!r} is not an Airtable store: there is no Airtable budget to show",
            hint="Set LEADKIT_STORE=airtable://<master base id> (and AIRTABLE_API_KEY).",
        )
    return AirtableStore(settings.leadkit_store.removeprefix("airtable://").strip("/"), settings)


@airtable_app.command("usage")
def usage_cmd(
    json_out: JsonOpt = False,
    records: Annotated[
        bool,
        typer.Option(
            "--records/--no-records",
            help="Count the master base's records against the plan's cap (costs one request per 100 records).",
        ),
    ] = True,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="A dask scheduler (tcp://HOST:8786) whose batches ran kernels on other hosts: their counts, kept "
            "on the scheduler, are added to the workspace's tally first (each once).",
        ),
    ] = None,
) -> None:
    """The month's Airtable budget: requests per client run (as the store counted them, on every host), the
    month's projection against LEADKIT_AIRTABLE_PLAN's monthly calls, and records per base against the plan's
    cap."""
    from leadkit.store.airtable.usage import read_tally, usage_report

    settings = get_settings()
    store = _airtable_store(settings)
    try:
        if scheduler:
            try:
                store.api.usage.collect_remote(scheduler)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"--scheduler {scheduler}: cannot read the counts kept there ({type(exc).__name__}: {exc})",
                    hint="Give the address of the running scheduler the batches used (tcp://HOST:8786).",
                ) from None
        if records:
            counts = store.count_records()
            store.api.usage.records_counted(store.base_id, counts)
        report = usage_report(
            read_tally(settings.leadkit_home), master_base=store.base_id, plan=settings.leadkit_airtable_plan
        )
        report["requests_spent_by_this_command"] = store.api.usage.total()
    finally:
        store.close()
    if json_out:
        _echo_json(report)
        return
    for line in usage_lines(report):
        typer.echo(line)


def usage_lines(report: dict[str, Any]) -> list[str]:
    cap = report["monthly_cap"]
    share = f" ({100 * report['projected_share']:.0f}% of the {cap:,} a month)" if cap else " (no monthly cap)"
    per_run = report["master_requests_per_client_run"]
    lines = [
        f"Airtable budget, {report['month']}, plan {report['plan']}",
        f"  requests this month: {report['requests']:,} (master base {report['master_requests']:,}, "
        f"client bases {report['client_base_requests']:,})",
        f"  of which the dashboard: {report['dashboard_requests']:,}; batches and commands: "
        f"{report['other_requests']:,}",
        f"  client runs this month: {report['client_runs']:,}; master requests per client run: "
        f"{per_run if per_run is not None else 'n/a'}",
        f"  projected this month at this pace: {report['projected_requests']:,}{share}",
    ]
    for entry in report["records_per_base"]:
        lines.append(
            f"  records in {entry['base']}: {entry['records']:,} of {entry['cap']:,} "
            f"({100 * entry['share']:.0f}%, counted {entry['counted_at']})"
        )
    return lines


@airtable_app.command("archive")
def archive_cmd(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Archive records older than this (e.g. 90d, 12h).")
    ] = "90d",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would move; change nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Move old Client Run Results, Run Events, Auth Checks (and Alerts) into the workspace's local archive
    (airtable-archive.sqlite), deleting each page from Airtable only after its copy is verified. Safe to run
    again after an interruption; the dashboard and `leadkit show` still read archived records."""
    from leadkit.durations import parse_duration
    from leadkit.store.airtable.archive import ARCHIVE_FILE, Archive, archive_old

    age = parse_duration(older_than)
    settings = get_settings()
    store = _airtable_store(settings)
    home = settings.leadkit_home
    if not home.is_dir():
        raise ConfigError(f"the workspace {home} does not exist: the archive lives there", hint="Run `leadkit init`.")
    archive = Archive(home / ARCHIVE_FILE)

    def progress(table: str, moved: int) -> None:
        if not json_out:
            typer.echo(f"  {table}: {moved} archived", err=True)

    try:
        result = archive_old(store, archive, age, dry_run=dry_run, progress=progress)
    finally:
        archive.close()
        store.close()
    if json_out:
        _echo_json({"older_than": older_than, "dry_run": dry_run, "archive": str(home / ARCHIVE_FILE), **result})
        return
    verb = "would archive" if dry_run else "archived"
    for table, counts in result.items():
        typer.echo(f"{table}: {verb} {counts['archived']} record(s) older than {older_than}")
    typer.echo(f"archive: {home / ARCHIVE_FILE}")
