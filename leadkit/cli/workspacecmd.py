"""Commands: init, backup, doctor, lab (setting a workspace up, keeping it safe, checking it, working in it)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from leadkit.cli.app import JsonOpt, _echo_json, _workspace, app
from leadkit.errors import ConfigError, DataError, LeadkitError


# ------------------------------------------------------------------------------------------------ init
@app.command()
def init(
    store: Annotated[
        str,
        typer.Option(help="The store: empty for SQLite in the workspace, or airtable://<master base id>."),
    ] = "",
    home: Annotated[
        Path | None, typer.Option(help="The workspace folder (default: LEADKIT_HOME, else ./runs).")
    ] = None,
    group: Annotated[
        bool,
        typer.Option("--group", help="Let the folder's group read the workspace (mode 0750; default 0700: only you)."),
    ] = False,
) -> None:
    """Create an empty workspace (no clients) with a commented .env to fill in, and print the next steps.

    The folder is private to you (mode 0700; 0750 with --group) and its .env, which holds the tokens, is 0600.

    With --store airtable://<base id> the master base's schema is checked (AIRTABLE_API_KEY needed); fix what it
    lacks with `leadkit airtable provision`. A folder holding other files is refused."""
    from leadkit.config import get_settings
    from leadkit.workspace import init_workspace, is_initialised

    settings = get_settings()
    target = Path(home if home is not None else settings.leadkit_home).resolve()
    if store and not (store.startswith("airtable://") or store.startswith("sqlite")):
        raise DataError(f"--store {store!r} is not accepted; use nothing (SQLite) or airtable://<master base id>")
    problems: list[Any] | None = []
    if store.startswith("airtable://") and not is_initialised(target):
        # Checked before anything is written: a malformed or unreachable base leaves the folder as it was.
        problems, created, done = _check_then_init(target, store, settings, group=group)
    else:
        created, done = init_workspace(target, store, settings, group=group)
    for line in done:
        typer.echo(line)
    if store.startswith("airtable://"):
        if not created or problems is None:  # the workspace's .env may hold the token now
            problems = _master_problems(get_settings(leadkit_home=target, leadkit_store=store))
        code = _report_master(store, problems)
        if code:
            raise typer.Exit(code)
    env = "" if home is None and Path(settings.leadkit_home).resolve() == target else f"LEADKIT_HOME={target} "
    steps = [
        f"edit {target / '.env'}: set APIFY_TOKEN (and AIRTABLE_API_KEY for Airtable)",
        f"{env}leadkit clients import clients.csv   (columns client_id,name,...; or `leadkit clients add ID --name N`)",
        f"{env}leadkit leads import CLIENT_ID leads.csv   (columns profile_url,name,company)",
        f"{env}leadkit doctor   then   {env}leadkit batch --dry-run   then   {env}leadkit batch",
    ]
    if created:
        typer.echo("\nnext steps:")
        for number, step in enumerate(steps, start=1):
            typer.echo(f"  {number}. {step}")


def _check_then_init(
    target: Path, store: str, settings: Any, *, group: bool
) -> tuple[list[Any] | None, bool, list[str]]:
    """Check the master base with a scratch folder as the home (the request tally it keeps goes there, not into
    `target`), then create the workspace and move the tally in: a refusal leaves `target` as it was. Without
    AIRTABLE_API_KEY only the ID's form is checked (problems None: not checked yet)."""
    import shutil
    import tempfile

    from leadkit.store.airtable import validate_base_id
    from leadkit.store.airtable.usage import USAGE_FILE
    from leadkit.workspace import init_workspace

    if settings.airtable_api_key is None:  # nothing to check with yet: the token goes into the new .env
        validate_base_id(store.removeprefix("airtable://").strip("/"), what="--store")
        created, done = init_workspace(target, store, settings, group=group)
        return None, created, done
    with tempfile.TemporaryDirectory(prefix="leadkit-init-") as scratch:
        problems = _master_problems(settings.model_copy(update={"leadkit_home": Path(scratch), "leadkit_store": store}))
        created, done = init_workspace(target, store, settings, group=group)
        tally = Path(scratch) / USAGE_FILE
        if created and tally.is_file() and not (target / USAGE_FILE).exists():
            shutil.copy2(tally, target / USAGE_FILE)
    return problems, created, done


def _master_problems(settings: Any) -> list[Any]:
    """What the master base named by `settings.leadkit_store` lacks (empty: nothing). Raises (exit 2) when the ID
    is malformed, no token is set, or the token cannot reach the base (the API's error names the base)."""
    from leadkit.store.airtable import make_api, validate_base_id
    from leadkit.store.provision import check_schema

    base = validate_base_id(settings.leadkit_store.removeprefix("airtable://").strip("/"), what="--store")
    if settings.airtable_api_key is None:
        raise ConfigError(
            "AIRTABLE_API_KEY is not set, so the master base cannot be checked",
            hint=f"Set AIRTABLE_API_KEY in {Path(settings.leadkit_home) / '.env'} (or the environment), then run "
            f"`leadkit init --store airtable://{base}` again: it checks the base.",
        )
    return check_schema(make_api(settings), base, "master")  # an unreachable base: AuthError/NotFound (exit 2)


def _report_master(store: str, problems: list[Any]) -> int:
    base = store.removeprefix("airtable://").strip("/")
    if not problems:
        typer.echo(f"master base {base}: every table, field and select option leadkit writes is there")
        return 0
    typer.echo(f"master base {base}: {len(problems)} problem(s)", err=True)
    for problem in problems:
        typer.echo(f"  {problem.describe()}", err=True)
    typer.echo(f"fix: `leadkit airtable provision --base {base}` adds what is missing", err=True)
    return 2


# ------------------------------------------------------------------------------------------------ backup
@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="A new or empty folder for the copy.")],
    json_out: JsonOpt = False,
) -> None:
    """Copy every database of the workspace consistently, even while batches run: the SQLite store (master and
    every client base) and the Airtable archive (airtable-archive.sqlite) when there is one.

    The copy is a private workspace (0700): `LEADKIT_HOME=DEST leadkit runs` reads it; `leadkit restore DEST
    --home NEW` copies it back into a new workspace folder (the README's Backups section). The .env is not copied."""
    from leadkit.backup import backup_workspace, databases

    ws = _workspace(read_only=True)
    try:
        if ws.store_url.startswith("airtable://") and not databases(ws.home):
            raise ConfigError(
                "the store is Airtable and the workspace holds no SQLite database (no archive) to back up",
                hint="Airtable keeps snapshots of each base (base menu > Snapshots); `leadkit airtable archive` "
                "moves old records into a local archive, which `leadkit backup` then copies.",
            )
        report = backup_workspace(ws.home, dest)
    finally:
        ws.close()
    if json_out:
        _echo_json({"dest": str(report.dest), "files": [str(f) for f in report.files], "bytes": report.bytes})
        return
    typer.echo(f"backed up {len(report.files)} file(s), {report.bytes / 1e6:.1f} MB, to {report.dest}")


# ------------------------------------------------------------------------------------------------ doctor
@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="The folder `leadkit backup` wrote.")],
    home: Annotated[
        Path | None,
        typer.Option(help="The workspace folder to restore into, missing or empty (default: LEADKIT_HOME)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy a backup's databases into a missing or empty workspace folder (never over a workspace), each as one
    consistent file; the folder is made private (0700). Copy the .env back by hand (it holds the tokens)."""
    from leadkit.backup import restore_workspace
    from leadkit.config import get_settings

    target = Path(home if home is not None else get_settings().leadkit_home)
    report = restore_workspace(source, target)
    if json_out:
        _echo_json({"home": str(report.dest), "files": [str(f) for f in report.files], "bytes": report.bytes})
        return
    for path in report.files:
        typer.echo(f"restored {path}")
    typer.echo(f"{len(report.files)} database(s), {report.bytes} bytes into {report.dest}")


@app.command()
def doctor(json_out: JsonOpt = False) -> None:
    """Check dependencies (each imported for real), the notebook kernel, settings, the store and the workspace.

    Each check is ok, warn or FAIL; exit 2 when anything fails (warnings do not change the exit code)."""
    from leadkit.doctor import run_doctor

    problem: LeadkitError | None = None
    try:
        ws = _workspace(read_only=True)
    except LeadkitError as exc:
        ws, problem = None, exc  # the doctor reports the missing or broken workspace as a failed check
    try:
        report = run_doctor(ws, store_problem=problem if _is_store_problem(problem) else None)
    finally:
        if ws is not None:
            ws.close()
    if json_out:
        _echo_json(report.to_dict())
    else:
        for c in report.checks:
            typer.echo(f"{c.level.upper() if c.level != 'ok' else 'ok':4}  {c.name}: {c.detail}")
            if c.level != "ok":
                typer.echo(f"      hint: {c.hint}")
        failed, warned = len(report.failed), len(report.warnings)
        typer.echo(f"\n{len(report.checks) - failed - warned} ok, {warned} warning(s), {failed} failed")
    if not report.ok:
        raise SystemExit(2)


def _is_store_problem(exc: LeadkitError | None) -> bool:
    from leadkit.errors import StoreUnusable

    return isinstance(exc, StoreUnusable) or (exc is not None and "schema version" in exc.message)


# ------------------------------------------------------------------------------------------------ lab
#: Mode of the Lab's copies of leadkit's notebooks: read-only, so the Lab opens them read-only.
READ_ONLY_FILE = 0o444


def lab_root(ws: Any) -> Path:
    """The Lab's root folder: the workspace, with `notebooks/` in it holding read-only copies (mode 0444) of
    leadkit's notebooks, refreshed from the installed ones at each start, so the file browser reaches both the
    notebooks and the executed ones (`<run id>/<client id>.ipynb`) and no save in the Lab reaches the installed
    notebooks. Other files in `notebooks/` (an analyst's own copies) are left as they are."""
    import shutil

    from leadkit.resources import notebooks_dir

    folder = ws.home / "notebooks"
    installed = notebooks_dir()
    try:
        if folder.is_symlink():  # what earlier versions made: a link into the installed notebooks
            folder.unlink()
        folder.mkdir(exist_ok=True)
        for source in sorted(installed.glob("*.ipynb")):
            copy = folder / source.name
            if copy.is_file() and not copy.is_symlink() and copy.read_bytes() == source.read_bytes():
                copy.chmod(READ_ONLY_FILE)
                continue
            if copy.is_symlink() or copy.exists():
                copy.unlink()
            shutil.copyfile(source, copy)
            copy.chmod(READ_ONLY_FILE)
    except OSError as exc:
        raise ConfigError(
            f"cannot copy leadkit's notebooks ({installed}) into {folder}: {exc.strerror or exc}",
            hint="The Lab serves the workspace: make it writable, or open the notebooks in "
            f"{installed} with your own Jupyter.",
        ) from None
    return ws.home


def lab_command(
    ws: Any, *, port: int, token: str, root: Path | None = None, open_browser: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The JupyterLab command line and environment: loopback only, rooted in the workspace, with the workspace's
    settings (and secrets) in the environment every kernel inherits, never in a notebook."""
    from leadkit.batch import kernel_env

    env = {**os.environ, **kernel_env(ws.settings, ws, ws.home / "lab.log.jsonl"), "JUPYTER_TOKEN": token}
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root or lab_root(ws)}",
    ]
    if not open_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    return argv, env


def lab_url(port: int, token: str) -> str:
    return f"http://127.0.0.1:{port}/lab?token={token}"


@app.command()
def lab(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 8888,
    token: Annotated[
        str | None, typer.Option(help="Access token for the Lab (default: JUPYTER_TOKEN, or a random one).")
    ] = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")] = False,
) -> None:
    """Start JupyterLab on loopback in the workspace: read-only copies of leadkit's notebooks in notebooks/
    (Save Notebook As... makes an editable one), executed notebooks in each run's folder, the workspace's
    settings in the kernels' environment. Prints the URL with its token; a taken port is exit 2."""
    from leadkit.ports import ensure_port_free

    ws = _workspace()
    try:
        ensure_port_free("127.0.0.1", port, option="--port", what="JupyterLab")
    except ConfigError:
        ws.close()
        raise
    chosen = token or os.environ.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
    try:
        argv, env = lab_command(ws, port=port, token=chosen, open_browser=browser)
    finally:
        ws.close()
    typer.echo(f"JupyterLab for the workspace {ws.home}")
    typer.echo(
        "notebooks/ holds read-only copies of leadkit's notebooks (refreshed at each start; batches run the "
        "installed ones); for an editable copy use File > Save Notebook As... in the Lab, or "
        f"`cp {ws.home / 'notebooks' / 'client_health.ipynb'} {ws.home / 'my_client_health.ipynb'}` "
        "and make it writable (chmod u+w)"
    )
    typer.echo(f"open: {lab_url(port, chosen)}")
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
