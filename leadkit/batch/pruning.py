"""Pruning a workspace: executed notebooks and logs of old runs go; records stay."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from leadkit.errors import DataError
from leadkit.models import RunStatus, utcnow
from leadkit.runids import RunId
from leadkit.workspace import Workspace


@dataclass
class PruneReport:
    removed: list[Path] = field(default_factory=list)
    bytes_freed: int = 0
    kept_running: list[str] = field(default_factory=list)


PRUNABLE_SUFFIXES = (".ipynb", ".jsonl", ".log")


def prune(ws: Workspace, older_than: timedelta, *, dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Remove executed notebooks and logs of runs older than `older_than` (by file time); records stay. The
    folders of runs still Running are left alone."""
    cutoff = (now or utcnow()).timestamp() - older_than.total_seconds()
    report = PruneReport()
    if not ws.home.is_dir():
        return report
    for run_dir in sorted(ws.home.iterdir()):
        if not run_dir.is_dir() or not _is_base_run_id(run_dir.name):
            continue
        run = ws.store.get_run(run_dir.name)
        if run is not None and run.status is RunStatus.RUNNING:
            report.kept_running.append(run_dir.name)
            continue
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and path.suffix in PRUNABLE_SUFFIXES and path.stat().st_mtime < cutoff:
                report.bytes_freed += path.stat().st_size
                report.removed.append(path)
                if not dry_run:
                    path.unlink()
        if not dry_run and not any(run_dir.iterdir()):
            run_dir.rmdir()
    return report


def _is_base_run_id(name: str) -> bool:
    try:
        run_id = RunId.parse(name)
    except DataError:
        return False
    return str(run_id) == name and run_id.client_id is None
