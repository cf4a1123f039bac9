"""An agency-sized workspace: 1,000 clients (each with its own lead base), 3,000 ClientRuns with events, 150
failures. The dashboard runs in its own process under a limit of 1,024 open files (`resource.setrlimit` before
exec), driven by Chromium: every view shows the right counts, the Client health view of 1,000 clients leaves the
server answering, and a client whose base cannot be opened shows its error in its own row. `leadkit health` and a
dry-run batch run under the same limit.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CLIENTS = 1000
RUNS = 3
ACTIVE = 2  # only these are run by the dry-run batch: the batch still reads every client
BROKEN = "A-Broken-Co"  # sorts first: its base file is not a database
ALERTS = 60  # more than one page (25 rows) of the Alerts history
OPEN_FILES = 1024


@dataclass
class Agency:
    home: Path
    run_ids: list[str]
    failed_latest: int  # clients whose latest ClientRun failed
    week_rate: str
    env: dict[str, str]


def ids_newest_alert() -> str:
    """The client of the newest alert `build` adds."""
    return f"Acme-Co-{ALERTS - 1:04d}"


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def build(home: Path) -> Agency:
    from leadkit.config import get_settings
    from leadkit.models import Alert, Client, NewLead
    from leadkit.store.codecs import ts
    from leadkit.workspace import Workspace

    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    ws = Workspace.create(home, settings=settings)
    ids = [BROKEN] + [f"Acme-Co-{i:04d}" for i in range(CLIENTS - 1)]
    for n, client_id in enumerate(ids):
        ws.store.save_client(
            Client(
                client_id,
                client_id,
                status="Active" if 0 < n <= ACTIVE else "Paused",
                service_level=2,
                post_access=True,
                daily_target=10,
                batch_size=5,
            )
        )
    first_alert = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=ALERTS)
    ws.store.add_alerts(
        [
            Alert(
                "failure",
                f"upstream: Apify returned <n> ({k})",
                f"{ids[k + 1]} failed",
                f"{ids[k + 1]} failed: Apify returned 502",
                "json://127.0.0.1:8025",
                True,
                clients=[ids[k + 1]],
                message_id=f"m-{k}",
                at=first_alert + timedelta(hours=k),
            )
            for k in range(ALERTS)
        ]
    )
    template = ws.store.lead_base(ws.store.get_client(ids[1]))
    template.import_leads([NewLead(f"https://www.linkedin.com/in/lead-{k}/", f"Lead {k}") for k in range(3)])
    ws.close()
    bases = home / "bases"
    for client_id in ids[2:]:
        shutil.copyfile(bases / f"{ids[1]}.sqlite", bases / f"{client_id}.sqlite")
    (bases / f"{BROKEN}.sqlite").write_bytes(b"this is not a database " * 100)
    now = datetime.now(UTC).replace(microsecond=0)
    conn = sqlite3.connect(home / "leadkit.sqlite")
    run_ids, completed, finished, failed_latest = [], 0, 0, 0
    with conn:
        for r in range(RUNS):
            at = now - timedelta(days=2 * (RUNS - r), hours=1)
            run_id = at.strftime("%y%m%d-%H%M%S")
            run_ids.append(run_id)
            conn.execute(
                "INSERT INTO runs (run_id, status, stream, started_at, ended_at, started_by, clients_total, clients_failed, "
                "notes) VALUES (?, 'Completed with Errors', 1, ?, ?, 'test', ?, 50, '')",
                (run_id, ts(at), ts(at + timedelta(minutes=5)), CLIENTS),
            )
            rows, events, failures = [], [], []
            for c, client_id in enumerate(ids):
                status = "Failed" if c % 20 == r else "Completed"
                finished += 1
                completed += status == "Completed"
                failed_latest += status == "Failed" and r == RUNS - 1
                failure = None
                if status == "Failed":
                    failure = {
                        "category": "upstream",
                        "fingerprint": f"upstream: Apify returned <n> (run {r})",
                        "message": f"Apify returned 502 (run {r})",
                        "hint": "retry",
                        "run_id": run_id,
                        "client_id": client_id,
                        "stage": "harvest",
                        "at": ts(at),
                        "notebook": None,
                        "cell": None,
                        "traceback": None,
                    }
                    failures.append(failure)
                rows.append(
                    (
                        run_id,
                        client_id,
                        client_id,
                        "batch",
                        status,
                        ts(at),
                        ts(at),
                        ts(at),
                        "{}",
                        None,
                        "",
                        json.dumps(failure) if failure else None,
                    )
                )
                events.append((run_id, client_id, "records", "opened", "", '{"opens_batch": 1}', ts(at)))
            conn.executemany(
                "INSERT INTO client_runs (run_id, client_id, client_name, source, status, started_at, ended_at, "
                "heartbeat_at, metrics, notebook, reason, failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO events (run_id, client_id, stage, kind, message, metrics, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                events,
            )
            conn.executemany(
                "INSERT INTO failures (run_id, client_id, stage, category, fingerprint, message, hint, at) VALUES "
                "(:run_id, :client_id, :stage, :category, :fingerprint, :message, :hint, :at)",
                failures,
            )
    conn.close()
    env = {**os.environ, "LEADKIT_HOME": str(home), "LEADKIT_STORE": ""}
    return Agency(home, run_ids, failed_latest, f"{100 * completed / finished:.0f}%", env)


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agency]:
    home = tmp_path_factory.mktemp("agency")
    yield build(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def server(agency: Agency) -> Iterator[tuple[subprocess.Popen[str], str]]:
    cmd = [str(Path(sys.executable).parent / "leadkit"), "dashboard", "--port", "0", "--refresh", "0"]
    proc = subprocess.Popen(
        cmd, env=agency.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_files
    )
    assert proc.stdout is not None
    url = ""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not url:
        line = proc.stdout.readline()
        if match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
            url = match.group(1)
        elif proc.poll() is not None:
            break
    if not url:
        proc.kill()
        pytest.fail(f"the dashboard did not start: {proc.stderr.read() if proc.stderr else ''}")
    yield proc, url
    proc.terminate()
    proc.wait(10)


def _page(browser: Any, errors: list[str]) -> Any:
    """A new page whose console errors and uncaught page errors (unfiltered) are appended to `errors`."""
    page = browser.new_page()
    page.on("console", lambda msg: errors.append(f"console error: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc.message}\n{exc.stack or ''}"))
    return page


def _open(browser: Any, url: str, table: str, errors: list[str]) -> Any:
    page = _page(browser, errors)
    page.goto(url)
    page.locator(f"{table} .tabulator-row").first.wait_for(state="visible", timeout=180_000)
    return page


def _numbers(page: Any, css: str, key: str) -> dict[str, str]:
    """The key-value cards `css` shows, once they show `key` (a loaded machine may take long)."""
    deadline = time.monotonic() + 180
    while True:
        keys = page.locator(f"{css} .lk-k").all_inner_texts()
        values = page.locator(f"{css} .lk-v").all_inner_texts()
        if key in keys or time.monotonic() > deadline:
            return dict(zip(keys, values, strict=True))
        time.sleep(0.2)


def test_every_view_shows_the_right_counts_under_1024_open_files(
    agency: Agency, server: tuple[subprocess.Popen[str], str], browser: Any
) -> None:
    proc, url = server
    errors: list[str] = []  # any browser error on any page fails the test
    health = _open(browser, f"{url}?view=health", ".lk-health-table", errors)
    first = health.locator(".lk-health-table .tabulator-row").first
    assert BROKEN in first.inner_text() and "leads cannot be read" in first.inner_text()
    assert f"{BROKEN}.sqlite is not a SQLite database" in first.inner_text()
    health.close()

    overview = _open(browser, f"{url}?view=overview", ".lk-latest-runs", errors)  # still answering after Client health
    numbers = _numbers(overview, ".lk-numbers", "Failing clients")
    assert "Runs, last 7 days" in numbers, numbers
    assert numbers["Runs, last 7 days"] == str(RUNS)
    assert numbers["Client success rate (7 days)"] == agency.week_rate
    assert numbers["Failing clients"] == str(agency.failed_latest)
    overview.close()

    runs = _open(browser, f"{url}?view=runs", ".lk-runs-table", errors)
    assert runs.locator(".lk-total").inner_text() == f"{RUNS} runs"
    runs.close()

    drill = _open(browser, f"{url}?view=run&run={agency.run_ids[-1]}", ".lk-run-clients", errors)
    summary = _numbers(drill, ".lk-run-summary", "Clients")
    assert "Clients" in summary, summary
    assert summary["Clients"] == str(CLIENTS) and summary["Failed"] == str(agency.failed_latest)
    drill.close()

    failures = _open(browser, f"{url}?view=failures", ".lk-failures-table", errors)
    rows = failures.locator(".lk-failures-table .tabulator-row").all_inner_texts()
    assert len(rows) == RUNS and all(str(CLIENTS // 20) in row for row in rows)  # 50 failures in each group
    failures.close()

    alerts = _open(browser, f"{url}?view=alerts", ".lk-alert-history", errors)
    shown = alerts.locator(".lk-alert-history .tabulator-row").all_inner_texts()
    assert len(shown) == 25, len(shown)  # one page of the history, newest first
    assert f"{ids_newest_alert()} failed" in shown[0], shown[0]
    alerts.close()

    auth = _page(browser, errors)
    auth.goto(f"{url}?view=auth")
    auth.get_by_text("Latest result per credential").wait_for(timeout=60_000)
    auth.close()
    assert errors == [], f"browser errors: {errors}"
    assert proc.poll() is None
    open_now = len(os.listdir(f"/proc/{proc.pid}/fd"))
    assert open_now < 300, open_now  # bounded: not one connection per client base


def test_health_and_a_dry_run_batch_under_1024_open_files(agency: Agency) -> None:
    leadkit = str(Path(sys.executable).parent / "leadkit")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [leadkit, *args], env=agency.env, capture_output=True, text=True, timeout=600, preexec_fn=_limit_files
        )

    healthy = run("health", "Acme-Co-0500", "--json")
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["leads_by_status"] == {"(blank)": 3}
    broken = run("health", BROKEN, "--json")  # the report names the base's error instead of failing
    assert broken.returncode == 0, broken.stderr
    assert f"{BROKEN}.sqlite is not a SQLite database" in json.loads(broken.stdout)["lead_base_error"]["message"]
    batch = run("batch", "--dry-run", "--workers", "1", "--json")
    assert batch.returncode == 0, batch.stderr[-2000:]
    assert len(json.loads(batch.stdout)["clients"]) == ACTIVE
