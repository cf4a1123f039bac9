"""Benchmark: `leadkit batch` (warm, one-shot kernels) against fresh kernels and against no kernel at all.

A workspace of demo clients, more than 200 of them Active, harvesting off (stage eligibility only). Every
contender runs the same notebook for the same clients, N at once where N is the batch's default concurrency (from
available memory, 8 to 32). Measured in one run, in this order: (a), (d), the dry run, then (c), the slowest:

(a) `leadkit batch --stages eligibility --concurrency N` in a process of its own: wall time, and CPU time of it and
    of every process it started (the fork server, every kernel, warm spares included: each is waited for, so its
    CPU time is in the batch's children's usage);
(b) with ``--spawn`` only (minutes more): the same batch with its kernels spawned (``LEADKIT_KERNEL_START=spawn``:
    a new interpreter per kernel, warmed ahead the same way) instead of forked from the fork server: what the fork
    server saves;
(c) fresh kernels: the notebook's code cells with the same parameters, for each client in a fresh kernel driven
    directly through jupyter_client (start, execute, shut down; no papermill, nothing saved), N at a time: what a
    batch costs with a kernel started per client;
(d) no kernel: the same code cells run in this process, for each client (no notebook file, no kernel): the work
    itself.

Then a dry-run batch of 1,000 clients (stages eligibility and harvest, nothing sent to Apify) is timed.

Printed: ``dry_run_clients=K dry_run_s=S``, then last ``overhead_ms_per_client=Z batch_vs_floor=Y clients=N
peak_pss_mb=M`` with Z = (CPU seconds of (a) - CPU seconds of (d)) x 1000 / N, Y = (a)'s wall time / (c)'s, M = the
largest summed PSS of (a)'s process tree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
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

SEEDED = 240  # demo clients; 7 in 8 are Active: 210 run
DRY_RUN_SEEDED = 1143  # 1,000 Active
STAGES = "eligibility"
BIN = Path(sys.executable).parent


def peak_tree_pss(root_pid: int, stop: threading.Event, out: list[int]) -> None:
    """Sample the summed PSS of a process and all its descendants until `stop` (twice a second)."""
    peak = 0
    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        out.append(0)
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            break
        peak = max(peak, total)
        stop.wait(0.5)
    out.append(peak)


def run_batch(ws: Workspace, env: dict[str, str], args: list[str], sample: bool) -> tuple[float, float, int, int]:
    """`leadkit batch ARGS --json` as a child process: wall seconds, CPU seconds of it and every process it
    started and waited for, peak PSS of its tree, and how many clients it ran."""
    cmd = [str(BIN / "leadkit"), "batch", *args, "--json"]
    out_path = ws.home / f"batch-{time.monotonic_ns()}.json"
    with open(out_path, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL, cwd=ws.home)
        stop, peak = threading.Event(), []  # type: ignore[var-annotated]
        sampler = threading.Thread(target=peak_tree_pss, args=(proc.pid, stop, peak))
        if sample:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        if sample:
            sampler.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"leadkit batch exited {proc.returncode}")
    report = json.loads(out_path.read_text())
    return seconds, usage.ru_utime + usage.ru_stime, peak[0] if peak else 0, len(report["clients"])


def open_run(ws: Workspace, clients: list[str], note: str) -> tuple[RunId, Path]:
    """A Run with its ClientRuns opened (as the batch does before running notebooks); not timed."""
    run = ws.records.start_run(notes=note)
    run_id = RunId.parse(run.run_id)
    ws.records.open_many(run_id, clients, Source.BATCH)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_id, run_dir


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


#: Starts of a fresh kernel tried before the floor gives up: kernels started 32 at once by jupyter_client can lose a
#: port race (it picks free ports, then the kernel binds them) and die before answering.
FLOOR_STARTS = 3


def floor_one(cells: list[str], env: dict[str, str], cwd: Path) -> None:
    from jupyter_client.manager import KernelManager

    for attempt in range(1, FLOOR_STARTS + 1):
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        try:
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=300)  # a busy machine: 32 kernels booting at once
            except RuntimeError:
                if attempt == FLOOR_STARTS:
                    raise
                continue
            for source in cells:
                reply = kc.execute_interactive(source, timeout=300, output_hook=lambda msg: None)
                if reply["content"]["status"] != "ok":
                    raise SystemExit(f"floor: a cell failed: {reply['content'].get('evalue')}")
            return
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def run_floor(ws: Workspace, clients: list[str], env: dict[str, str], concurrency: int) -> float:
    run_id, run_dir = open_run(ws, clients, "bench: fresh kernels")
    kenv = {**env, **kernel_env(ws.settings, ws, run_dir / "log.jsonl")}
    work = [notebook_cells(c, run_id, run_dir, ws) for c in clients]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda cells: floor_one(cells, kenv, run_dir), work))
    return time.perf_counter() - started


def run_in_process(ws: Workspace, clients: list[str]) -> tuple[float, float]:
    """(d): each client's code cells executed in this process, a fresh namespace a client; wall and CPU s."""
    run_id, run_dir = open_run(ws, clients, "bench: in process")
    work = [notebook_cells(c, run_id, run_dir, ws) for c in clients]
    saved = dict(os.environ)
    os.environ.update(kernel_env(ws.settings, ws, run_dir / "log.jsonl"))
    try:
        cpu, started = time.process_time(), time.perf_counter()
        for cells in work:
            namespace: dict[str, Any] = {"__name__": "__main__"}
            with contextlib.redirect_stdout(io.StringIO()):
                for source in cells:
                    exec(compile(source, "<cell>", "exec"), namespace)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        os.environ.clear()
        os.environ.update(saved)


def workspace(home: Path, seeded: int) -> tuple[Workspace, list[str], dict[str, str]]:
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    seed(ws.store, seeded)
    clients = sorted(c.client_id for c in ws.store.list_clients() if c.active)
    env = {**os.environ, "LEADKIT_HOME": str(home), "LEADKIT_STORE": "", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    return ws, clients, env


def main() -> None:
    """The batch (a) and the work itself (d) first, then the timed dry run, then the fresh kernels (c), the slowest
    part: a busy machine still gets the batch's figures when the floor takes long."""
    home = Path(tempfile.mkdtemp(prefix="lkbench-"))
    try:
        ws, clients, env = workspace(home / "main", SEEDED)
        n = default_concurrency()
        total = len(clients)
        print(
            f"{total} Active demo clients, stages {STAGES}; {os.cpu_count()} cores, {n} notebooks at once", flush=True
        )
        batch_s, batch_cpu, peak, ran = run_batch(ws, env, ["--stages", STAGES, "--concurrency", str(n)], sample=True)
        print(
            f"(a) leadkit batch --concurrency {n}:             {batch_s:7.1f} s, CPU {batch_cpu:.1f} s "
            f"(batch, fork server, kernels), {ran} clients, peak PSS {peak / 2**20:.0f} MiB",
            flush=True,
        )
        if "--spawn" in sys.argv[1:]:
            spawn_s, spawn_cpu, _, spawn_ran = run_batch(
                ws, {**env, "LEADKIT_KERNEL_START": "spawn"}, ["--stages", STAGES, "--concurrency", str(n)], False
            )
            print(
                f"(b) the same, kernels spawned, not forked:       {spawn_s:7.1f} s, CPU {spawn_cpu:.1f} s, "
                f"{spawn_ran} clients (fork saves {(spawn_cpu - batch_cpu) * 1000 / ran:.0f} ms of CPU a client)",
                flush=True,
            )
        inproc_s, inproc_cpu = run_in_process(ws, clients)
        print(f"(d) the code cells in this process:             {inproc_s:7.1f} s, CPU {inproc_cpu:.1f} s", flush=True)
        overhead = (batch_cpu - inproc_cpu) * 1000 / ran
        big, big_clients, big_env = workspace(home / "dry", DRY_RUN_SEEDED)
        dry_s, dry_cpu, _, dry_ran = run_batch(big, big_env, ["--dry-run"], sample=False)
        print(f"dry_run_clients={dry_ran} dry_run_s={dry_s:.1f} (CPU {dry_cpu:.1f} s, default concurrency)", flush=True)
        big.close()
        floor_s = run_floor(ws, clients, env, n)
        print(f"(c) fresh kernels (jupyter_client, {n} at a time): {floor_s:7.1f} s", flush=True)
        print(
            f"overhead_ms_per_client={overhead:.0f} batch_vs_floor={batch_s / floor_s:.2f} clients={ran} "
            f"peak_pss_mb={peak / 2**20:.0f}"
        )
        ws.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
