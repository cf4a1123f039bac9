"""The batch: run the client notebook for every selected client through papermill, many at once, under the lease
of each of their streams, record what failed, and exit with a code a scheduler can act on.

One module per concern: ``kernels`` (warm, one-shot kernels: one notebook on a kernel of its own), ``forkserver``
(kernel processes forked from a server that imported the heavy modules once), ``executors`` (threads of the batch
process, or dask), ``lease`` (one batch per stream, held by a provably live process), ``progress``, ``settle`` (a
client after its notebook), ``pruning`` (old executed notebooks and logs), ``runner`` (selection, sweep, resume,
the batch itself). The Apify slots the kernels share are ``leadkit.capacity``.
"""

from leadkit.batch.kernels import KERNEL_NAME, KERNELS_LOG, NotebookJob, NotebookResult, execute_notebook
from leadkit.batch.lease import BatchLease, StreamLeases
from leadkit.batch.progress import Progress
from leadkit.batch.pruning import PRUNABLE_SUFFIXES, PruneReport, prune
from leadkit.batch.runner import (
    CRASH_ENV,
    CRASH_POINTS,
    EXECUTORS,
    NOTEBOOK,
    BatchResult,
    SweepReport,
    default_concurrency,
    kernel_env,
    preflight,
    run_batch,
    select_clients,
    sweep_streams,
)
from leadkit.streams import lease_name, may_harvest

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
    "StreamLeases",
    "SweepReport",
    "NotebookJob",
    "NotebookResult",
    "Progress",
    "PruneReport",
    "default_concurrency",
    "execute_notebook",
    "kernel_env",
    "lease_name",
    "may_harvest",
    "preflight",
    "prune",
    "run_batch",
    "select_clients",
    "sweep_streams",
]
