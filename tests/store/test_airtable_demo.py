"""`leadkit demo --backend airtable` end to end: a sandbox with Airtable's limit (5 requests/s per base, 30 s
penalty), the coordinator and the notebook kernels all writing the master base, and not one 429."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from leadkit.demo import client_names

PAUSED = "Initech"  # the demo's one client that is not Active


def test_demo_on_airtable_runs_every_active_client_without_a_429(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_")) and k != "LEADKIT_STORE"}
    env["LEADKIT_HOME"] = str(tmp_path / "runs")
    (tmp_path / "cwd").mkdir()
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "leadkit.cli", "demo", "--no-dashboard", "--no-incident", "--backend", "airtable"],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    seconds = time.monotonic() - began
    print(f"leadkit demo --backend airtable took {seconds:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rate-limited" not in proc.stderr, proc.stderr[-3000:]
    names = client_names(8)
    statuses = {}
    for line in proc.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in names:
            statuses[words[0]] = words[1]
    active = [n for n in names if n != PAUSED]
    assert sorted(statuses) == sorted(active), proc.stdout
    assert set(statuses.values()) <= {"Completed", "Skipped"}, proc.stdout
    assert "Completed" in statuses.values()
    assert f"{PAUSED}: not in this run" in proc.stdout
    runs = [line for line in proc.stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 1 and ": Completed;" in runs[0], proc.stdout
    run_dirs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir() and (p / "log.jsonl").exists()]
    assert len(run_dirs) == 1 and len(list(run_dirs[0].glob("*.ipynb"))) == len(active)
