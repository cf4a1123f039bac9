"""Storage behind one protocol: SQLite (embedded default) and Airtable (production)."""

from __future__ import annotations

from pathlib import Path

from leadkit.errors import ConfigError
from leadkit.store.base import ImportResult, LeadBase, RunFilter, Store

__all__ = ["ImportResult", "LeadBase", "RunFilter", "Store", "open_store"]


def open_store(url: str, home: Path, *, settings: object | None = None, read_only: bool = False) -> Store:
    """Open the store named by `url` (LEADKIT_STORE): "" or "sqlite://" is SQLite inside `home`,
    "sqlite:///path/dir" is SQLite in that folder, "airtable://<base id>" is Airtable. `read_only` opens a SQLite
    store for reading only (Airtable's access is the token's)."""
    if url in ("", "sqlite://", "sqlite"):
        from leadkit.store.sqlite import SQLiteStore

        return SQLiteStore(home, read_only=read_only)
    if url.startswith("sqlite://"):
        from leadkit.store.sqlite import SQLiteStore

        return SQLiteStore(Path(url.removeprefix("sqlite://")), read_only=read_only)
    if url.startswith("airtable://"):
        from leadkit.config import Settings
        from leadkit.store.airtable import AirtableStore

        base_id = url.removeprefix("airtable://").strip("/")
        return AirtableStore(base_id, settings if isinstance(settings, Settings) else Settings())
    raise ConfigError(
        f"LEADKIT_STORE={url!r} is not a store URL leadkit knows",
        hint="Use an empty value or sqlite:// for SQLite in the workspace, or airtable://<master base id> "
        "(a base ID looks like app followed by 14 letters and digits).",
    )
