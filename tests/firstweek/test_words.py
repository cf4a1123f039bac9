"""Words: hints that add to the message, settings said as words, an already-paused client said so, a taken port
named with the option that changes it, and summaries that wrap instead of cutting."""

from __future__ import annotations

import socket

import pytest

from leadkit.cli import run
from leadkit.words import plural, table_lines
from leadkit.workspace import Workspace


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["clients", "set", "Globex", "--daily-target", "abc"], "clients set"),
        (["batch", "--stages", "nope"], "batch"),
        (["leads", "list", "Globex", "--status", "Nope"], "leads list"),
    ],
)
def test_a_bad_input_hint_says_what_the_message_did_not(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], argv: list[str], command: str
) -> None:
    code, _, err = cli(capsys, *argv)
    message, hint = (line.split(": ", 1)[1] for line in err.strip().splitlines()[-2:])
    assert code == 2
    assert "the message names it" not in hint
    assert "Nothing was changed" in hint and f"`leadkit {command} --help`" in hint
    assert not set(hint.lower().split()) >= set(message.lower().split())


def test_settings_changes_are_said_in_words(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "clients", "pause", "Globex")
    assert code == 0 and out.strip() == "updated client Globex: status=Paused (was Active)"
    code, out, _ = cli(capsys, "clients", "pause", "Globex")
    assert code == 0 and out.strip() == "client Globex: already status=Paused; nothing changed"
    code, out, _ = cli(capsys, "clients", "set", "Globex", "--post-access", "no", "--status", "Paused")
    assert out.strip() == "updated client Globex: post_access=no (was yes); already status=Paused"
    assert "False" not in out and "True" not in out
    assert workspace.store.get_client("Globex").post_access is False


def test_sandbox_on_a_taken_port_is_a_clear_error(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = cli(capsys, "sandbox", "--airtable-port", str(port), "--apify-port", "0")
    assert code == 2
    assert f"port {port} on 127.0.0.1 is taken" in err and "--airtable-port" in err
    assert "unexpected" not in err and "traceback" not in err


def test_a_long_reason_wraps_between_words_and_keeps_every_word() -> None:
    why = "Apify answered 404 for http://127.0.0.1:41699/v2/acts/harvestapi~linkedin-profile-posts/runs; " * 3
    lines = table_lines([{"client": "Globex", "why": why}], ["client", "why"], wrap={"why": 40})
    assert len(lines) > 3 and all(len(line) <= len("Globex  ") + 40 for line in lines[2:])
    parts = [line[len("Globex  ") :].strip() for line in lines[2:]]
    assert "".join("".join(parts).split()) == "".join(why.split())  # nothing cut off
    tokens = " ".join(parts).split()
    assert all(word in tokens for word in why.split() if len(word) <= 40)  # words broken only when too long
    assert plural(1, "batch") == "1 batch" and plural(2, "batch") == "2 batches"
    assert plural(1, "credential") == "1 credential" and plural(0, "credential") == "0 credentials"
