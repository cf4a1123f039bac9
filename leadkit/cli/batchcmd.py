"""Commands: batch, run, sweep, prune."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _workspace, app
from leadkit.cli.rundata import run_dict, targets_text
from leadkit.errors import LeadkitError
from leadkit.words import table_lines

#: The width the batch summary's "why" column wraps at (between words: nothing is cut).
WHY_WIDTH = 70


# ------------------------------------------------------------------------------------------------ batch
def exit_code(result: Any) -> int:
    """A finished batch's exit code, from its clients' outcomes (`leadkit.history.batch_exit_code`)."""
    from leadkit.history import batch_exit_code

    return batch_exit_code(result.run, result.records, lost_lease=bool(result.lost_lease))


def _print_batch(result: Any) -> None:
    rows = []
    for r in result.records:
        rows.append(
            {
                "client": r.client_id,
                "status": r.outcome,
                "posts": int(r.metrics.get("posts_harvested", 0)),
                "targets": targets_text(r.metrics),
                "apify $": f"{r.metrics.get('apify_cost_usd', 0.0):.3f}",
                "why": (r.failure.message if r.failure else r.reason or "").strip(),
            }
        )
    typer.echo("")
    for line in table_lines(rows, ["client", "status", "posts", "targets", "apify $", "why"], wrap={"why": WHY_WIDTH}):
        typer.echo(line)
    typer.echo(f"\nrun {result.run.run_id}: {result.run.status.value}; notebooks and log.jsonl in {result.run_dir}")
    if result.lost_lease:
        typer.echo(f"{result.lost_lease}: no further client was started (exit 3)", err=True)
    failing = [r for r in result.records if r.failure]
    for r in failing:
        typer.echo(f"hint for {r.client_id}: {r.failure.hint}", err=True)


@app.command()
def batch(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Clients at once (env LEADKIT_CONCURRENCY; default: available memory / 300 MB, 8 to 32). Their "
            "Apify runs share APIFY_MAX_CONCURRENT_RUNS (default: the account's free capacity).",
            min=1,
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Old name of --concurrency.", min=1, hidden=True)] = None,
    clients: Annotated[str | None, typer.Option(help="Only these clients, comma-separated.")] = None,
    stream: Annotated[int | None, typer.Option(help="Only the clients of this Processing Stream.", min=1)] = None,
    resume: Annotated[str | None, typer.Option(help="Re-run the clients of RUN_ID that had not completed.")] = None,
    stages: Annotated[
        str, typer.Option(help="Stages to run, comma-separated (eligibility only: no harvesting).")
    ] = "eligibility,harvest",
    timeout: Annotated[float, typer.Option(help="Seconds one client notebook may run.", min=1)] = 600.0,
    start_timeout: Annotated[float, typer.Option(help="Seconds a kernel may take to start.", min=1)] = 60.0,
    executor: Annotated[
        str, typer.Option(help="local (this machine, one kernel per client) or dask (a dask.distributed cluster).")
    ] = ("local"),
    scheduler: Annotated[str | None, typer.Option(help="The dask scheduler address, with --executor dask.")] = None,
    notebook: Annotated[
        Path | None, typer.Option(help="The client workflow notebook (default: notebooks/client_workflow.ipynb).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and record; send nothing to Apify.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the client notebook for every Active client (or --clients, or --stream), taking the lease of each
    stream they belong to.

    Exit codes: 0 all completed (or skipped, not due); 1 some failed; 2 configuration, auth or selection error
    (no client selected), nothing run or recorded; 3 a live batch with a fresh heartbeat holds a stream's lease
    (nothing run), or took it over from this one (no further client started)."""
    from leadkit.batch import NOTEBOOK, run_batch

    stage_list = _stages(stages)
    ws = _workspace()
    ids = [c.strip() for c in clients.split(",") if c.strip()] if clients else None
    if workers is not None and concurrency is not None and workers != concurrency:
        from leadkit.errors import DataError

        raise DataError(f"--workers {workers} and --concurrency {concurrency} disagree; --workers is its old name")
    try:
        result = run_batch(
            ws,
            concurrency=concurrency or workers,
            client_ids=ids,
            stream=stream,
            resume=resume,
            stages=stage_list,
            timeout_s=timeout,
            start_timeout_s=start_timeout,
            executor=executor,
            scheduler=scheduler,
            notebook=notebook or NOTEBOOK,
            dry_run=dry_run,
            progress=not json_out,
        )
    except (KeyboardInterrupt, SystemExit) as exc:
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
        _print_interrupted(ws, code, None if resume else ids, stream)
        raise typer.Exit(code) from None
    if json_out:
        _echo_json(run_dict(ws, result.run.run_id))
    else:
        _print_batch(result)
    raise typer.Exit(exit_code(result))


def _print_interrupted(ws: Any, code: int, client_ids: list[str] | None, stream: int | None) -> None:
    """What an interrupted batch (Ctrl-C, SIGTERM) leaves, on stderr: the run it stopped, the clients that were
    running (with why they stopped) and those it never started, the Apify runs those clients had started (their
    kernels abort them as they stop), and the command that resumes the run. The run is the newest this process
    started or resumed (`started_by` names host and PID); none when the signal came before one was recorded."""
    from leadkit.harvest.harvester import apify_run_ids
    from leadkit.history import DONE_OUTCOMES, attempt_started_at
    from leadkit.records import holder_name

    signame = {130: "SIGINT (Ctrl-C)", 143: "SIGTERM"}.get(code, f"signal {code - 128}" if code > 128 else "a stop")
    say = lambda text: typer.echo(text, err=True)  # noqa: E731
    me = holder_name()
    run = next((r for r in ws.store.list_runs(limit=20) if r.started_by == me), None)
    if run is None:
        say(f"\nbatch interrupted by {signame} before a run was recorded: nothing ran, nothing to resume")
        return
    records = sorted(ws.store.list_client_runs(run_id=run.run_id), key=lambda r: r.client_id)
    done = [r for r in records if r.outcome in DONE_OUTCOMES]
    stopped = [r for r in records if r.outcome not in DONE_OUTCOMES]
    say(f"\nbatch interrupted by {signame}: run {run.run_id} stopped ({run.status.value})")
    if stopped:
        say(f"stopped or failed before the end ({len(stopped)}):")
        for r in stopped:
            reason = r.failure.message if r.failure else r.reason or "its kernel was stopped before it said why"
            left = " (left Running: the next batch's sweep marks it Stale)" if r.status.value == "Running" else ""
            say(f"  {r.client_id}: {r.outcome}: {reason.splitlines()[0] if reason else ''}{left}")
    if done:
        say(f"finished before the stop ({len(done)}): {', '.join(r.client_id for r in done)}")
    try:
        from leadkit.batch.runner import select_clients

        selected = [c.client_id for c in select_clients(ws, client_ids, stream)]
    except LeadkitError:
        selected = []
    recorded = {r.client_id for r in records}
    never = [c for c in selected if c not in recorded]
    if never:
        say(f"not started ({len(never)}): {', '.join(never)}")
    aborted = []
    for r in stopped:
        since = attempt_started_at(ws.store, r)
        events = [e.message for e in ws.store.list_events(run_id=r.run_id, client_id=r.client_id) if e.at >= since]
        aborted += [f"{rid} ({r.client_id})" for rid in apify_run_ids(events)]
    if aborted:
        say(
            "Apify runs these clients had started (their kernels abort the unfinished ones as they stop; "
            f"check in the Apify Console): {', '.join(aborted)}"
        )
    else:
        say("Apify runs: none was started by the stopped clients")
    say(f"resume with: leadkit batch --resume {run.run_id}")


def _stages(text: str) -> list[str]:
    from leadkit.errors import DataError
    from leadkit.workflow import STAGES

    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if not names or unknown:
        raise DataError(f"--stages {text!r} is not accepted; known stages: {', '.join(STAGES)}")
    return names


@app.command()
def run(
    client_id: Annotated[str, typer.Argument(help="The client to run.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and record; send nothing to Apify.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """A batch of one client (it takes the lease of the client's own stream)."""
    from leadkit.batch import run_batch
    from leadkit.runids import validate_client_id

    validate_client_id(client_id)
    ws = _workspace()
    ws.store.get_client(client_id)
    result = run_batch(ws, client_ids=[client_id], dry_run=dry_run, progress=not json_out)
    if json_out:
        _echo_json(run_dict(ws, result.run.run_id))
    else:
        _print_batch(result)
    raise typer.Exit(exit_code(result))


@app.command()
def sweep(
    older_than: Annotated[
        str | None,
        typer.Option(help="Heartbeat age past which a Running record is Stale, e.g. 15m (default: setting)."),
    ] = None,
    stream: Annotated[
        int | None, typer.Option(help="Only this Processing Stream (default: every stream).", min=1)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Mark Running ClientRuns without a fresh heartbeat as Stale, and Runs whose batch is gone as Failed, with
    the reason. It sweeps a stream only under that stream's lease: a stream whose batch is running is left alone
    (exit 3 when any was)."""
    from leadkit.batch import sweep_streams
    from leadkit.durations import parse_duration

    ttl = parse_duration(older_than) if older_than else None
    ws = _workspace()
    report = sweep_streams(ws, [stream] if stream else None, older_than=ttl)
    from leadkit.alerts import sweep_alerts

    sweep_alerts(ws, report.swept)
    if json_out:
        _echo_json(
            {
                "swept": [{"client_run_id": r.client_run_id, "reason": r.reason} for r in report.swept],
                "runs_failed": [{"run_id": r.run_id, "notes": r.notes} for r in report.runs_failed],
                "streams_held": report.held,
            }
        )
    else:
        typer.echo(f"{len(report.swept)} record(s) marked Stale, {len(report.runs_failed)} run(s) Failed")
        for r in report.swept:
            typer.echo(f"  {r.client_run_id}: {r.reason}")
        for run in report.runs_failed:
            typer.echo(f"  run {run.run_id}: {run.notes.splitlines()[-1] if run.notes else 'Failed'}")
        for note in report.held:
            typer.echo(f"  not swept: {note}", err=True)
    if report.held:
        raise typer.Exit(3)


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(help="Retention: remove files older than this, e.g. 30d.")] = "30d",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove executed notebooks and logs past a retention (run records stay), so a scheduled workspace does
    not grow without bound."""
    from leadkit.batch import prune as prune_files
    from leadkit.durations import parse_duration

    age = parse_duration(older_than)
    ws = _workspace()
    report = prune_files(ws, age, dry_run=dry_run)
    if json_out:
        _echo_json(
            {
                "removed": [str(p) for p in report.removed],
                "bytes_freed": report.bytes_freed,
                "kept_running": report.kept_running,
                "dry_run": dry_run,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {len(report.removed)} file(s), {report.bytes_freed / 1e6:.1f} MB, older than {older_than}")
    for name in report.kept_running:
        typer.echo(f"  kept {name}: the run is still Running")
