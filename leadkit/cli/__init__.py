"""The `leadkit` command. Each module of this package adds its commands to the one Typer app.

`run(argv)` is the command with every outcome turned into an exit code, and no traceback ever reaches the user:

- a usage error (missing argument, unknown option or command, bad value) prints one line saying what was wrong and
  the command's usage line, exit 2;
- a leadkit error prints its message and hint, exit with its code (2 for configuration, auth and bad input);
- anything unexpected prints one line and the path of a log file holding the traceback, exit 1.

Typer vendors its own copy of click (`typer._click`, whose exceptions are not click's); both are caught.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import typer

from leadkit.cli.app import app
from leadkit.errors import HINTS, Category, LeadkitError

COMMAND_MODULES = ["core", "workspacecmd", "batchcmd", "airtable", "diagnose", "dashboard", "alertscmd"]


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            import_module(f"leadkit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"leadkit.cli.{name}":
                raise


_load_commands()

__all__ = ["app", "main", "run"]


def _click_modules() -> list[Any]:
    """The click exception modules in use: typer's vendored copy (typer >= 0.24) and click itself, if present."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(import_module(name))
        except ImportError:
            continue
    return found


def _classes(attr: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, attr) for m in _click_modules() if hasattr(m, attr))


def _usage_error(exc: Any) -> int:
    """One line saying what was wrong, then the command's usage line."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help(), err=True)
        return 2
    typer.echo(f"error: {exc.format_message()}", err=True)
    if ctx is not None:
        usage = ctx.get_usage().strip()
        typer.echo(f"{usage}  (`{ctx.command_path} --help` for more)", err=True)
    return 2


def _unexpected(exc: BaseException) -> int:
    from leadkit.config import scrub
    from leadkit.crashlog import write_crash_log

    try:
        where = write_crash_log(exc, sys.argv[1:])
        saved = f"the traceback is in {where}"
    except OSError as write_error:
        saved = f"the traceback could not be saved ({write_error.strerror or write_error})"
    message = scrub(str(exc)) or "(no message)"
    typer.echo(f"error: unexpected {type(exc).__name__}: {message.splitlines()[0]}; {saved}", err=True)
    return 1


#: Command groups: their subcommand is part of the command's name.
_GROUPS = {"clients", "leads", "airtable", "failures", "alerts"}


def _hint(exc: LeadkitError, args: Sequence[str]) -> str:
    """The error's hint; bad input with only the general hint gets the command whose `--help` lists what it
    accepts (the message already names the input and what is accepted)."""
    if exc.hint != HINTS[exc.category] or exc.category is not Category.DATA:
        return exc.hint
    words = [a for a in args[:2] if not a.startswith("-")]
    command = " ".join(words[:2] if words and words[0] in _GROUPS else words[:1])
    where = f"`leadkit {command} --help`" if command else "`leadkit --help`"
    return f"{exc.hint.rstrip('.')}; {where} lists every argument and option with what it accepts."


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit code; never raises."""
    args = list(sys.argv[1:] if argv is None else argv)
    click_exit = _classes("Exit")
    abort = _classes("Abort")
    usage = _classes("UsageError")
    click_error = _classes("ClickException")
    try:
        code = app(args=args, prog_name="leadkit", standalone_mode=False)
    except LeadkitError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        typer.echo(f"hint: {_hint(exc, args)}", err=True)
        return exc.exit_code
    except (typer.Exit, *click_exit) as exc:  # type: ignore[misc]
        return int(getattr(exc, "exit_code", 0) or 0)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (typer.Abort, *abort, KeyboardInterrupt):  # type: ignore[misc]
        typer.echo("aborted", err=True)
        return 130
    except usage as exc:
        return _usage_error(exc)
    except click_error as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 1))
    except BrokenPipeError:
        return 1
    except Exception as exc:
        return _unexpected(exc)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the `leadkit` script."""
    from leadkit import logs

    logs.add_stderr()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.exit(run())
