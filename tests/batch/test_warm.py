"""Warm, one-shot kernels: no state of one client's notebook reaches another's, a warm kernel that died is
replaced rather than handed out, and the executed notebook is papermill's record of the whole run (setup
included)."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import nbformat
import psutil

from leadkit.batch import run_batch
from leadkit.batch.kernels import POOL, NotebookJob, execute_notebook
from leadkit.models import ClientRunStatus

from .conftest import PARAMETERS, WORKFLOW, Env, add_harvest_clients

SETUP = "import os\n\nimport leadkit\n\nprint('setup ran in', os.getpid())\n"

#: Looks for the marks an earlier client would have left in this interpreter and environment, then leaves its own.
MARKS = (
    "import builtins, os, sys\n"
    "seen = []\n"
    "if getattr(builtins, 'iso_mark', None): seen.append('builtins:' + builtins.iso_mark)\n"
    "if os.environ.get('ISO_MARK'): seen.append('environ:' + os.environ['ISO_MARK'])\n"
    "if getattr(leadkit, 'iso_mark', None): seen.append('leadkit module:' + leadkit.iso_mark)\n"
    "if 'iso_mark_module' in sys.modules: seen.append('sys.modules')\n"
    "if 'iso_global' in globals(): seen.append('globals:' + iso_global)\n"
    "builtins.iso_mark = client_id\n"
    "os.environ['ISO_MARK'] = client_id\n"
    "leadkit.iso_mark = client_id\n"
    "sys.modules['iso_mark_module'] = type(sys)('iso_mark_module')\n"
    "iso_global = client_id\n"
    "print('client ran in', os.getpid(), 'marks seen:', seen)\n"
    "assert not seen, f'{client_id} sees marks of another client: {seen}'\n"
)


def warm_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    setup = nbformat.v4.new_code_cell(SETUP)
    setup.metadata["tags"] = ["setup"]
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# warm"), setup, params, nbformat.v4.new_code_cell(body)]
    nb.cells.append(nbformat.v4.new_code_cell(WORKFLOW))
    nbformat.write(nb, path)
    return path


def outputs_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_sixteen_clients_two_at_a_time_see_no_marks_of_another(batch_env: Env, tmp_path: Path) -> None:
    ws = batch_env.ws
    ids = sorted(c.client_id for c in ws.store.list_clients()) + add_harvest_clients(ws, 8, prefix="Iso")
    assert len(ids) == 16
    notebook = warm_notebook(tmp_path / "isolation.ipynb", MARKS)
    result = run_batch(ws, client_ids=ids, stages=["eligibility"], notebook=notebook, concurrency=2, progress=False)

    by_client = {r.client_id: r for r in result.records}
    assert set(by_client) == set(ids)
    failed = {cid: r.reason for cid, r in by_client.items() if r.status is ClientRunStatus.FAILED}
    assert failed == {}
    kernels = set()
    for client_id in ids:
        saved = nbformat.read(result.run_dir / f"{client_id}.ipynb", as_version=4)
        setup, injected, body = saved.cells[1], saved.cells[3], saved.cells[4]
        # the setup cell ran in this client's kernel, before its parameters: its output is in the record
        setup_pid = re.search(r"setup ran in (\d+)", outputs_text(setup))
        client_pid = re.search(r"client ran in (\d+) marks seen: \[\]", outputs_text(body))
        assert setup_pid and client_pid, (client_id, outputs_text(setup), outputs_text(body))
        assert setup_pid.group(1) == client_pid.group(1)
        kernels.add(client_pid.group(1))
        assert setup.execution_count == 1 and body.execution_count == 4
        # papermill's record: the injected parameters cell with papermill's tag, each cell's papermill metadata
        assert "injected-parameters" in injected.metadata.tags and f'client_id = "{client_id}"' in injected.source
        assert saved.metadata.papermill.parameters["client_id"] == client_id
        assert all(c.metadata.papermill.status == "completed" for c in saved.cells)
        assert saved.metadata.language_info.name == "python"
    assert len(kernels) == 16  # one kernel a client


def test_a_warm_kernel_that_died_is_replaced_not_handed_out(tmp_path: Path) -> None:
    notebook = warm_notebook(tmp_path / "pid.ipynb", "print('client ran in', os.getpid())\n")
    nb = nbformat.read(notebook, as_version=4)
    nb.cells = nb.cells[:4]  # setup, parameters and the body: no workflow (no workspace here)
    nbformat.write(nb, notebook)
    job = NotebookJob(
        client_id="Acme-Co",
        input_path=str(notebook),
        output_path=str(tmp_path / "Acme-Co.ipynb"),
        parameters={"client_id": "Acme-Co"},
        env={"LEADKIT_TEST_MARK": uuid.uuid4().hex},
        cwd=str(tmp_path),
        timeout_s=120,
        start_timeout_s=120,
    )
    dead_before = POOL.dead_while_warm
    try:
        POOL.warm(job, 1)
        deadline = time.monotonic() + 180  # generous: the machine may be busy; the kernel is only waited for
        while not POOL.ready_kernels(job) and time.monotonic() < deadline:
            time.sleep(0.1)
        (spare,) = POOL.ready_kernels(job)
        assert spare.process is not None
        victim = spare.process.pid
        os.kill(victim, signal.SIGKILL)
        while spare.process.alive() and time.monotonic() < deadline:
            time.sleep(0.05)

        result = execute_notebook(job)

        assert result.ok, result.message
        assert POOL.dead_while_warm == dead_before + 1
        saved = nbformat.read(tmp_path / "Acme-Co.ipynb", as_version=4)
        ran_in = re.search(r"client ran in (\d+)", outputs_text(saved.cells[4]))
        assert ran_in and int(ran_in.group(1)) != victim
    finally:
        POOL.close()


def test_a_forked_kernel_shows_as_a_kernel_in_the_process_table(tmp_path: Path) -> None:
    """A forked kernel's command line reads `PYTHON -m ipykernel_launcher -f CONNECTION_FILE ...`, as a spawned
    kernel's does, so whatever finds a batch's kernels in the process table (pgrep -f ipykernel, the orphan checks
    of tests/harvest and bench/chaos.py) finds it; the fork server never matches."""
    notebook = warm_notebook(tmp_path / "title.ipynb", "print('client ran in', os.getpid())\n")
    job = NotebookJob(
        client_id="Acme-Co",
        input_path=str(notebook),
        output_path=str(tmp_path / "Acme-Co.ipynb"),
        parameters={"client_id": "Acme-Co"},
        env={},
        cwd=str(tmp_path),
        timeout_s=120,
        start_timeout_s=120,
    )
    try:
        POOL.warm(job, 1)
        deadline = time.monotonic() + 180
        while not POOL.ready_kernels(job) and time.monotonic() < deadline:
            time.sleep(0.1)
        (spare,) = POOL.ready_kernels(job)
        assert spare.process is not None
        children = psutil.Process().children(recursive=True)
        kernels = [p for p in children if "ipykernel" in " ".join(p.cmdline())]
        assert [p.pid for p in kernels] == [spare.process.pid], [p.cmdline() for p in children]
        words = kernels[0].cmdline()
        assert words[1:4] == ["-m", "ipykernel_launcher", "-f"] and words[4].endswith(".json"), words
    finally:
        POOL.close()
