"""Benchmark: does every dashboard view stay as fast at agency size as on a small workspace?

In one run, in headless Chromium launched as in the browser tests, each workspace served by `leadkit dashboard`
in its own process:
- SQLite, large: 500 clients (each with its own lead base), 100,000 ClientRuns in 200 runs over 30 days, with
  3 events each (300,000 events), 5,000 failures and auth checks. Written with bulk SQL inserts (the bench's
  own, into the tables the store created), not through the per-record API.
- SQLite, small: the same 500 clients and one run of 500 ClientRuns (25 failures): the baseline.
- Airtable (through the sandbox, on loopback), at a smaller size: 20 clients, 1,000 ClientRuns in 50 runs
  against one run of 20, written through the API in batches of 10.
Alerts: one per failed ClientRun (5,000 on the large SQLite workspace).
For each view (Overview, Runs, a run's drill-down, Failures, Auth checks, Client health, Alerts): seconds from
navigation to the view's table showing its rows; the median of several fresh page loads after a warm-up.
The scale of a view is its large-workspace time over its small-workspace time.

The line before the last has the Airtable figures; the last line ends with
`view_scale_max=X slowest_view=NAME rss_mb=Y` (SQLite: X the largest scale of any view, Y the large dashboard
server's peak resident memory, VmHWM). Goals: X <= 1.5, Y <= 800.

One more line: `dashboard_requests_per_hour=R health_500_s=A health_1000_s=B`: R the Airtable requests per hour
of an idle dashboard (refresh 30 s) with Overview, Runs and Client health open, on the 20-client Airtable
workspace (counted by the sandbox at a 60 s sync interval over three whole sync periods, scaled to the default 900 s); A and B Client health's
read on SQLite at 500 and 1,000 clients. Goals: R <= 30, B <= 1.
Views are read once per view and filters for every tab (`dashboards.shared`): a page load within the refresh
interval of an unchanged SQLite workspace is served from that shared read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPS = 3
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BIN = Path(sys.executable).parent
DAYS = 30
FAILURE_MESSAGES = [
    ("upstream", "Apify returned 502 for run {run}"),
    ("auth", "Apify refused the token (401) for client {client}"),
    ("rate_limit", "Airtable kept answering 429 for PATCH on table 'Leads' of base {client}"),
    ("schema", "table 'Leads' has no field 'Posts Content' (422 UNKNOWN_FIELD_NAME)"),
    ("bug", "KeyError: 'linkedinUrl' in cell {n}"),
]

#: (view, query, table whose rows mark the view as shown)
VIEWS = [
    ("overview", "view=overview", ".lk-latest-runs"),
    ("runs", "view=runs", ".lk-runs-table"),
    ("run", "view=run&run={run}", ".lk-run-clients"),
    ("failures", "view=failures", ".lk-failures-table"),
    ("auth", "view=auth", ".lk-auth-history"),
    ("health", "view=health", ".lk-health-table"),
    ("alerts", "view=alerts", ".lk-alert-history"),
]


# ------------------------------------------------------------------------------------------------ workspaces
def _clients(n: int) -> list[Any]:
    from leadkit.models import Client

    return [
        Client(
            client_id=f"Acme-Co-{i:03d}",
            name=f"Acme Co {i}",
            service_level=2,
            post_access=True,
            daily_target=20,
            batch_size=5,
            max_batches=2,
        )
        for i in range(n)
    ]


def _status(i: int, client: int) -> str:
    """5% Failed (so 5,000 of 100,000), 2% with errors, 3% skipped, the rest Completed."""
    k = (i * 7919 + client * 104729) % 100
    return "Failed" if k < 5 else "Completed with Errors" if k < 7 else "Skipped" if k < 10 else "Completed"


def _add_alerts(store: Any, made: list[Any], runs: int) -> None:
    """One alert per failed ClientRun, in the store's own table (through its API, 500 at a time)."""
    from leadkit.models import Alert

    now = datetime.now(UTC).replace(microsecond=0)
    step = timedelta(days=DAYS) / runs
    alerts = [
        Alert(
            "failure",
            f"upstream: Apify returned <n> for run {r}",
            f"{client.client_id} failed",
            f"{client.client_id} failed in run {r}: Apify returned 502",
            "json://127.0.0.1:8025",
            c % 11 != 0,
            None if c % 11 else "connection refused",
            clients=[client.client_id],
            message_id=f"m-{r}-{c}",
            at=now - timedelta(days=DAYS) + step * (r + 1),
        )
        for r in range(runs)
        for c, client in enumerate(made)
        if _status(r, c) == "Failed"
    ]
    for k in range(0, len(alerts), 500):
        store.add_alerts(alerts[k : k + 500])


def build_sqlite(home: Path, clients: int, runs: int) -> str:
    """A workspace with `clients` clients and `runs` runs of every client over `DAYS` days; the newest run's ID."""
    from leadkit.config import get_settings
    from leadkit.models import AuthCheck, NewLead
    from leadkit.store.codecs import ts
    from leadkit.workspace import Workspace

    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    ws = Workspace.create(home, settings=settings)
    made = _clients(clients)
    for client in made:
        ws.store.save_client(client)
        ws.store.lead_base(client).import_leads(
            [NewLead(f"https://www.linkedin.com/in/{client.client_id.lower()}-{n}/", f"Lead {n}") for n in range(3)]
        )
    ws.store.add_auth_checks(
        [
            AuthCheck(name, k % 7 != 0, None, 200, 120.0, "", checked_at=datetime.now(UTC) - timedelta(hours=k))
            for k in range(48)
            for name in ("airtable", "apify")
        ]
    )
    _add_alerts(ws.store, made, runs)
    ws.close()
    now = datetime.now(UTC).replace(microsecond=0)
    step = timedelta(days=DAYS) / runs
    conn = sqlite3.connect(home / "leadkit.sqlite")
    newest = ""
    with conn:
        for r in range(runs):
            at = now - timedelta(days=DAYS) + step * (r + 1) - timedelta(minutes=10)
            run_id = at.strftime("%y%m%d-%H%M%S")
            newest = run_id
            rows, events, failures = [], [], []
            failed = 0
            for c, client in enumerate(made):
                status = _status(r, c)
                failure = None
                if status == "Failed":
                    failed += 1
                    category, template = FAILURE_MESSAGES[(r + c) % len(FAILURE_MESSAGES)]
                    message = template.format(run=run_id, client=client.client_id, n=c % 9)
                    failure = {
                        "category": category,
                        "fingerprint": f"{category}: {re.sub(r'[0-9]+', '<n>', message)}",
                        "message": message,
                        "hint": "see the runbook",
                        "run_id": run_id,
                        "client_id": client.client_id,
                        "stage": "harvest",
                        "at": ts(at + timedelta(minutes=3)),
                        "notebook": None,
                        "cell": None,
                        "traceback": None,
                    }
                    failures.append(failure)
                metrics = {"profiles_submitted": 5.0, "posts_harvested": 3.0, "opens_batch": 1.0}
                rows.append(
                    (
                        run_id,
                        client.client_id,
                        client.name,
                        "batch",
                        status,
                        ts(at),
                        ts(at + timedelta(minutes=4)),
                        ts(at + timedelta(minutes=4)),
                        json.dumps(metrics),
                        None,
                        "bench",
                        json.dumps(failure) if failure else None,
                    )
                )
                for k, (kind, stage) in enumerate(
                    (("opened", "records"), ("started", "harvest"), ("completed", "harvest"))
                ):
                    events.append(
                        (
                            run_id,
                            client.client_id,
                            stage,
                            kind,
                            f"{stage} {kind}",
                            json.dumps({"opens_batch": 1} if kind == "opened" else {}),
                            ts(at + timedelta(seconds=k)),
                        )
                    )
            conn.execute(
                "INSERT INTO runs (run_id, status, stream, started_at, ended_at, started_by, clients_total, clients_failed, "
                "notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    "Completed with Errors" if failed else "Completed",
                    1,
                    ts(at),
                    ts(at + timedelta(minutes=5)),
                    "bench",
                    clients,
                    failed,
                    "",
                ),
            )
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
                "INSERT INTO failures (run_id, client_id, stage, category, fingerprint, message, hint, at, notebook, "
                "cell, traceback) VALUES (:run_id, :client_id, :stage, :category, :fingerprint, :message, :hint, :at, "
                ":notebook, :cell, :traceback)",
                failures,
            )
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("client_runs", "events", "failures")}
    conn.close()
    print(f"  {home.name}: {counts}", flush=True)
    return newest


def build_airtable(sandbox: Any, home: Path, clients: int, runs: int) -> tuple[dict[str, str], str]:
    """The same shape on the Airtable sandbox, written through the API in batches of 10; (environment, newest run)."""
    from pydantic import SecretStr

    from leadkit.config import Settings
    from leadkit.models import EventKind, Failure, Run, RunEvent, RunStatus
    from leadkit.store.airtable import AirtableStore, make_api
    from leadkit.store.airtable.codecs import client_run_fields, client_run_key, event_dict, time_cell
    from leadkit.store.provision import provision
    from leadkit.store.schema import ClientRunResults, Failures
    from leadkit.workspace import Workspace

    placeholder = [{"name": "Notes", "fields": [{"name": "Name", "type": "singleLineText"}]}]
    master = sandbox.airtable.create_base("Master Clients", placeholder)
    env = {
        "LEADKIT_HOME": str(home),
        "LEADKIT_STORE": f"airtable://{master}",
        "AIRTABLE_API_KEY": sandbox.token,
        "AIRTABLE_ENDPOINT_URL": sandbox.airtable_url,
        "AIRTABLE_MAX_REQUESTS_PER_S": "1000",
        "AIRTABLE_TOKEN_MAX_REQUESTS_PER_S": "1000",
    }
    settings = Settings(
        leadkit_home=home,
        leadkit_store=env["LEADKIT_STORE"],
        airtable_api_key=SecretStr(sandbox.token),
        airtable_endpoint_url=sandbox.airtable_url,
        airtable_max_requests_per_s=1000.0,
    )
    api = make_api(settings)
    provision(api, master, "master")
    Workspace.create(home, settings=settings).close()
    store = AirtableStore(master, settings, api=api)
    from leadkit.models import AuthCheck

    store.add_auth_checks(  # the auth view shows rows on both workspaces
        [AuthCheck(n, True, None, 200, 110.0, "", checked_at=datetime.now(UTC)) for n in ("airtable", "apify")]
    )
    made = _clients(clients)
    for client in made:
        base_id = sandbox.airtable.create_base(f"{client.client_id} leads", placeholder)
        provision(api, base_id, "client")
        client.base_id = base_id
        store.save_client(client)
    from leadkit.models import ClientRun, ClientRunStatus, Source

    now = datetime.now(UTC).replace(microsecond=0)
    step = timedelta(days=DAYS) / runs
    crr = api.table(master, ClientRunResults.TABLE)
    newest = ""
    for r in range(runs):
        at = now - timedelta(days=DAYS) + step * (r + 1) - timedelta(minutes=10)
        run_id = at.strftime("%y%m%d-%H%M%S")
        newest = run_id
        store.insert_run(
            Run(run_id, RunStatus.COMPLETED, started_at=at, ended_at=at + timedelta(minutes=5), clients_total=clients)
        )
        records, failures = [], []
        for c, client in enumerate(made):
            status = _status(r, c)
            failure = None
            if status == "Failed":
                category, template = FAILURE_MESSAGES[(r + c) % len(FAILURE_MESSAGES)]
                message = template.format(run=run_id, client=client.client_id, n=c % 9)
                failure = Failure(
                    category,
                    f"{category}: {re.sub(r'[0-9]+', '<n>', message)}",
                    message,
                    "runbook",
                    run_id=run_id,
                    client_id=client.client_id,
                    stage="harvest",
                    at=at,
                )
                failures.append(failure)
            rec = ClientRun(
                run_id,
                client.client_id,
                Source.BATCH,
                client.name,
                ClientRunStatus(status),
                at,
                at + timedelta(minutes=4),
                at + timedelta(minutes=4),
                {"profiles_submitted": 5.0},
                failure=failure,
            )
            events = [
                RunEvent(run_id, client.client_id, "harvest", EventKind(k), at=at + timedelta(seconds=i))
                for i, k in enumerate(("opened", "started", "completed"))
            ]
            fields = {
                **client_run_key(run_id, client.client_id),
                **client_run_fields(rec),
                ClientRunResults.SOURCE: "batch",
                ClientRunResults.START_TIME: time_cell(at),
                ClientRunResults.EVENTS_JSON: json.dumps([event_dict(e) for e in events]),
                ClientRunResults.LAST_EVENT_AT: time_cell(events[-1].at),
            }
            records.append({k: v for k, v in fields.items() if v is not None})
        crr.batch_create(records)
        for failure in failures:
            store.add_failure(failure)
    _add_alerts(store, made, runs)
    store.close()
    _ = Failures
    return env, newest


# ------------------------------------------------------------------------------------------------ idle costs
#: The views a wall screen keeps open, one tab each.
IDLE_TABS = [("overview", ".lk-latest-runs"), ("runs", ".lk-runs-table"), ("health", ".lk-health-table")]
#: LEADKIT_DASHBOARD_SYNC while the idle dashboard is counted (short, so re-reads fall in the window), the
#: default it is scaled to, and the window.
IDLE_SYNC_S = 60.0
DEFAULT_SYNC_S = 900.0
IDLE_WINDOW_S = 180.0


def idle_requests_per_hour(browser: Any, sandbox: Any, env: dict[str, str]) -> float:
    """Airtable requests per hour of an idle dashboard (refresh every 30 s) with three tabs open, counted by the
    sandbox over `IDLE_WINDOW_S` with LEADKIT_DASHBOARD_SYNC=`IDLE_SYNC_S`, scaled to the default sync interval
    (every request of an idle dashboard is a re-read once per sync interval)."""
    proc, url = start_server({**env, "LEADKIT_DASHBOARD_SYNC": f"{IDLE_SYNC_S:g}"}, refresh_s=30)
    pages = []
    try:
        for view, table in IDLE_TABS:
            page = browser.new_page()
            page.goto(f"{url}?view={view}", timeout=300_000)
            page.locator(f"{table} .tabulator-row").first.wait_for(state="visible", timeout=300_000)
            pages.append(page)
        # the window holds whole sync periods (the mirror reads at each period's start: `MirrorKeeper.poll`)
        time.sleep(IDLE_SYNC_S - time.time() % IDLE_SYNC_S + IDLE_SYNC_S / 2)
        sandbox.state.stats.reset()
        time.sleep(IDLE_WINDOW_S)
        requests = sandbox.stats()["requests"]
        counted = len(requests)
        by_table = Counter(
            unquote(r["path"]).split("/")[3] if r["path"].count("/") >= 3 else r["path"] for r in requests
        )
        print(f"idle dashboard, 3 tabs, requests by table: {dict(sorted(by_table.items()))}", flush=True)
    finally:
        for page in pages:
            page.close()
        stop(proc)
    per_hour = counted * 3600 / IDLE_WINDOW_S
    print(
        f"idle dashboard, 3 tabs: {counted} Airtable requests in {IDLE_WINDOW_S:.0f} s at "
        f"LEADKIT_DASHBOARD_SYNC={IDLE_SYNC_S:g} ({per_hour:.0f}/h), scaled to the default {DEFAULT_SYNC_S:g} s",
        flush=True,
    )
    return per_hour * IDLE_SYNC_S / DEFAULT_SYNC_S


def health_seconds(home: Path) -> float:
    """Client health's read (what the view shows) on a SQLite workspace: the median of 3 after a warm-up."""
    from dashboards import client_data
    from leadkit.config import get_settings
    from leadkit.workspace import Workspace

    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    ws = Workspace.open(home, settings=settings)
    try:
        client_data.health_rows(ws)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            client_data.health_rows(ws)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        ws.close()


# ------------------------------------------------------------------------------------------------ serving
def start_server(env: dict[str, str], refresh_s: float = 0) -> tuple[subprocess.Popen[str], str]:
    cmd = [str(BIN / "leadkit"), "dashboard", "--port", "0", "--refresh", f"{refresh_s:g}"]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"the dashboard for {env.get('LEADKIT_HOME')} did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc: cannot read the server's peak memory")


def view_seconds(browser: Any, url: str, table: str) -> float:
    """Navigation to the first row of the view's table visible (the view's data has been read and sent)."""
    page = browser.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, timeout=300_000)
        page.locator(f"{table} .tabulator-row").first.wait_for(state="visible", timeout=300_000)
        return time.perf_counter() - t0
    finally:
        page.close()


def measure(browser: Any, servers: dict[str, tuple[str, str]]) -> dict[str, dict[str, float]]:
    """{workspace: {view: median seconds}}; loads interleaved across workspaces so machine noise weighs alike."""
    urls = {
        name: {view: f"{base}?{query.format(run=run)}" for view, query, _ in VIEWS}
        for name, (base, run) in servers.items()
    }
    tables = {view: table for view, _, table in VIEWS}
    for name in servers:  # warm-up
        for view in tables:
            view_seconds(browser, urls[name][view], tables[view])
    times: dict[str, dict[str, list[float]]] = {n: {v: [] for v in tables} for n in servers}
    for view in tables:
        for _ in range(REPS):
            for name in servers:
                times[name][view].append(view_seconds(browser, urls[name][view], tables[view]))
        medians = ", ".join(f"{n} {statistics.median(times[n][view]):.2f} s" for n in servers)
        print(f"  {view}: {medians}", flush=True)
    return {n: {v: statistics.median(t) for v, t in by_view.items()} for n, by_view in times.items()}


def report(label: str, small: dict[str, float], large: dict[str, float]) -> tuple[float, str]:
    print(f"{label}: {'view':10}{'small s':>10}{'large s':>10}{'scale':>8}")
    scales = {}
    for view in small:
        scales[view] = large[view] / small[view]
        print(f"{'':{len(label) + 2}}{view:10}{small[view]:>10.3f}{large[view]:>10.3f}{scales[view]:>8.2f}")
    slowest = max(scales, key=lambda v: scales[v])
    return scales[slowest], slowest


def main() -> None:
    from playwright.sync_api import sync_playwright

    from leadkit_sandbox.server import Sandbox

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: run `make chromium`")
    tmp = Path(tempfile.mkdtemp(prefix="leadkit-bench-dashboard-"))
    try:
        t0 = time.perf_counter()
        print("building the workspaces", flush=True)
        big_run = build_sqlite(tmp / "large", 500, 200)
        small_run = build_sqlite(tmp / "small", 500, 1)
        build_sqlite(tmp / "health-1000", 1000, 1)
        health_500 = health_seconds(tmp / "large")
        health_1000 = health_seconds(tmp / "health-1000")
        print(f"SQLite workspaces written in {time.perf_counter() - t0:.1f} s", flush=True)
        with Sandbox(rate_limit=0) as sandbox, sync_playwright() as pw, contextlib.ExitStack() as stack:
            t0 = time.perf_counter()
            air_large_env, air_large_run = build_airtable(sandbox, tmp / "air-large", 20, 50)
            air_small_env, air_small_run = build_airtable(sandbox, tmp / "air-small", 20, 1)
            print(f"Airtable workspaces written in {time.perf_counter() - t0:.1f} s", flush=True)
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            stack.callback(browser.close)
            procs: dict[str, subprocess.Popen[str]] = {}
            servers: dict[str, tuple[str, str]] = {}
            for name, env, run in (
                ("large", {"LEADKIT_HOME": str(tmp / "large"), "LEADKIT_STORE": ""}, big_run),
                ("small", {"LEADKIT_HOME": str(tmp / "small"), "LEADKIT_STORE": ""}, small_run),
                ("air-large", air_large_env, air_large_run),
                ("air-small", air_small_env, air_small_run),
            ):
                proc, url = start_server(env)
                stack.callback(stop, proc)
                procs[name] = proc
                servers[name] = (url, run)
            sqlite_times = measure(browser, {k: servers[k] for k in ("large", "small")})
            rss = peak_rss_mb(procs["large"].pid)
            air_times = measure(browser, {k: servers[k] for k in ("air-large", "air-small")})
            air_rss = peak_rss_mb(procs["air-large"].pid)
            idle_per_hour = idle_requests_per_hour(browser, sandbox, air_large_env)
        air_max, air_slowest = report(
            "Airtable (1,000 vs 20 ClientRuns)", air_times["air-small"], air_times["air-large"]
        )
        sql_max, sql_slowest = report(
            "SQLite (100,000 vs 500 ClientRuns)", sqlite_times["small"], sqlite_times["large"]
        )
        print(
            f"airtable: clients=20 client_runs=1000 view_scale_max={air_max:.2f} slowest_view={air_slowest} "
            f"rss_mb={air_rss:.0f}"
        )
        print(
            f"sqlite: clients=500 client_runs=100000 events=300000 failures=5000 view_scale_max={sql_max:.2f} "
            f"slowest_view={sql_slowest} rss_mb={rss:.0f}"
        )
        print(
            f"dashboard_requests_per_hour={idle_per_hour:.0f} health_500_s={health_500:.2f} "
            f"health_1000_s={health_1000:.2f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
