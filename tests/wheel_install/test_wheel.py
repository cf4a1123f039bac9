"""The wheel round trip: build leadkit's wheel (not editable), install it into a fresh virtualenv, and run
`leadkit demo --no-dashboard` from a folder outside the source tree: the notebooks and the dashboard are package
data found through the package. Slow (a full install), so it runs in `make wheel-test`, not `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(2400)]


def test_the_wheel_runs_the_demo_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    (wheel,) = dist.glob("leadkit-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=tmp_path, timeout=1200)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_", "PYTHON"))}
    env.update(LEADKIT_HOME=str(elsewhere / "runs"), PATH=f"{env_dir / 'bin'}:{env.get('PATH', '')}")
    leadkit = str(env_dir / "bin" / "leadkit")

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import leadkit, dashboards; from leadkit.resources import notebooks_dir, dashboards_dir;"
            " print(leadkit.__file__); print(notebooks_dir()); print(dashboards_dir())",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        check=True,
    ).stdout.split()
    site = env_dir / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # the installed copy, not the checkout

    demo = subprocess.run(
        [leadkit, "demo", "--no-dashboard", "--clients", "3"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    runs = json.loads(
        subprocess.run(
            [leadkit, "runs", "--json"], capture_output=True, text=True, cwd=elsewhere, env=env, check=True
        ).stdout
    )
    assert runs and runs[0]["status"] == "Completed"
    notebooks = list((elsewhere / "runs").glob("*/*.ipynb"))
    assert notebooks, "the batch wrote no executed notebooks"
    version = subprocess.run([leadkit, "--version"], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert version.returncode == 0 and version.stdout.startswith("leadkit ")
    doctor = subprocess.run([leadkit, "doctor"], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert doctor.returncode == 0, doctor.stdout
