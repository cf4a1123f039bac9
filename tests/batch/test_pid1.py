"""A batch that is PID 1 (a container's entrypoint; here a fresh PID namespace through `unshare -pf
--mount-proc`, which needs root and util-linux, as on the CI machine) runs its kernels like any other: a kernel
compares its parent with the batch's PID, not with 1 (seen to fail with `os.getppid() == 1` as the test: every
kernel exited at start, "Kernel died before replying")."""

from __future__ import annotations

import subprocess

from leadkit.models import ClientRunStatus, RunStatus

from .conftest import LEADKIT, Env


def test_a_batch_that_is_pid_1_runs_its_kernels(batch_env: Env) -> None:
    ws = batch_env.ws
    done = subprocess.run(
        [
            "unshare",
            "-pf",
            "--mount-proc",
            LEADKIT,
            "batch",
            "--clients",
            "Acme-Co,Globex",
            "--stages",
            "eligibility",
            "--concurrency",
            "2",
            "--timeout",
            "300",
        ],
        env=batch_env.env,
        cwd=ws.home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (run,) = ws.store.list_runs()
    assert run.status is RunStatus.COMPLETED, run
    records = ws.store.list_client_runs(run_id=run.run_id)
    assert sorted(r.client_id for r in records) == ["Acme-Co", "Globex"]
    assert all(r.status is ClientRunStatus.COMPLETED for r in records), [(r.client_id, r.reason) for r in records]
