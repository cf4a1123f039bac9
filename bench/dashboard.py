"""Benchmark: does the dashboard's runs page slow down as the records pile up?

In one run, in headless Chromium launched as in the browser tests:
- two workspaces, one with 50,000 ClientRuns over 5,000 runs and one with 500 over 50 (written in big batches
  through the store's methods), each served by `leadkit dashboard` in its own process;
- render: seconds from navigation (`?view=runs`) to the last row of the runs table's first page (25 runs)
  visible;
- page: seconds from clicking "Next" to the first run of page 2 visible;
- the floor: a bare Panel app showing a 50-row Tabulator, served the same way, navigation to its 50th row;
- rss: the 50,000-record server's peak resident memory (VmHWM) after its measurements.
Each figure is the median of several fresh page loads after one warm-up load per server.

Last line: `render_scale=A page_scale=B render_vs_floor=C rss_mb=D` (A, B: the 50,000 figure over the 500 one;
C: the 50,000 render over the floor's). Targets: A <= 1.2, B <= 1.2, C <= 2.0, D <= 600.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENTS_PER_RUN = 10
REPS = 7
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
ROW = ".lk-runs-table .tabulator-row"
PAGE_SIZE = 25  # the runs view's page size: the 50-run workspace has two pages
FLOOR_ROWS = 50
BIN = Path(sys.executable).parent


def build_workspace(home: Path, runs: int) -> list[str]:
    """`runs` finished runs an hour apart, each with CLIENTS_PER_RUN ClientRuns (1 in 10 failed); run IDs newest
    first."""
    from leadkit.classify import failure_from
    from leadkit.config import get_settings
    from leadkit.demo import seed
    from leadkit.errors import UpstreamError
    from leadkit.models import ClientRun, ClientRunStatus, Run, RunStatus, Source
    from leadkit.runids import RunId
    from leadkit.workspace import Workspace

    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    ws = Workspace.create(home, settings=settings)
    clients = [c.client_id for c in seed(ws.store, CLIENTS_PER_RUN, leads_per_client=2)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=runs)
    batch: list[ClientRun] = []
    run_ids = []
    for i in range(runs):
        at = start + timedelta(hours=i)
        run_id = str(RunId.new(now=at))
        failed = i % 10 == 3
        ws.store.insert_run(
            Run(
                run_id=run_id,
                status=RunStatus.COMPLETED_WITH_ERRORS if failed else RunStatus.COMPLETED,
                started_at=at,
                ended_at=at + timedelta(minutes=4),
                started_by="bench",
                clients_total=CLIENTS_PER_RUN,
                clients_failed=1 if failed else 0,
            )
        )
        run_ids.append(run_id)
        for n, client_id in enumerate(clients):
            bad = failed and n == 0
            batch.append(
                ClientRun(
                    run_id=run_id,
                    client_id=client_id,
                    source=Source.BATCH,
                    client_name=client_id,
                    status=ClientRunStatus.FAILED if bad else ClientRunStatus.COMPLETED,
                    started_at=at,
                    ended_at=at + timedelta(minutes=3),
                    heartbeat_at=at + timedelta(minutes=3),
                    metrics={"posts_harvested": 3.0, "profiles_submitted": 5.0},
                    failure=failure_from(UpstreamError(f"Apify returned 502 for {run_id}"), run_id=run_id)
                    if bad
                    else None,
                )
            )
        if len(batch) >= 5000:
            ws.store.open_client_runs(batch)
            batch = []
    if batch:
        ws.store.open_client_runs(batch)
    assert len(ws.store.list_client_runs(run_id=run_ids[-1])) == CLIENTS_PER_RUN
    ws.close()
    return list(reversed(run_ids))


def serve_floor() -> None:
    """The floor app: a bare Panel server showing one 50-row Tabulator (run in a subprocess)."""
    import pandas as pd
    import panel as pn

    from leadkit.dashboard_server import _free_port

    pn.extension("tabulator")
    df = pd.DataFrame(
        {
            "Run ID": [f"251128-{i:06d}" for i in range(50)],
            "Status": ["Completed"] * 50,
            "Clients": [10] * 50,
            "Failures": [0] * 50,
            "Started (UTC)": ["2025-11-28 09:30:00"] * 50,
            "Ended (UTC)": ["2025-11-28 09:34:00"] * 50,
        }
    )
    port = _free_port("127.0.0.1")
    print(f"dashboard: http://127.0.0.1:{port}/", flush=True)
    pn.serve(
        lambda: pn.widgets.Tabulator(df, show_index=False, disabled=True, css_classes=["lk-runs-table"]),
        port=port,
        address="127.0.0.1",
        websocket_origin=[f"127.0.0.1:{port}"],
        show=False,
        verbose=False,
    )


def start_server(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"the server {' '.join(cmd)} did not start")


def wait_http(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


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


def render_seconds(browser: Any, url: str, rows: int) -> float:
    """Navigation to the table's last row visible."""
    page = browser.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url)
        page.locator(ROW).nth(rows - 1).wait_for(state="visible", timeout=60_000)
        return time.perf_counter() - t0
    finally:
        page.close()


def next_page_seconds(browser: Any, url: str, first_of_page_2: str) -> float:
    page = browser.new_page()
    try:
        page.goto(url)
        page.locator(ROW).nth(PAGE_SIZE - 1).wait_for(state="visible", timeout=60_000)
        page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length > 0")
        button = page.get_by_role("button", name="Next ›")
        t0 = time.perf_counter()
        button.click()
        page.locator(ROW, has_text=first_of_page_2).first.wait_for(state="visible", timeout=60_000)
        return time.perf_counter() - t0
    finally:
        page.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-floor":
        serve_floor()
        return
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: run `make chromium`")
    tmp = Path(tempfile.mkdtemp(prefix="leadkit-bench-dashboard-"))
    try:
        t0 = time.perf_counter()
        ids_big = build_workspace(tmp / "big", 5000)
        ids_small = build_workspace(tmp / "small", 50)
        print(f"workspaces: 50,000 and 500 ClientRuns written in {time.perf_counter() - t0:.1f} s", flush=True)
        with sync_playwright() as pw, contextlib.ExitStack() as servers:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            servers.callback(browser.close)
            floor_proc, floor_url = start_server([sys.executable, __file__, "--serve-floor"], dict(os.environ))
            servers.callback(stop, floor_proc)
            apps: dict[str, tuple[subprocess.Popen[str], str, list[str]]] = {}
            for name, home, ids in (("500", tmp / "small", ids_small), ("50000", tmp / "big", ids_big)):
                env = {**os.environ, "LEADKIT_HOME": str(home), "LEADKIT_STORE": ""}
                cmd = [str(BIN / "leadkit"), "dashboard", "--port", "0", "--refresh", "0"]
                proc, url = start_server(cmd, env)
                servers.callback(stop, proc)
                apps[name] = (proc, f"{url}?view=runs", ids)
            # warm-up: one load of each, then measurements interleaved so machine noise weighs on each alike
            wait_http(floor_url)
            render_seconds(browser, floor_url, FLOOR_ROWS)
            for _, view, ids in apps.values():
                wait_http(view)
                next_page_seconds(browser, view, ids[PAGE_SIZE])
            times: dict[str, list[float]] = {
                "floor": [],
                **{f"{n}/render": [] for n in apps},
                **{f"{n}/page": [] for n in apps},
            }
            for _ in range(REPS):
                times["floor"].append(render_seconds(browser, floor_url, FLOOR_ROWS))
                for name, (_, view, ids) in apps.items():
                    times[f"{name}/render"].append(render_seconds(browser, view, PAGE_SIZE))
                    times[f"{name}/page"].append(next_page_seconds(browser, view, ids[PAGE_SIZE]))
            rss = {name: peak_rss_mb(proc.pid) for name, (proc, _, _) in apps.items()}
        floor = statistics.median(times["floor"])
        print(f"floor (bare 50-row Tabulator): render {floor:.3f} s", flush=True)
        results: dict[str, dict[str, float]] = {}
        for name in apps:
            render = statistics.median(times[f"{name}/render"])
            paging = statistics.median(times[f"{name}/page"])
            results[name] = {"render": render, "page": paging, "rss": rss[name]}
            print(
                f"{name:>6} ClientRuns: render {render:.3f} s, next page {paging:.3f} s, "
                f"server peak RSS {rss[name]:.0f} MB (medians of {REPS})",
                flush=True,
            )
        big, small = results["50000"], results["500"]
        print(
            f"render_scale={big['render'] / small['render']:.2f} page_scale={big['page'] / small['page']:.2f} "
            f"render_vs_floor={big['render'] / floor:.2f} rss_mb={big['rss']:.0f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
