"""Settling a client after its notebook ran: a record the notebook left Running becomes Failed with the reason;
after a stopped batch, every record it left Running does (`settle_stopped`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from leadkit.batch.kernels import NotebookJob, NotebookResult
from leadkit.classify import fingerprint
from leadkit.errors import NotebookError
from leadkit.models import INTERRUPTED, ClientRunStatus, EventKind, Failure, RunEvent
from leadkit.runids import RunId
from leadkit.workspace import Workspace


def _settle(ws: Workspace, run_id: RunId, job: NotebookJob, result: NotebookResult) -> str:
    """After a notebook: a record the notebook left Running (cell raised, kernel died, timeout) becomes Failed
    with the reason, once the dead kernel's actor runs are aborted and its Processing leads released
    (`release_orphans`); the executed notebook is kept either way. Returns the ClientRun's status. A notebook that
    ran to the end and published a final status completed its own record: nothing to read or write here."""
    if result.ok and result.status is not None and result.status != ClientRunStatus.RUNNING.value:
        return result.status
    ws.store.write_left_save(run_id.base, job.client_id)  # what the kernel held back of its progress, if it was killed
    record = ws.store.get_client_run(run_id.base, job.client_id)
    if record is None:
        return ClientRunStatus.FAILED.value
    if record.status is not ClientRunStatus.RUNNING:
        if record.notebook is None:
            ws.records.update(record, notebook=job.output_path)
        return record.status.value
    reason = result.message if not result.ok else "the notebook ended without completing its ClientRun"
    # The kernel is gone: its actor runs are aborted (or, SUCCEEDED, kept to be read) and its leads released.
    from leadkit.harvest.orphans import release_orphans  # httpx only when a record is settled: the batch stays light

    released = release_orphans(ws.store, ws.settings, record)
    events = [RunEvent(run_id.base, job.client_id, "notebook", EventKind.FAILED, reason)]
    if released.message():
        events.append(RunEvent(run_id.base, job.client_id, "harvest", EventKind.INFO, released.message()))
    error = NotebookError(reason)
    failure = Failure(
        category=str(error.category),
        fingerprint=fingerprint(str(error.category), reason),
        message=reason,
        hint={
            "dead_kernel": "The kernel died (out of memory, or killed). Open the executed notebook; re-run with "
            "`leadkit batch --resume RUN_ID`.",
            "timeout": "The notebook ran past its timeout; raise `--timeout` or look at the slow stage in the "
            "executed notebook.",
        }.get(result.kind, "Open the executed notebook at the failing cell; the traceback is there."),
        run_id=run_id.base,
        client_id=job.client_id,
        stage="notebook",
        notebook=job.output_path,
        cell=result.cell,
    )
    ws.records.update(
        record, events, status=ClientRunStatus.FAILED, reason=reason, failure=failure, notebook=job.output_path
    )
    return ClientRunStatus.FAILED.value


def settle_stopped(ws: Workspace, run_id: RunId, jobs: Mapping[str, NotebookJob], why: str) -> list[str]:
    """After a stopped batch's kernels are gone (`leadkit.batch.kernels.stop_batch`): no ClientRun of the run is
    left Running. Each Running one (its kernel was stopped before it could say so, or its notebook never started)
    becomes Failed with the reason `why` (`interrupted (signal N)` for a signal: its outcome reads Interrupted),
    once its actor runs are aborted and its Processing leads released. A record its kernel already ended keeps
    its status; one it ended as interrupted takes the reason `why` (the signal the batch got, not the SIGTERM the
    batch sent its kernel). Every record handed out in `jobs` gets its executed notebook when one was written
    (the cells run so far). Returns the client IDs settled here."""
    from leadkit.harvest.orphans import release_orphans  # httpx only when a record is settled: the batch stays light

    settled = []
    for record in ws.store.list_client_runs(run_id=run_id.base):
        job = jobs.get(record.client_id)
        if job is None and record.status is not ClientRunStatus.RUNNING:
            continue
        if job is not None:
            ws.store.write_left_save(run_id.base, record.client_id)  # what a killed kernel held back, if anything
            record = ws.store.get_client_run(run_id.base, record.client_id) or record
        notebook = job.output_path if job is not None and Path(job.output_path).is_file() else None
        if record.status is not ClientRunStatus.RUNNING:
            # its kernel ended it; one it ended as interrupted (by the batch's SIGTERM) gets the batch's reason
            again = job is not None and record.outcome == INTERRUPTED and record.reason != why
            if again or (notebook is not None and record.notebook != notebook):
                ws.records.update(record, reason=why if again else None, notebook=notebook)
            continue
        released = release_orphans(ws.store, ws.settings, record)
        started = notebook is not None
        message = f"{why}: the batch was stopped " + (
            "while this client's notebook ran" if started else "before this client's notebook started"
        )
        events = [RunEvent(run_id.base, record.client_id, "notebook", EventKind.FAILED, message)]
        if released.message():
            events.append(RunEvent(run_id.base, record.client_id, "harvest", EventKind.INFO, released.message()))
        error = NotebookError(message)
        failure = Failure(
            category=str(error.category),
            fingerprint=fingerprint(str(error.category), why),
            message=message,
            hint=f"Nothing is wrong with the client: its batch was stopped. Resume with `leadkit batch --resume "
            f"{run_id.base}`" + (" (the executed notebook shows the cells that ran)." if started else "."),
            run_id=run_id.base,
            client_id=record.client_id,
            stage="notebook",
            notebook=notebook,
        )
        ws.records.update(record, events, status=ClientRunStatus.FAILED, reason=why, failure=failure, notebook=notebook)
        settled.append(record.client_id)
    return settled
