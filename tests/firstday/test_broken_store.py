"""A store that fails safely: each broken SQLite store (truncated, text, zero bytes, locked, read-only) gives one
clear message naming the file, what is wrong and the fix, exit 2, and changes nothing; reading commands work on a
read-only workspace; a backup restores."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadkit.cli import run
from leadkit.store.sqlite import files as sqlite_store
from leadkit.workspace import Workspace

COMMANDS = {
    "reading": ["runs"],
    "writing": ["clients", "add", "Vandelay", "--name", "Vandelay"],
    "doctor": ["doctor"],
    "dashboard": ["dashboard", "--port", "0"],
}
BREAKS = {
    "truncated": "is truncated",
    "text": "is not a SQLite database",
    "zero-bytes": "is empty (0 bytes)",
}


def snapshot(home: Path) -> dict[str, str]:
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(home.rglob("*"))
    }


@pytest.fixture
def closed_workspace(workspace: Workspace) -> Path:
    workspace.records.start_run()
    workspace.close()  # the last connection checkpoints the WAL: the data is in leadkit.sqlite
    return workspace.home


def break_store(master: Path, how: str) -> None:
    if how == "truncated":
        data = master.read_bytes()
        master.write_bytes(data[: len(data) // 2 + 100])
    elif how == "text":
        master.write_text("client_id,name\nAcme-Co,Acme\n")
    elif how == "zero-bytes":
        master.write_bytes(b"")


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_broken_store_files(
    closed_workspace: Path, how: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    master = closed_workspace / "leadkit.sqlite"
    break_store(master, how)
    before = snapshot(closed_workspace)
    for kind, argv in COMMANDS.items():
        code = run(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, (kind, out, err)
        text = out + err
        assert code == 2, (how, kind, text)
        assert str(master) in text and BREAKS[how] in text, (how, kind, text)
        assert "backup" in text, (how, kind, text)  # the fix: restore from a backup
        assert snapshot(closed_workspace) == before, (how, kind)


def test_a_broken_client_base(closed_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = closed_workspace / "bases" / "Acme-Co.sqlite"
    base.write_bytes(b"\0" * 4096)
    before = snapshot(closed_workspace)
    assert run(["leads", "list", "Acme-Co"]) == 2
    err = capsys.readouterr().err
    assert f"the store {base} is not a SQLite database" in err and "Traceback" not in err
    assert run(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "FAIL  store:bases/Acme-Co.sqlite" in out
    assert snapshot(closed_workspace) == before


def test_a_garbled_page_is_found_by_the_doctor(closed_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master = closed_workspace / "leadkit.sqlite"
    data = bytearray(master.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : page * 3] = b"\xa5" * (page * 2)  # pages 2 and 3: the header still looks right
    master.write_bytes(bytes(data))
    assert run(["doctor"]) == 2
    out = capsys.readouterr().out
    assert f"the store {master} is corrupt" in out and "Traceback" not in out


@pytest.fixture
def locked(closed_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Another process's connection holds an exclusive lock on the store."""
    monkeypatch.setattr(sqlite_store, "OPEN_BUSY_TIMEOUT_S", 0.5)
    master = closed_workspace / "leadkit.sqlite"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(master)!r}, isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode = EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute('CREATE TABLE IF NOT EXISTS _lock_probe (x)')\n"
            "print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    yield master
    holder.kill()
    holder.wait()


def test_a_locked_store(locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = locked.parent
    before = snapshot(home)
    for kind, argv in COMMANDS.items():
        code = run(argv)
        out, err = capsys.readouterr()
        text = out + err
        assert code == 2 and "Traceback" not in text, (kind, text)
        assert f"the store {locked} is locked by another process" in text, (kind, text)
    assert snapshot(home) == before


READ_ONLY = 'mount --bind {home} {home} && mount -o remount,bind,ro {home} && exec "$@"'


def in_read_only_workspace(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run leadkit in a mount namespace where the workspace is mounted read-only (root cannot write it either)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare is needed to mount the workspace read-only")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
    env["LEADKIT_HOME"] = str(home)
    script = READ_ONLY.format(home=home)
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "leadkit.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_read_only_workspace(closed_workspace: Path) -> None:
    before = snapshot(closed_workspace)
    runs = in_read_only_workspace(closed_workspace, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    assert '"status": "Running"' in runs.stdout
    listed = in_read_only_workspace(closed_workspace, "leads", "list", "Acme-Co")
    assert listed.returncode == 0 and "Lead 1 of Acme Co" in listed.stdout, listed.stderr
    writing = in_read_only_workspace(closed_workspace, "clients", "add", "Vandelay", "--name", "Vandelay")
    assert writing.returncode == 2 and "Traceback" not in writing.stderr
    assert f"the store {closed_workspace / 'leadkit.sqlite'} is read-only" in writing.stderr, writing.stderr
    doctor = in_read_only_workspace(closed_workspace, "doctor")
    assert doctor.returncode == 2 and "Traceback" not in doctor.stdout + doctor.stderr
    assert "not writable" in doctor.stdout and "ok    store: " in doctor.stdout
    assert "and 8 client base(s) are sound" in doctor.stdout
    assert snapshot(closed_workspace) == before


def test_backup_and_restore(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from leadkit.models import Client

    run_ = workspace.records.start_run()  # the workspace stays open: its writes are still in the -wal file
    workspace.store.save_client(Client("Vandelay", "Vandelay"))
    assert (workspace.home / "leadkit.sqlite-wal").stat().st_size > 0
    dest = tmp_path / "backup"
    assert run(["backup", str(dest)]) == 0
    assert "backed up 9 file(s)" in capsys.readouterr().out
    assert not list(dest.rglob("*-wal"))  # each copy is one self-contained file
    assert run(["backup", str(dest)]) == 2  # not over an existing backup
    capsys.readouterr()
    expected_leads = len(workspace.store.lead_base(workspace.store.get_client("Acme-Co")).list_leads())
    workspace.close()

    (workspace.home / "leadkit.sqlite").write_bytes(b"")  # disaster
    for stale in workspace.home.glob("leadkit.sqlite-*"):
        stale.unlink()
    shutil.copy2(dest / "leadkit.sqlite", workspace.home / "leadkit.sqlite")  # the README's restore
    for base in (dest / "bases").iterdir():
        shutil.copy2(base, workspace.home / "bases" / base.name)
    restored = Workspace.open(workspace.home, settings=workspace.settings, read_only=True)
    try:
        assert restored.store.get_run(run_.run_id) is not None
        assert "Vandelay" in {c.client_id for c in restored.store.list_clients()}
        acme = restored.store.get_client("Acme-Co")
        assert len(restored.store.lead_base(acme).list_leads()) == expected_leads
    finally:
        restored.close()
    with sqlite3.connect(dest / "leadkit.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_write_lock_is_not_held_by_a_concurrent_reader(workspace: Workspace) -> None:
    """Reading commands open read-only: a batch keeps writing while one reads."""
    reader = Workspace.open(workspace.home, settings=workspace.settings, read_only=True)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(20):
                workspace.records.start_run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    for _ in range(20):
        reader.store.list_runs(limit=5)
    thread.join()
    reader.close()
    assert not errors
