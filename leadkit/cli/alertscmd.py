"""Commands: alerts (history), alerts test, watch, failures set."""

from __future__ import annotations

from typing import Annotated

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _table, _workspace, app, failures_app

alerts_app = typer.Typer(
    help="Alerts: the history (what was alerted, to which channel, delivered or the error) and a channel test.\n\n"
    "Channels are Apprise URLs in LEADKIT_ALERT_URLS (comma- or space-separated; the environment, ./.env or the "
    "workspace's .env); a channel is shown by Apprise's privacy URL, or scheme, host and a fingerprint: never a token.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.callback()
def alerts_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many alerts, newest first.", min=1)] = 50,
    json_out: JsonOpt = False,
) -> None:
    """The latest alerts, newest first: at, kind, key, clients, channel, delivered, error."""
    if ctx.invoked_subcommand is not None:
        return
    from leadkit.alerts.engine import records_of

    ws = _workspace()
    try:
        alerts = records_of(ws.store).list_alerts(limit=limit)
    finally:
        ws.close()
    rows = [
        {k: v for k, v in a.to_dict().items() if k in ("at", "kind", "key", "clients", "channel", "delivered", "error")}
        for a in alerts
    ]
    if json_out:
        _echo_json(rows)
        return
    _table(
        [
            {
                **r,
                "at": r["at"][:19],
                "key": str(r["key"])[:60],
                "clients": ", ".join(r["clients"]),
                "channel": r["channel"] or "(no channel)",
                "delivered": "yes" if r["delivered"] else ("no" if r["channel"] else "-"),
                "error": (r["error"] or "")[:80],
            }
            for r in rows
        ],
        ["at", "kind", "key", "clients", "channel", "delivered", "error"],
    )


@alerts_app.command("test")
def alerts_test(json_out: JsonOpt = False) -> None:
    """Send a test message to each channel of LEADKIT_ALERT_URLS and report each delivery; exit 2 when any fails.

    Each delivery is recorded as an alert of kind `test` when the workspace opens (the dashboard shows the last
    test of each channel)."""
    from leadkit.alerts import alert_settings, test_channels
    from leadkit.errors import LeadkitError

    settings = alert_settings()
    try:
        ws = _workspace()
    except LeadkitError:
        ws = None
    try:
        rows = test_channels(ws.store if ws is not None else None, settings)
    finally:
        if ws is not None:
            ws.close()
    if json_out:
        _echo_json([{"channel": r.channel, "delivered": r.delivered, "error": r.error} for r in rows])
    else:
        for r in rows:
            typer.echo(f"{'ok  ' if r.delivered else 'FAIL'}  {r.channel}" + (f": {r.error}" if r.error else ""))
    if not all(r.delivered for r in rows):
        raise SystemExit(2)  # not typer.Exit: main() runs the app with standalone_mode=False


@app.command()
def watch(
    stream: Annotated[
        list[int] | None, typer.Option("--stream", help="Only this stream (repeatable); default: every stream.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Alert when no batch of a stream finished in LEADKIT_MAX_SILENCE (default 3h), and when a harvesting client
    gathered no posts for LEADKIT_SILENT_AFTER (72h) after having some. Meant for its own cron line every 15
    minutes; alerts are deduped (LEADKIT_ALERT_WINDOW). Exit 1 when something is silent, 0 when all is well."""
    from leadkit.alerts import watch as run_watch

    ws = _workspace()
    try:
        result = run_watch(ws, streams=stream or None)
    finally:
        ws.close()
    if json_out:
        _echo_json(
            {
                "silent_streams": [
                    {
                        "stream": s.stream,
                        "last_run": s.last_run.run_id if s.last_run else None,
                        "lease_holder": f"{s.lease.host}:{s.lease.pid}" if s.lease else None,
                        "cause": s.cause,
                    }
                    for s in result.silences
                ],
                "silent_clients": [n.key for n in result.silent],
                "alerts_sent": len({a.message_id for a in result.alerts}),
            }
        )
    elif result.text:
        typer.echo("\n".join(result.text).rstrip())
    else:
        typer.echo("ok: every stream finished a batch recently and no client stopped yielding posts")
    if result.silences or result.silent:
        raise SystemExit(1)


@failures_app.command("set")
def failures_set(
    fingerprint: Annotated[str, typer.Argument(help="The fingerprint of a failure group, or a unique prefix of it.")],
    status: Annotated[str, typer.Option("--status", help="NEW, INVESTIGATING, FIXED or IGNORED.")],
    note: Annotated[str | None, typer.Option("--note", help="A note for whoever looks next.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set the triage status (and note) of a failure group. INVESTIGATING and IGNORED keep it from alerting until
    it changes (a new client or category); a FIXED group that fails again alerts as a regression."""
    from leadkit.alerts import set_triage

    ws = _workspace()
    try:
        triage = set_triage(ws, fingerprint, status, note)
    finally:
        ws.close()
    if json_out:
        _echo_json(triage.to_dict())
    else:
        typer.echo(f"{triage.status.value}: {triage.fingerprint}" + (f"\n  note: {triage.note}" if triage.note else ""))
