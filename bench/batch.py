"""Benchmark: `leadkit batch` against the papermill CLI run in parallel and against the floor, side by side.

A workspace of 40 demo clients, harvesting off (stage eligibility only). Every contender runs the same number of
notebooks at once, N = the batch's default concurrency (from available memory, 8 to 32). Measured in one run,
interleaved (floor, batch, CLI, batch, floor) so that a busy machine weighs on each the same way:

(a) `leadkit batch --stages eligibility --concurrency N`;
(b) the papermill CLI over the same notebook and clients, N at a time with `xargs -P N` (what a user would write);
(c) the floor: the notebook's code cells with the same parameters, for each client in a fresh kernel driven
    directly through jupyter_client (start, execute, shut down; no papermill, nothing saved), N kernels at a time.

Last line: `batch_vs_cli=X batch_vs_floor=Y` with X = CLI seconds / batch seconds (higher is better) and
Y = batch seconds / floor seconds (lower is better).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadkit.batch import NOTEBOOK, default_concurrency, kernel_env  # noqa: E402
from leadkit.config import get_settings  # noqa: E402
from leadkit.demo import seed  # noqa: E402
from leadkit.models import Source  # noqa: E402
from leadkit.runids import RunId  # noqa: E402
from leadkit.workspace import Workspace  # noqa: E402

CLIENTS = 40
STAGES = "eligibility"
BIN = Path(sys.executable).parent


def peak_tree_rss(proc: subprocess.Popen[Any], stop: threading.Event, out: list[int]) -> None:
    """Sample the summed RSS of a process and all its descendants until `stop`."""
    peak = 0
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        out.append(0)
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        stop.wait(0.05)
    out.append(peak)


def run_batch(ws: Workspace, env: dict[str, str], concurrency: int) -> tuple[float, int, int]:
    cmd = [str(BIN / "leadkit"), "batch", "--stages", STAGES, "--concurrency", str(concurrency), "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ws.home)
    stop, peak = threading.Event(), []  # type: ignore[var-annotated]
    sampler = threading.Thread(target=peak_tree_rss, args=(proc, stop, peak))
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"leadkit batch exited {proc.returncode}:\n{out.decode()[-2000:]}")
    clients = len(json.loads(out)["clients"]) if out.strip().startswith(b"{") else -1
    return seconds, peak[0], clients


def open_run(ws: Workspace, clients: list[str], note: str) -> tuple[RunId, Path]:
    """A Run with its ClientRuns opened (as the batch does before running notebooks); not timed."""
    run = ws.records.start_run(notes=note)
    run_id = RunId.parse(run.run_id)
    ws.records.open_many(run_id, clients, Source.BATCH)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_id, run_dir


def run_cli_parallel(ws: Workspace, clients: list[str], env: dict[str, str], concurrency: int) -> float:
    """`xargs -P N` over the papermill CLI, one client ID a line: what a user would write."""
    run_id, run_dir = open_run(ws, clients, "bench: papermill CLI with xargs -P")
    ids = run_dir / "clients.txt"
    ids.write_text("".join(f"{c}\n" for c in clients))
    papermill = " ".join(
        shlex.quote(a)
        for a in [
            str(BIN / "papermill"),
            str(NOTEBOOK),
            f"{run_dir}/{{}}.ipynb",
            "--no-progress-bar",
            *("-r", "client_id", "{}"),
            *("-r", "run_id", str(run_id)),
            *("-r", "stages", STAGES),
            *("-r", "workspace", str(ws.home)),
            *("-r", "store_url", ""),
            *("-r", "notebook_path", f"{run_dir}/{{}}.ipynb"),
        ]
    )
    script = f"xargs -P {concurrency} -I{{}} {papermill} < {shlex.quote(str(ids))}"
    started = time.perf_counter()
    subprocess.run(
        ["bash", "-c", script], env=env, cwd=run_dir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def notebook_cells(client_id: str, run_id: RunId, run_dir: Path, ws: Workspace) -> list[str]:
    """The notebook's code cells, with the parameters injected after the parameters cell (as papermill does)."""
    nb = json.loads(NOTEBOOK.read_text())
    params = {
        "client_id": client_id,
        "run_id": str(run_id),
        "stages": STAGES,
        "workspace": str(ws.home),
        "store_url": "",
        "dry_run": True,
        "notebook_path": str(run_dir / f"{client_id}.ipynb"),
    }
    injected = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        cells.append("".join(cell["source"]))
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cells.append(injected)
    return cells


def floor_one(cells: list[str], env: dict[str, str], cwd: Path) -> None:
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    try:
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        for source in cells:
            reply = kc.execute_interactive(source, timeout=600, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise SystemExit(f"floor: a cell failed: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_floor(ws: Workspace, clients: list[str], env: dict[str, str], concurrency: int) -> float:
    run_id, run_dir = open_run(ws, clients, "bench: floor")
    kenv = {**env, **kernel_env(ws.settings, ws, run_dir / "log.jsonl")}
    work = [notebook_cells(c, run_id, run_dir, ws) for c in clients]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda cells: floor_one(cells, kenv, run_dir), work))
    return time.perf_counter() - started


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="lkbench-"))
    try:
        settings = get_settings(leadkit_home=home, leadkit_store="")
        ws = Workspace.create(home, settings=settings)
        seed(ws.store, CLIENTS)
        clients = sorted(c.client_id for c in ws.store.list_clients() if c.active)
        env = {**os.environ, "LEADKIT_HOME": str(home), "LEADKIT_STORE": "", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        n = default_concurrency()
        print(f"workspace {home}: {CLIENTS} demo clients, {len(clients)} Active (each one runs), stages {STAGES}")
        print(f"{os.cpu_count()} cores, {n} notebooks at once for each; order: floor, batch, CLI, batch, floor")
        floors, batches, peaks = [], [], []
        floors.append(run_floor(ws, clients, env, n))
        print(f"floor (jupyter_client, {n} kernels at a time):    {floors[-1]:6.1f} s")
        for step in ("batch", "cli", "batch"):
            if step == "cli":
                cli = run_cli_parallel(ws, clients, env, n)
                print(
                    f"papermill CLI (xargs -P {n}):                 {cli:6.1f} s  ({cli / len(clients):.2f} s a notebook)"
                )
                continue
            seconds, peak, ran = run_batch(ws, env, n)
            batches.append(seconds)
            peaks.append(peak)
            print(
                f"leadkit batch --concurrency {n}:               {seconds:6.1f} s  ({ran} clients, peak {peak / 2**20:.0f} MiB)"
            )
        floors.append(run_floor(ws, clients, env, n))
        print(f"floor (jupyter_client, {n} kernels at a time):    {floors[-1]:6.1f} s")
        batch_s = sum(batches) / len(batches)
        floor_s = sum(floors) / len(floors)
        print(
            f"means: batch {batch_s:.1f} s ({batch_s / len(clients):.2f} s a notebook), floor {floor_s:.1f} s, "
            f"CLI {cli:.1f} s; batch peak memory {max(peaks) / 2**20:.0f} MiB (batch and kernels)"
        )
        print(f"batch_vs_cli={cli / batch_s:.2f} batch_vs_floor={batch_s / floor_s:.2f}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
