"""Consistent copies of a SQLite workspace's store, made with SQLite's online backup API.

Copying `leadkit.sqlite` with `cp` is not a backup: in WAL mode the latest writes live in `leadkit.sqlite-wal`
until a checkpoint, so a copy without it looks empty or old, and a copy taken during a write can be torn. The
backup API copies a consistent snapshot page by page while batches keep writing. Every database the workspace
holds is copied: the master store, each client base (`bases/*.sqlite`) and the Airtable archive
(`airtable-archive.sqlite`, after `leadkit airtable archive` the only copy of the records it moved), so an
Airtable workspace with an archive is backed up too. The destination is itself a workspace (`LEADKIT_HOME=DEST
leadkit runs` reads it), made private (0700, files 0600). `restore_workspace` (`leadkit restore BACKUP`) copies
a backup into a missing or empty workspace folder the same way. The `.env` (tokens) is not copied: keep it
apart.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from leadkit.errors import ConfigError, DataError
from leadkit.private import PRIVATE_DIR, PRIVATE_FILE

__all__ = ["BackupReport", "backup_workspace", "databases", "restore_workspace"]


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
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))  # private from its creation on
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


def databases(home: Path) -> list[Path]:
    """Every SQLite database of the workspace at `home`: the `*.sqlite` files at its top (the master store, the
    Airtable archive) and each client base under `bases/`."""
    from leadkit.store.sqlite import BASES_DIR

    home = Path(home)
    return [*sorted(home.glob("*.sqlite")), *sorted((home / BASES_DIR).glob("*.sqlite"))]


def _copy_all(home: Path, dest: Path, what: str) -> BackupReport:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest} exists and is not an empty folder; give a new or empty folder for the {what}")
    if dest.resolve() == home.resolve() or home.resolve() in dest.resolve().parents:
        raise DataError(f"{dest} is inside {home}; give a folder outside it for the {what}")
    sources = databases(home)
    if not sources:
        raise ConfigError(f"no SQLite database in {home} to copy (leadkit.sqlite, bases/*.sqlite, the archive)")
    report = BackupReport(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        dest.chmod(PRIVATE_DIR)
        for folder in {s.parent for s in sources}:
            (dest / folder.relative_to(home)).mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    except OSError as exc:
        raise DataError(f"cannot create the {what} folder {dest}: {exc.strerror or exc}") from None
    for source in sources:
        target = dest / source.relative_to(home)
        report.bytes += _copy(source, target)
        report.files.append(target)
    return report


def backup_workspace(home: Path, dest: Path) -> BackupReport:
    """Copy every database of the workspace at `home` (see `databases`) into `dest` (a missing or empty folder),
    each as one consistent file."""
    return _copy_all(Path(home), Path(dest), "backup")


def restore_workspace(backup: Path, home: Path) -> BackupReport:
    """Copy every database of the backup folder `backup` into the workspace folder `home` (missing or empty: a
    restore never overwrites a workspace), each as one consistent file. Put the `.env` back by hand."""
    backup, home = Path(backup), Path(home)
    if not backup.is_dir():
        raise DataError(f"{backup} is not a folder; give the folder `leadkit backup` wrote")
    return _copy_all(backup, home, "restore")
