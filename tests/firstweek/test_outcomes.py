"""One truth per client outcome: `runs`, `failures`, `rerun --failed --dry-run`, `health` and the batch exit code
agree over one client of each outcome, through the real command line (`leadkit.cli.run`, what `leadkit` runs)."""

from __future__ import annotations

import json
import shlex

import pytest

from leadkit.classify import failure_from
from leadkit.cli import run
from leadkit.errors import ConfigError, UpstreamError
from leadkit.history import batch_exit_code
from leadkit.models import ClientRunStatus, Source
from leadkit.runids import RunId
from leadkit.workspace import Workspace

#: client -> the outcome its latest attempt ends with
OUTCOMES = {
    "Acme-Co": ClientRunStatus.COMPLETED,
    "Globex": ClientRunStatus.COMPLETED_WITH_ERRORS,
    "Initech": ClientRunStatus.FAILED,
    "Umbrella-Corp": ClientRunStatus.STALE,
    "Hooli": ClientRunStatus.SKIPPED,
}
COUNTS_AS_FAILED = {"Globex", "Initech", "Umbrella-Corp"}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def outcomes(workspace: Workspace) -> str:
    """A finished run with one client of each outcome; its run ID."""
    records = workspace.records
    batch = records.start_run()
    rid = RunId.parse(batch.run_id)
    opened = {r.client_id: r for r in records.open_many(rid, list(OUTCOMES), Source.BATCH)}
    for cid, status in OUTCOMES.items():
        failure = None
        if cid == "Globex":
            exc: Exception = UpstreamError("Apify answered 502 for http://127.0.0.1:1/v2/acts/x/runs (3 tries)")
            failure = failure_from(exc, run_id=batch.run_id, client_id=cid, stage="harvest")
        elif cid == "Initech":
            exc = ConfigError("APIFY_TOKEN is not set")
            failure = failure_from(exc, run_id=batch.run_id, client_id=cid, stage="harvest")
        reason = "no heartbeat for 999 s" if status is ClientRunStatus.STALE else "done"
        records.update(opened[cid], status=status, reason=reason, failure=failure)
    records.finish_run(batch)
    return batch.run_id


def test_each_report_counts_the_same_clients_as_failed(
    workspace: Workspace, outcomes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "runs", "--json")
    assert code == 0
    assert json.loads(out)[0]["clients_failed"] == len(COUNTS_AS_FAILED)

    code, out, err = cli(capsys, "rerun", "--failed", "--dry-run", "--json")
    assert code == 0, err
    assert {f["client_id"] for f in json.loads(out)} == COUNTS_AS_FAILED

    code, out, _ = cli(capsys, "failures")
    assert code == 0
    commands = [line.split("re-run: ", 1)[1] for line in out.splitlines() if "re-run: leadkit" in line]
    assert commands, out
    rerun_by_commands: set[str] = set()
    for command in commands:
        argv = shlex.split(command)[1:] + ["--dry-run", "--json"]
        code, got, err = cli(capsys, *argv)
        assert code == 0, err
        named = {argv[i + 1] for i, a in enumerate(argv) if a == "--client"}
        chosen = {f["client_id"] for f in json.loads(got)}
        assert chosen == named, (command, chosen)  # the printed command does what it says
        rerun_by_commands |= chosen
    assert rerun_by_commands == COUNTS_AS_FAILED

    code, out, _ = cli(capsys, "health", "Globex")
    assert code == 0
    assert "latest attempt: Completed with Errors" in out and "counts as failed" in out
    code, out, _ = cli(capsys, "health", "Hooli")
    assert "latest attempt: Skipped" in out and "counts as failed" not in out

    run_record = workspace.records.get_run(RunId.parse(outcomes))
    records = workspace.store.list_client_runs(run_id=outcomes)
    assert batch_exit_code(run_record, records) == 1
    completed = [r for r in records if r.client_id in ("Acme-Co", "Hooli")]
    assert batch_exit_code(run_record, completed) == 1  # the run itself did not complete
    run_record.status = type(run_record.status)("Completed")
    assert batch_exit_code(run_record, completed) == 0
    assert batch_exit_code(run_record, [r for r in records if r.client_id == "Globex"]) == 1
    assert batch_exit_code(run_record, completed, lost_lease=True) == 3
