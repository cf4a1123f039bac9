"""Commands: auth-check, failures, rerun, health, stats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _table, _workspace, app, failures_app
from leadkit.errors import LeadkitError
from leadkit.history import FailedClient, latest_failed

SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only what happened in this last duration, e.g. 30m, 24h, 7d.")
]


def _since(text: str | None) -> datetime | None:
    from leadkit.durations import parse_duration
    from leadkit.models import utcnow

    return utcnow() - parse_duration(text) if text else None


# ------------------------------------------------------------------------------------------------ auth-check
@app.command("auth-check")
def auth_check(json_out: JsonOpt = False) -> None:
    """Check every configured credential (Airtable token and bases, Apify token); exit 2 when any fails.

    Results are stored as AuthCheck records. When the workspace cannot be opened (an expired Airtable token
    does that), the checks still run from the settings and are printed, not stored.
    """
    from leadkit.checks import check_credentials, run_auth_checks
    from leadkit.config import get_settings

    not_stored: LeadkitError | None = None
    try:
        ws = _workspace()
    except LeadkitError as exc:
        not_stored = exc
        checks = check_credentials(get_settings())
    else:
        try:
            checks = run_auth_checks(ws)
        finally:
            ws.close()
    if json_out:
        _echo_json([{**c.to_dict(), "detail": c.detail} for c in checks])
    else:
        rows = [
            {
                "name": c.name,
                "ok": "ok" if c.ok else "FAIL",
                "category": c.category or "",
                "status": c.status,
                "ms": round(c.latency_ms),
                "detail": c.detail,
            }
            for c in checks
        ]
        _table(rows, ["name", "ok", "category", "status", "ms", "detail"])
        for c in checks:
            if not c.ok:
                typer.echo(f"hint ({c.name}): {c.hint}")
    if not_stored is not None:
        typer.echo(f"note: results not stored: {not_stored.message}", err=True)
    if not all(c.ok for c in checks):
        raise SystemExit(2)  # not typer.Exit: main() runs the app with standalone_mode=False


# ------------------------------------------------------------------------------------------------ failures
@failures_app.callback()
def failures(
    ctx: typer.Context,
    since: SinceOpt = None,
    unresolved: Annotated[bool, typer.Option("--unresolved", help="Only groups not yet resolved.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Failures grouped by fingerprint: category, count, first and last seen, clients, hint, resolved, status."""
    if ctx.invoked_subcommand is not None:
        return
    from leadkit.diagnosis import group_failures

    ws = _workspace()
    try:
        groups = group_failures(ws, since=_since(since), unresolved_only=unresolved)
        failing = {f.client_id: f for f in latest_failed(ws, since=_since(since))}
    finally:
        ws.close()
    if json_out:
        _echo_json([g.to_dict() for g in groups])
        return
    if not groups and not failing:
        typer.echo("no failures" + (f" in the last {since}" if since else ""))
        return
    listed: set[str] = set()
    for g in groups:
        state = ("resolved" if g.resolved else "UNRESOLVED") + ("" if g.status == "NEW" else f" {g.status}")
        typer.echo(f"[{g.category}] x{g.count} {state}  last {g.last_seen:%Y-%m-%d %H:%M:%S} UTC  {g.headline}")
        typer.echo(f"    clients: {', '.join(g.clients) or '-'}   first {g.first_seen:%Y-%m-%d %H:%M:%S} UTC")
        typer.echo(f"    hint: {g.hint}")
        if not g.resolved and g.clients:
            _print_rerun(g.category, g.clients, failing, listed)
        typer.echo(f"    fingerprint: {g.fingerprint}")
    others = sorted(set(failing) - listed)
    if others:
        typer.echo("latest attempts that failed without a failure group above:")
        for cid in others:
            f = failing[cid]
            typer.echo(f"    {cid}: {f.record.outcome} in run {f.record.run_id}: {f.why or '(no reason kept)'}")
        typer.echo(f"    re-run: leadkit rerun --failed --client {' --client '.join(others)}")


def _print_rerun(category: str, clients: list[str], failing: dict[str, FailedClient], listed: set[str]) -> None:
    """The re-run command of an unresolved group: exactly the clients `rerun --failed` would take with it (their
    latest attempt counts as failed, with this category); the others are named with their latest outcome."""
    again = [c for c in clients if c in failing and failing[c].category == category]
    listed.update(again)
    if again:
        typer.echo(f"    re-run: leadkit rerun --failed --category {category} --client {' --client '.join(again)}")
    for cid in clients:
        if cid in again:
            continue
        if cid in failing:
            typer.echo(f"    {cid}: its latest attempt failed differently ({failing[cid].category}); see that failure")
        else:
            typer.echo(f"    {cid}: its latest attempt did not fail (nothing for `rerun --failed` to take)")


# ------------------------------------------------------------------------------------------------ rerun
@app.command()
def rerun(
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Re-run the clients whose latest attempt counts as failed (Failed, Stale, Completed with Errors, Interrupted).",
        ),
    ] = False,
    since: SinceOpt = None,
    client: Annotated[
        list[str] | None, typer.Option("--client", help="Only this client; repeat for more (--client A --client B).")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Only failures of this category: config, auth, upstream, rate_limit, ...")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list them (one client ID a line, with its failure); start nothing.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Notebooks at once (env LEADKIT_CONCURRENCY; default: available memory / 300 MB, 8 to 32).", min=1
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Open a new run over the clients whose latest attempt failed (matching the filters), listing them first.

    Exit 0 when none matched or all completed, 1 when some failed again (as `leadkit batch`).
    """
    from leadkit.diagnosis import failure_headline

    if not failed:
        raise LeadkitError(
            "rerun needs --failed: it re-runs the clients whose latest attempt failed",
            hint="Try `leadkit rerun --failed --dry-run` to see which clients that is.",
        )
    ws = _workspace()
    try:
        chosen = latest_failed(ws, since=_since(since), client_ids=client or None, category=category)
        if json_out and dry_run:
            _echo_json(
                [
                    {"client_id": f.client_id, "run_id": f.record.run_id, "category": f.category, "why": f.why}
                    for f in chosen
                ]
            )
            return
        if not chosen:
            filtered = " (matching the filters)" if client or category or since else ""
            typer.echo(f"no client's latest attempt failed{filtered}", err=True)
            return
        if not dry_run:
            typer.echo(f"re-running {len(chosen)} client(s) whose latest attempt failed:")
        for f in chosen:
            typer.echo(f"{f.client_id}\t{f.category}: {failure_headline(f.why)} (run {f.record.run_id})")
        if dry_run:
            return
        from leadkit.batch import run_batch
        from leadkit.cli.batchcmd import _print_batch, exit_code

        result = run_batch(ws, workers=workers, client_ids=[f.client_id for f in chosen], progress=not json_out)
        if json_out:
            from leadkit.cli.rundata import run_dict

            _echo_json(run_dict(ws, result.run.run_id))
        else:
            _print_batch(result)
    finally:
        ws.close()
    raise SystemExit(exit_code(result))


# ------------------------------------------------------------------------------------------------ health
@app.command()
def health(
    client_id: Annotated[str, typer.Argument(help="The client, e.g. Acme-Co.")],
    json_out: JsonOpt = False,
) -> None:
    """Why this client is or is not being harvested: settings, leads waiting, last runs, last failure, next step."""
    from leadkit.health import client_health
    from leadkit.history import counts_as_failed, latest_attempt, outcome

    ws = _workspace()
    try:
        data = client_health(ws, client_id)
        latest = latest_attempt(ws.store, client_id)
    finally:
        ws.close()
    if json_out:
        _echo_json(data)
        return
    verdict = data["verdict"]
    typer.echo(f"client {data['client_id']} ({data['client']['status']})")
    if verdict is not None:
        typer.echo(f"due for harvesting: {'yes' if verdict['due'] else 'no'} ({verdict['reason']})")
    if data["leads_by_status"] is not None:
        typer.echo("leads: " + ", ".join(f"{k} {v}" for k, v in data["leads_by_status"].items()))
    typer.echo("last runs:")
    shown = [{**r, "status": r.get("outcome", r["status"])} for r in data["last_runs"]]  # Interrupted, not Failed
    _table(shown, ["run_id", "status", "source", "started_at", "reason"])
    if data["last_failure"]:
        f = data["last_failure"]
        typer.echo(f"last failure ({f['at']}, {f['category']}): {f['message']}")
    if latest is not None:
        failed = (
            f"; counts as failed: `leadkit rerun --failed --client {client_id}` re-runs it"
            if counts_as_failed(latest)
            else ""
        )
        typer.echo(f"latest attempt: {outcome(latest)} (run {latest.run_id}){failed}")
    typer.echo(f"next step: {data['next_step']}")


# ------------------------------------------------------------------------------------------------ stats
@app.command()
def stats(since: SinceOpt = None, json_out: JsonOpt = False) -> None:
    """Record-keeping metrics: opens by source, re-opens, recoveries, failed opens, success rate, stale swept."""
    from leadkit.diagnosis import record_stats

    ws = _workspace()
    try:
        data = record_stats(ws, since=_since(since))
    finally:
        ws.close()
    if json_out:
        _echo_json(data)
        return
    rate = data["creation_success_rate"]
    typer.echo("ClientRun opens by source: " + ", ".join(f"{k} {v}" for k, v in data["opens_by_source"].items()))
    typer.echo(f"created {data['created']}, re-opens (duplicates prevented) {data['reopens']}, ")
    typer.echo(f"recoveries {data['recoveries']}, failed opens {data['failed_opens']}")
    typer.echo(f"creation success rate: {'-' if rate is None else f'{rate:.1%}'}")
    typer.echo(f"stale records swept: {data['stale_swept']}")
