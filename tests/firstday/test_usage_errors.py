"""No input makes the CLI print a traceback: every command (found by walking the Typer app, so commands added later
are covered too) with an unknown option, a missing argument and a bad value exits 2 with one error line and the
usage line; an unexpected exception exits 1 with one line and the path of its traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from leadkit.cli import app, run


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield (*path, name), command
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _required_arguments(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "argument" and p.required]


def _is_int(param: Any) -> bool:
    import typing

    if hasattr(param, "type_descriptor"):  # typer >= 0.25
        annotation = param.type_descriptor.annotation
        return annotation is int or int in typing.get_args(annotation)
    return getattr(getattr(param, "type", None), "name", "") == "integer"


def _int_option(command: Any) -> str | None:
    for p in command.params:
        if p.param_type_name == "option" and _is_int(p) and not p.is_flag:
            return str(p.opts[0])
    return None


def check_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert "Traceback" not in out + err, argv
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and expect.lower() in lines[0].lower(), (argv, err)
    assert lines[1].startswith("Usage: leadkit " + " ".join(argv[: len(argv) - 1]).split(" --")[0].strip()), err
    assert len(lines) == 2, err


def test_the_app_has_the_commands_of_every_module() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {
        "init",
        "demo",
        "batch",
        "doctor",
        "backup",
        "lab",
        "clients import",
        "clients set",
        "leads export",
    } <= names
    assert len(names) >= 30


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_unknown_option(path: tuple[str, ...], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    check_usage_error(capsys, [*path, "--no-such-option"], "No such option")


@pytest.mark.parametrize(
    "path", [p for p, c in COMMANDS if _required_arguments(c) and not getattr(c, "commands", None)], ids=" ".join
)
def test_missing_argument(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    check_usage_error(capsys, [*path], "Missing argument")


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if _int_option(c)], ids=" ".join)
def test_bad_number(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    command = dict(COMMANDS)[path]
    args = ["x"] * len(_required_arguments(command))
    check_usage_error(capsys, [*path, *args, _int_option(command) or "", "not-a-number"], "Invalid value")


def test_groups_without_a_command_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No such command 'no-such-command'") and "Usage: leadkit" in err
    assert run(["leads", "nope"]) == 2 and "Traceback" not in capsys.readouterr().err
    assert run(["leads"]) == 2  # a group without its command shows its help
    shown = capsys.readouterr()
    assert "export" in shown.out + shown.err and "Traceback" not in shown.out + shown.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"leadkit {version('leadkit')}"


def test_unexpected_error_is_one_line_and_a_log(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import leadkit.cli.core as core

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(core, "_workspace", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert run(["runs"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: unexpected RuntimeError: disk on fire; the traceback is in ")
    log = Path(err.strip().rsplit(" ", 1)[1])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "boom" in log.read_text()


def test_the_script_exits_2_on_a_usage_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "leadkit.cli", "show"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Missing argument" in done.stderr
