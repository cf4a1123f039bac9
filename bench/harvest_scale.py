"""Benchmark: a harvesting batch at agency scale, bounded by Apify capacity, not by cores.

48 due clients, each with two batches of leads, against the sandbox whose actor runs take 10 s and which allows
16 concurrent runs (it refuses more, as Apify does). One Apify run per client at a time, so the ideal wall time is
ceil(96 / 16) x 10 s = 60 s. Two batches are measured in one run, each on a fresh workspace, through the real
harvest stage (client notebook, harvester, Apify client, sandbox):

(a) tuned: `leadkit batch --concurrency 32` with APIFY_MAX_CONCURRENT_RUNS=16;
(b) defaults: `leadkit batch` (concurrency from available memory; Apify runs from the sandbox's
    `GET /v2/users/me/limits`, which says 16 are free).

Prints the sandbox's peak of runs in flight, a projection for 500 clients, then one line ending
`harvest_vs_ideal=X peak_rss_mb=Y default_vs_ideal=Z` (X tuned / ideal, Z defaults / ideal, Y the larger peak RSS
of a batch with all its kernels). Goal: X <= 1.3, Z <= 1.5, Y <= 3000.

    .venv/bin/python bench/harvest_scale.py [--clients 48] [--actor-seconds 10] [--max-runs 16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leadkit.config import get_settings  # noqa: E402
from leadkit.models import Client, NewLead  # noqa: E402
from leadkit.workspace import Workspace  # noqa: E402
from leadkit_sandbox.server import Sandbox  # noqa: E402

BIN = Path(sys.executable).parent
BATCH_SIZE = 5


def make_workspace(home: Path, clients: int, batches: int) -> None:
    ws = Workspace.create(home, settings=get_settings(leadkit_home=home, leadkit_store=""))
    for i in range(clients):
        client = Client(
            f"Acme-{i:03d}",
            f"Acme {i:03d}",
            service_level=2,
            post_access=True,
            daily_target=10_000,
            batch_size=BATCH_SIZE,
            max_batches=batches,
        )
        ws.store.save_client(client)
        ws.store.lead_base(client).import_leads(
            [
                NewLead(f"https://www.linkedin.com/in/acme-{i:03d}-lead-{n:02d}/", f"Lead {n}", f"Prospect {n}")
                for n in range(BATCH_SIZE * batches)
            ]
        )
    ws.close()


def sample_tree_rss(proc: subprocess.Popen[Any], stop: threading.Event, out: list[int]) -> None:
    """The peak of the summed RSS of a process and all its descendants (batch and kernels)."""
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
        stop.wait(0.2)
    out.append(peak)


def timeline(runs: list[dict[str, Any]], started: datetime, ended: datetime, slots: int) -> str:
    """Where the wall time went: before the first actor run, after the last, and how full the slots were."""
    spans = [(_when(r["startedAt"]), _when(r["finishedAt"])) for r in runs if r.get("finishedAt")]
    if not spans:
        return "no actor run finished"
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    busy = sum((b - a).total_seconds() for a, b in spans)
    window = max((last - first).total_seconds(), 1e-9)
    return (
        f"first actor run at +{(first - started).total_seconds():.1f} s, last done "
        f"{(ended - last).total_seconds():.1f} s before the batch ended; slots {busy / (slots * window):.0%} busy"
    )


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_batch(home: Path, env: dict[str, str], args: list[str]) -> tuple[float, int, dict[str, Any]]:
    cmd = [str(BIN / "leadkit"), "batch", "--json", *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=home)
    stop, peak = threading.Event(), []  # type: ignore[var-annotated]
    sampler = threading.Thread(target=sample_tree_rss, args=(proc, stop, peak))
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"leadkit batch exited {proc.returncode}:\n{err.decode()[-3000:]}")
    return seconds, peak[0], json.loads(out)


def check(data: dict[str, Any], clients: int, batches: int) -> str:
    """Every client Completed with every batch harvested: the batch did the work it is timed for."""
    done = [c for c in data["clients"] if c["status"] == "Completed"]
    submitted = sum(int(c.get("metrics", {}).get("profiles_submitted", 0)) for c in data["clients"])
    if len(done) != clients or submitted != clients * batches * BATCH_SIZE:
        raise SystemExit(
            f"the batch did not harvest everything: {len(done)} of {clients} clients Completed, "
            f"{submitted} of {clients * batches * BATCH_SIZE} profiles submitted"
        )
    return f"{len(done)} clients Completed, {submitted} profiles submitted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--actor-seconds", type=float, default=10.0)
    parser.add_argument("--max-runs", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32, help="the tuned run's --concurrency")
    opts = parser.parse_args()
    runs = opts.clients * opts.batches
    ideal = math.ceil(runs / opts.max_runs) * opts.actor_seconds
    root = Path(tempfile.mkdtemp(prefix="lkbench-harvest-"))
    try:
        with Sandbox(rate_limit=0, actor_seconds=opts.actor_seconds, apify_max_runs=opts.max_runs) as sandbox:
            base_env = {
                k: v for k, v in os.environ.items() if k not in ("APIFY_MAX_CONCURRENT_RUNS", "LEADKIT_CONCURRENCY")
            }
            base_env.update(
                {
                    "LEADKIT_STORE": "",
                    "APIFY_TOKEN": sandbox.token,
                    "APIFY_API_URL": sandbox.apify_url,
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                }
            )
            print(
                f"{opts.clients} clients x {opts.batches} batches = {runs} actor runs of {opts.actor_seconds:g} s; "
                f"the sandbox allows {opts.max_runs} at once; ideal ceil({runs}/{opts.max_runs}) x "
                f"{opts.actor_seconds:g} s = {ideal:.0f} s; {os.cpu_count()} cores"
            )
            results = {}
            for name, args, extra in (
                ("tuned", ["--concurrency", str(opts.concurrency)], {"APIFY_MAX_CONCURRENT_RUNS": str(opts.max_runs)}),
                ("defaults", [], {}),
            ):
                home = root / name
                make_workspace(home, opts.clients, opts.batches)
                sandbox.apify.peak_runs = sandbox.apify.runs_started = 0
                sandbox.apify.clear_runs()
                began = datetime.now(UTC)
                seconds, peak, data = run_batch(home, {**base_env, **extra, "LEADKIT_HOME": str(home)}, args)
                span = timeline(sandbox.apify.runs(), began, datetime.now(UTC), opts.max_runs)
                ran = sandbox.apify.runs_started
                results[name] = (seconds, peak)
                print(
                    f"{name:8s} ({' '.join(args) or 'no flags'}"
                    f"{', APIFY_MAX_CONCURRENT_RUNS=' + extra['APIFY_MAX_CONCURRENT_RUNS'] if extra else ''}): "
                    f"{seconds:6.1f} s = {seconds / ideal:.2f} x ideal; {check(data, opts.clients, opts.batches)}; "
                    f"{ran} actor runs, at most {sandbox.apify.peak_runs} at once; peak RSS {peak / 2**20:.0f} MiB"
                )
                print(f"{'':9s}{span}")
        tuned, default = results["tuned"][0] / ideal, results["defaults"][0] / ideal
        peak_mb = max(p for _, p in results.values()) / 2**20
        big = 500 * opts.batches
        big_ideal = math.ceil(big / opts.max_runs) * opts.actor_seconds
        minute = math.ceil(big / opts.max_runs) * 60.0
        print(
            f"projection for 500 clients x {opts.batches} batches at {opts.max_runs} runs at once: ideal "
            f"{big_ideal / 60:.1f} min, at the tuned ratio {big_ideal * tuned / 60:.1f} min with "
            f"{opts.actor_seconds:g}-s runs; {minute * tuned / 3600:.1f} h with minute-long runs"
        )
        print(f"harvest_vs_ideal={tuned:.2f} peak_rss_mb={peak_mb:.0f} default_vs_ideal={default:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
