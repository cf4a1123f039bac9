"""Scale-out: the same batch on a dask.distributed LocalCluster; the executed notebooks come back to the
coordinator, which writes them under the workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from distributed import LocalCluster

from leadkit.batch import run_batch
from leadkit.config import get_settings
from leadkit.errors import ConfigError
from leadkit.models import ClientRunStatus, RunStatus
from leadkit.workspace import Workspace
from leadkit_sandbox.server import Sandbox

from .conftest import Env, add_harvest_clients


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_batch_on_a_local_cluster_writes_notebooks_under_the_workspace(batch_env: Env, cluster: LocalCluster) -> None:
    result = run_batch(
        batch_env.ws,
        client_ids=["Acme-Co", "Hooli", "Soylent"],
        stages=["eligibility"],
        executor="dask",
        scheduler=cluster.scheduler_address,
        progress=False,
    )
    assert result.exit_code == 0 and result.run.status is RunStatus.COMPLETED
    assert {r.client_id: r.status for r in result.records} == {
        "Acme-Co": ClientRunStatus.COMPLETED,
        "Hooli": ClientRunStatus.SKIPPED,
        "Soylent": ClientRunStatus.SKIPPED,
    }
    for record in result.records:
        path = Path(record.notebook or "")
        assert path.parent == result.run_dir and path.is_file()
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.papermill.parameters["client_id"] == record.client_id


def test_dask_needs_a_scheduler_address(batch_env: Env) -> None:
    with pytest.raises(ConfigError, match="--scheduler"):
        run_batch(batch_env.ws, executor="dask", progress=False)
    assert batch_env.ws.store.list_runs() == []


def test_two_dask_workers_share_the_batchs_apify_limit(batch_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four notebooks at once on two workers, two Apify slots: the sandbox never sees more than two runs."""
    ids = add_harvest_clients(batch_env.ws, 4)
    with Sandbox(rate_limit=0, actor_seconds=1.5) as sandbox:
        monkeypatch.setenv("APIFY_TOKEN", sandbox.token)  # the workers' kernels read it from their own environment
        monkeypatch.setenv("APIFY_API_URL", sandbox.apify_url)
        settings = get_settings(
            leadkit_home=batch_env.ws.home,
            leadkit_store="",
            apify_max_concurrent_runs=2,
            apify_api_url=sandbox.apify_url,
        )
        ws = Workspace.open(batch_env.ws.home, settings=settings)
        with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
            result = run_batch(
                ws, client_ids=ids, executor="dask", scheduler=cluster.scheduler_address, concurrency=4, progress=False
            )
        ws.close()
        assert result.exit_code == 0, [(r.client_id, r.reason) for r in result.records]
        assert result.apify_runs == 2
        assert all(r.status is ClientRunStatus.COMPLETED for r in result.records)
        assert sandbox.apify.runs_started == 4
        assert sandbox.apify.peak_runs == 2  # shared by both workers: never more, and the limit was reached
