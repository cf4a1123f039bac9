"""Notebook failures: a cell that raises, a kernel that dies, a notebook past its timeout. Each ClientRun is Failed
with the reason, the executed notebook is kept, and the batch goes on to complete the others."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat

from leadkit.batch import run_batch
from leadkit.models import ClientRunStatus, RunStatus

from .conftest import Env

MISBEHAVE = (
    "import os, time\n"
    "if client_id == 'Acme-Co':\n"
    "    raise ValueError('boom in the client cell')\n"
    "if client_id == 'Globex':\n"
    "    os._exit(1)\n"
    "if client_id == 'Initech':\n"
    "    time.sleep(120)\n"
)


def test_raise_dead_kernel_and_timeout_fail_their_client_and_the_batch_goes_on(
    batch_env: Env, notebook_factory: Callable[[str], Path]
) -> None:
    ws = batch_env.ws
    notebook = notebook_factory(MISBEHAVE)
    result = run_batch(
        ws,
        client_ids=["Acme-Co", "Globex", "Initech", "Hooli"],
        stages=["eligibility"],
        notebook=notebook,
        timeout_s=10,
        workers=2,
        progress=False,
    )
    by_client = {r.client_id: r for r in result.records}
    assert set(by_client) == {"Acme-Co", "Globex", "Initech", "Hooli"}

    raised = by_client["Acme-Co"]
    assert raised.status is ClientRunStatus.FAILED
    assert "raised ValueError: boom in the client cell" in (raised.reason or "")
    assert raised.failure is not None and raised.failure.cell is not None
    assert f"cell {raised.failure.cell}" in raised.reason

    dead = by_client["Globex"]
    assert dead.status is ClientRunStatus.FAILED
    assert "kernel died" in (dead.reason or "")
    assert dead.failure is not None and "kernel died" in dead.failure.hint

    slow = by_client["Initech"]
    assert slow.status is ClientRunStatus.FAILED
    assert "timeout of 10 s" in (slow.reason or "")
    assert slow.failure is not None and "--timeout" in slow.failure.hint

    assert by_client["Hooli"].status is ClientRunStatus.SKIPPED  # the batch went on: its verdict is recorded

    for client_id, record in by_client.items():
        path = Path(record.notebook or "")
        assert path == result.run_dir / f"{client_id}.ipynb" and path.is_file(), client_id
        nbformat.read(path, as_version=4)  # a readable executed notebook, kept for every outcome
    saved = nbformat.read(result.run_dir / "Acme-Co.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in saved.cells for o in c.get("outputs", []))

    assert result.run.status is RunStatus.COMPLETED_WITH_ERRORS
    assert result.run.clients_failed == 3
    assert result.exit_code == 1
    failures = ws.store.list_failures()
    assert {f.client_id for f in failures} >= {"Acme-Co", "Globex", "Initech"}
