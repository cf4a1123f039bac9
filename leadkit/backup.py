"""Consistent copies of a SQLite workspace's store, made with SQLite's online backup API.

Copying `leadkit.sqlite` with `cp` is not a backup: in WAL mode the latest writes live in `leadkit.sqlite-wal`
until a checkpoint, so a copy without it looks empty or old, and a copy taken during a write can be torn. The
backup API copies a consistent snapshot page by page while batches keep writing. The destination is itself a
workspace: `LEADKIT_HOME=DEST leadkit runs` reads it, and restoring is copying its files back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from leadkit.errors import ConfigError, DataError

__all__ = ["BackupReport", "backup_workspace"]


@dataclass
class BackupReport:
    dest: Path
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


def _copy(source: Path, target: Path) -> int:
    from leadkit.store.sqlite import file_error, inspect_file

    problem = inspect_file(source)
    if problem is not None:
        raise ConfigError(
            f"cannot back up {source}: it {problem}",
            hint="Back up from an earlier backup instead; `leadkit doctor` reports the store's state.",
        )
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=1024)
        dst.execute("PRAGMA journal_mode = DELETE")  # a self-contained file: no -wal to forget when copying
    except sqlite3.Error as exc:
        raise file_error(source, exc) from None
    finally:
        dst.close()
        src.close()
    return target.stat().st_size


def backup_workspace(home: Path, dest: Path) -> BackupReport:
    """Copy the master store and every client base of the SQLite workspace at `home` into `dest` (a missing or
    empty folder), each as one consistent file."""
    from leadkit.store.sqlite import BASES_DIR, MASTER_FILE

    home, dest = Path(home), Path(dest)
    master = home / MASTER_FILE
    if not master.is_file():
        raise ConfigError(f"no SQLite store at {master} to back up")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest} exists and is not an empty folder; give a new or empty folder for the backup")
    if dest.resolve() == home.resolve() or home.resolve() in dest.resolve().parents:
        raise DataError(f"{dest} is inside the workspace {home}; back up to a folder outside it")
    report = BackupReport(dest)
    try:
        (dest / BASES_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the backup folder {dest}: {exc.strerror or exc}") from None
    sources = [master, *sorted((home / BASES_DIR).glob("*.sqlite"))]
    for source in sources:
        target = dest / source.relative_to(home)
        report.bytes += _copy(source, target)
        report.files.append(target)
    return report
