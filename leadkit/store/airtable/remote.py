"""What the coordinator of a dask batch does so that kernels on other hosts share its workspace's Airtable state:
its own requests pace with theirs through the scheduler, and their usage counts reach its tally."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leadkit.store.airtable.pacing import share_through
from leadkit.store.airtable.usage import USAGE_FILE, UsageLog

log = logging.getLogger(__name__)


@contextmanager
def coordinate(home: Path, scheduler: str) -> Iterator[None]:
    """For the block (a dask batch coordinated from the workspace `home`): every Airtable pacer of this process
    books on `scheduler`, with the batch's kernels; at its end, the usage the kernels counted on the scheduler is
    added to the workspace's tally (each count once, even when the batch failed)."""
    try:
        with share_through(scheduler):
            yield
    finally:
        try:
            added = UsageLog(Path(home) / USAGE_FILE, scheduler="").collect_remote(scheduler)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "the Airtable usage counted on the dask scheduler %s was not added to the workspace (%s); "
                "`leadkit airtable usage --scheduler %s` adds it later",
                scheduler,
                type(exc).__name__,
                scheduler,
            )
        else:
            log.info("added %d Airtable requests counted on other hosts to the workspace's tally", added)
