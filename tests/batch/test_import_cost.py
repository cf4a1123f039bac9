"""Importing leadkit stays cheap in every kernel: what the client notebook touches pulls in nothing heavy, and
the batch coordinator leaves papermill to its workers."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "pandas",
    "numpy",
    "panel",
    "bokeh",
    "papermill",
    "nbclient",
    "nbformat",
    "jupyter_client",
    "pyairtable",
    "requests",
    "typer",
    "dask",
    "distributed",
    "httpx",
    "tenacity",
)


def loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_kernel_hot_path_pulls_in_nothing_heavy() -> None:
    code = (
        "import leadkit as lk\n"
        "lk.start_notebook_logging()\n"
        "lk.get_settings, lk.Workspace, lk.RunId, lk.Source, lk.run_client\n"
    )
    assert loaded(code) == []


def test_the_batch_module_leaves_papermill_to_the_workers() -> None:
    assert loaded("import leadkit.batch") == []
