"""Scale-out: the same batch on a dask.distributed LocalCluster; the executed notebooks come back to the
coordinator, which writes them under the workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from distributed import LocalCluster

from leadkit.batch import run_batch
from leadkit.errors import ConfigError
from leadkit.models import ClientRunStatus, RunStatus

from .conftest import Env


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
