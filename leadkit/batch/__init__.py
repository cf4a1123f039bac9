"""The batch: mint a run, open a ClientRun for every selected client, execute the client notebook for each through
papermill in parallel worker processes, record what failed, finish the Run, exit with a code a scheduler can act on.

One module per concern: ``kernels`` (the worker side: a notebook on a kernel started ahead), ``executors`` (local
process pool, dask), ``lease`` (one batch per stream), ``progress``, ``settle`` (a client after its notebook),
``pruning`` (old executed notebooks and logs), ``runner`` (selection, resume, the batch itself).
"""

from leadkit.batch.kernels import KERNEL_NAME, KERNELS_LOG, NotebookJob, NotebookResult, execute_notebook
from leadkit.batch.lease import BatchLease, lease_name
from leadkit.batch.progress import Progress
from leadkit.batch.pruning import PRUNABLE_SUFFIXES, PruneReport, prune
from leadkit.batch.runner import (
    CRASH_ENV,
    CRASH_POINTS,
    EXECUTORS,
    NOTEBOOK,
    BatchResult,
    default_workers,
    kernel_env,
    may_harvest,
    preflight,
    run_batch,
    select_clients,
)

__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "EXECUTORS",
    "KERNEL_NAME",
    "KERNELS_LOG",
    "NOTEBOOK",
    "PRUNABLE_SUFFIXES",
    "BatchLease",
    "BatchResult",
    "NotebookJob",
    "NotebookResult",
    "Progress",
    "PruneReport",
    "default_workers",
    "execute_notebook",
    "kernel_env",
    "lease_name",
    "may_harvest",
    "preflight",
    "prune",
    "run_batch",
    "select_clients",
]
