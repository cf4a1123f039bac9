"""Settling a client after its notebook ran: a record the notebook left Running becomes Failed with the reason."""

from __future__ import annotations

from leadkit.batch.kernels import NotebookJob, NotebookResult
from leadkit.classify import fingerprint
from leadkit.errors import NotebookError
from leadkit.models import ClientRunStatus, EventKind, Failure, RunEvent
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
