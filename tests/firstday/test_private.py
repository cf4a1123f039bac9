"""A workspace you can trust, with the real `leadkit` command in a subprocess: private by default, doctor says
what is open, the dashboard's login is not on the command line and an open dashboard is not served by accident,
crash logs keep no secret, backups hold every database and restore, CSV fields keep what is inside their
quotes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from leadkit.backup import databases
from leadkit.crashlog import redact_argv, write_crash_log
from leadkit.csvfiles import read_csv
from leadkit.doctor import check_private

TOKEN = "apify_api_CnryCrash7Q2mZ4wL8vR3"
PASSWORD = "Cnry-horse-battery-42"


def leadkit(*argv: str, cwd: Path, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadkit.cli", *argv],
        cwd=cwd,
        env=env if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=300,
        **kw,  # type: ignore[arg-type]
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADKIT_", "APIFY_", "AIRTABLE_"))}
    env.update(extra)
    return env


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_the_workspace_private_and_doctor_warns_when_it_is_not(tmp_path: Path) -> None:
    os.umask(0o022)  # a usual login umask: what leadkit must not rely on
    home = tmp_path / "agency"
    done = leadkit("init", "--home", str(home), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert mode(home) == 0o700 and mode(home / ".env") == 0o600
    assert not mode(home / "leadkit.sqlite") & stat.S_IROTH
    shared = tmp_path / "shared"
    assert leadkit("init", "--home", str(shared), "--group", cwd=tmp_path).returncode == 0
    assert mode(shared) == 0o750 and mode(shared / ".env") == 0o600

    (home / ".env").chmod(0o644)
    home.chmod(0o755)
    checks = {c.name: c.to_dict() for c in check_private(home)}  # what `leadkit doctor` adds to its workspace check
    assert checks["workspace:.env"]["level"] == "warn" and checks["workspace:.env"]["hint"] == f"chmod 600 {home}/.env"
    assert checks["workspace:mode"]["level"] == "warn" and f"chmod 700 {home}" in checks["workspace:mode"]["hint"]


def test_doctor_warns_about_alerts_nobody_receives_and_fails_a_channel_apprise_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADKIT_ALERT_URLS", raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "agency"
    assert leadkit("init", "--home", str(home), cwd=tmp_path).returncode == 0
    env = _env(LEADKIT_HOME=str(home))
    assert leadkit("clients", "add", "Hooli", "--name", "Hooli", cwd=tmp_path, env=env).returncode == 0
    checks = _alert_checks(home)
    assert checks["alerts"]["level"] == "ok"  # no batch yet: nothing to warn about
    code = (
        "from leadkit.workspace import Workspace\n"
        "from leadkit.models import ClientRunStatus, Source\n"
        "from leadkit.runids import RunId\n"
        "from leadkit.alerts import after_batch\n"
        "ws = Workspace.open()\n"
        "run = ws.records.start_run()\n"
        "rec = ws.records.open_many(RunId.parse(run.run_id), ['Hooli'], Source.BATCH)[0]\n"
        "ws.records.update(rec, status=ClientRunStatus.FAILED, reason='Apify answered 502')\n"
        "run = ws.records.finish_run(run)\n"
        "print(len(after_batch(ws, run, ws.store.list_client_runs(run_id=run.run_id))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "1", done.stderr  # recorded, with no channel
    checks = _alert_checks(home)
    assert checks["alerts"]["level"] == "warn" and "recorded with no channel" in checks["alerts"]["detail"]
    assert "LEADKIT_ALERT_URLS" in checks["alerts"]["hint"]

    with (home / ".env").open("a", encoding="utf-8") as fh:
        fh.write(f"LEADKIT_ALERT_URLS=bogus://{TOKEN}@example.com\n")
    doctor = leadkit("doctor", "--json", cwd=tmp_path, env=env)
    assert doctor.returncode == 2 and TOKEN not in doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["alerts"]["level"] == "fail" and "Apprise cannot use the channel" in checks["alerts"]["detail"]


def _alert_checks(home: Path) -> dict[str, dict[str, object]]:
    """What `leadkit doctor` reports about alerts for the workspace at `home` (its alert check, in-process: the
    full doctor imports every dependency in a subprocess, which the last step of the test runs once)."""
    from leadkit.doctor import check_alerts
    from leadkit.workspace import Workspace

    ws = Workspace.open(home, read_only=True)
    try:
        return {c.name: c.to_dict() for c in check_alerts(ws)}
    finally:
        ws.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_refuses_an_open_non_loopback_address_and_takes_its_login_from_the_workspace_env(
    tmp_path: Path,
) -> None:
    home = tmp_path / "agency"
    assert leadkit("init", "--home", str(home), cwd=tmp_path).returncode == 0
    env = _env(LEADKIT_HOME=str(home))
    refused = leadkit("dashboard", "--address", "0.0.0.0", "--port", "0", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "--no-login" in refused.stderr and "LEADKIT_DASHBOARD_AUTH" in refused.stderr

    with (home / ".env").open("a", encoding="utf-8") as fh:
        fh.write(f"LEADKIT_DASHBOARD_AUTH=ops:{PASSWORD}\n")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "leadkit.cli", "dashboard", "--port", str(port), "--refresh", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                first = httpx.get(f"http://127.0.0.1:{port}/?view=runs", follow_redirects=False, timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    server.stderr.read() if server.stderr else ""
                )
                time.sleep(0.5)
        assert first.status_code == 302 and "login" in first.headers["location"]
        assert "next=%2F%3Fview%3Druns" in first.headers["location"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=30) as client:
            client.get("/login", params={"next": "/?view=runs"})
            bad = client.post("/login", data={"username": "ops", "password": "wrong"})
            assert "error" in bad.headers["location"]
            good = client.post("/login", data={"username": "ops", "password": PASSWORD})
            assert good.status_code == 302 and good.headers["location"] == "/?view=runs"
            assert client.get("/?view=runs").status_code == 200
        assert PASSWORD not in " ".join(_cmdline(server.pid))
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert PASSWORD not in out + err and "log in with the LEADKIT_DASHBOARD_AUTH user" in out

    with socket.socket() as taken:  # a port already in use: the command warns, then cannot listen, and ends
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        loud = leadkit("dashboard", "--port", busy, "--basic-auth", f"ops:{PASSWORD}", cwd=tmp_path, env=env)
    assert loud.returncode == 2 and "visible to every user of this host" in loud.stderr


def _cmdline(pid: int) -> list[str]:
    import psutil

    return psutil.Process(pid).cmdline()


def test_crash_log_is_private_names_itself_and_keeps_no_secret_argument(tmp_path: Path) -> None:
    argv = [
        "sandbox",
        "--token",
        TOKEN,
        f"--basic-auth=ops:{PASSWORD}",
        f"--store=https://leadkit:{PASSWORD}@example.com/x?api_key={TOKEN}&page=2",
        "--port",
        "8080",
    ]
    assert redact_argv(argv)[:3] == ["sandbox", "--token", "***"] and redact_argv(argv)[-2:] == ["--port", "8080"]
    try:
        raise RuntimeError(f"boom while fetching https://user:{PASSWORD}@example.com/")
    except RuntimeError as exc:
        path = write_crash_log(exc, argv, tmp_path / "leadkit-error-test.log")
    text = path.read_text(encoding="utf-8")
    assert mode(path) == 0o600
    assert text.splitlines()[0] == f"leadkit crash log: {path}"
    assert (
        "leadkit sandbox --token *** --basic-auth=*** --store=https://leadkit:***@example.com/x?api_key=***&page=2"
        in text
    )
    assert "RuntimeError: boom" in text
    assert TOKEN not in text and PASSWORD not in text


def test_backup_copies_every_database_the_archive_included_and_restore_brings_them_back(tmp_path: Path) -> None:
    from leadkit.store.airtable.archive import ARCHIVE_FILE, Archive, archived_tables

    home = tmp_path / "agency"
    assert leadkit("init", "--home", str(home), cwd=tmp_path).returncode == 0
    env = _env(LEADKIT_HOME=str(home))
    assert leadkit("clients", "add", "Hooli", "--name", "Hooli Inc", cwd=tmp_path, env=env).returncode == 0
    archive = Archive(home / ARCHIVE_FILE)
    spec = archived_tables()[0]
    archive.put("appCANARYbase0001", spec, [{"id": "recArchived000001", "createdTime": "", "fields": {"x": 1}}])
    archive.close()
    assert {p.name for p in databases(home)} >= {"leadkit.sqlite", ARCHIVE_FILE}

    dest = tmp_path / "backup"
    done = leadkit("backup", str(dest), "--json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (dest / ARCHIVE_FILE).is_file() and mode(dest) == 0o700
    assert all(not mode(p) & (stat.S_IRGRP | stat.S_IROTH) for p in databases(dest))

    restored = tmp_path / "restored"
    done = leadkit("restore", str(dest), "--home", str(restored), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    clients = leadkit("clients", "--json", cwd=tmp_path, env=_env(LEADKIT_HOME=str(restored)))
    assert [c["client_id"] for c in json.loads(clients.stdout)] == ["Hooli"]
    back = Archive(restored / ARCHIVE_FILE)
    try:
        assert back.verify("appCANARYbase0001", spec, [{"id": "recArchived000001", "fields": {"x": 1}}]) == []
    finally:
        back.close()
    again = leadkit("restore", str(dest), "--home", str(restored), cwd=tmp_path, env=env)
    assert again.returncode == 2 and "not an empty folder" in again.stderr  # never over a workspace


@pytest.mark.parametrize(
    "inside", ["line one\nline two", "a\u2028b", "a\u2029b", "a\x0cb", "a\x0bb", "a\x1cb", "a\x85b"]
)
def test_csv_fields_keep_line_breaks_and_separators_inside_their_quotes(tmp_path: Path, inside: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        f'profile_url,name,company\r\nhttps://www.linkedin.com/in/ann,"{inside}",Acme\r\n'
        "https://www.linkedin.com/in/bob,Bob,Globex\r\n",
        encoding="utf-8",
    )
    table = read_csv(path, required=("profile_url",))
    assert [row["name"] for _, row in table.rows] == [inside, "Bob"]
