"""A workspace: the settings, the store and the folder where executed notebooks and logs land.

`Workspace.open()` refuses a workspace that does not exist (every command but `init` and `demo` uses it), and
with `read_only=True` reads it without writing anything (the reading commands; they work on a read-only workspace);
`Workspace.create()` makes one in an empty or missing folder (`leadkit init`, `leadkit demo`); `Workspace.scratch()`
makes a throwaway one (what the notebooks use by default, so running them never touches the user's `runs/`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from leadkit.config import Settings, get_settings
from leadkit.errors import ConfigError
from leadkit.records import RunRecordService
from leadkit.runids import RunId
from leadkit.store import open_store
from leadkit.store.base import Store

NO_WORKSPACE_HINT = (
    "Run `leadkit init` to create an empty workspace there (then `leadkit clients add` or `leadkit clients import`), "
    "or `leadkit demo` for a demo one, or set LEADKIT_HOME to an existing workspace."
)


class Workspace:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.home = Path(settings.leadkit_home).resolve()
        self.store = store
        self.records = RunRecordService(store, stale_after_s=settings.leadkit_stale_after_s)

    @property
    def store_url(self) -> str:
        return self.settings.leadkit_store

    @classmethod
    def open(
        cls, home: str | Path | None = None, *, settings: Settings | None = None, read_only: bool = False
    ) -> Workspace:
        """The existing workspace at `home` (default LEADKIT_HOME). A store file that is unusable (empty,
        corrupt, locked, read-only for a writer) is a StoreUnusable naming it; nothing is created or changed."""
        from leadkit.store.sqlite import workspace_exists

        settings = settings or get_settings()
        if home is not None:
            settings = settings.model_copy(update={"leadkit_home": Path(home)})
        home_path = Path(settings.leadkit_home)
        if not settings.leadkit_store and not workspace_exists(home_path):
            raise ConfigError(f"no leadkit workspace at {home_path.resolve()} (LEADKIT_HOME)", hint=NO_WORKSPACE_HINT)
        if not home_path.is_dir():
            raise ConfigError(
                f"the workspace folder {home_path.resolve()} (LEADKIT_HOME) does not exist", hint=NO_WORKSPACE_HINT
            )
        store = open_store(settings.leadkit_store, home_path, settings=settings, read_only=read_only)
        try:
            store.init()
        except BaseException:
            store.close()
            raise
        return cls(settings, store)

    @classmethod
    def create(cls, home: str | Path | None = None, *, settings: Settings | None = None) -> Workspace:
        """Create (or reuse) a workspace in a missing, empty or leadkit folder; refuse any other folder."""
        from leadkit.store.sqlite import is_workspace_or_empty

        settings = settings or get_settings()
        if home is not None:
            settings = settings.model_copy(update={"leadkit_home": Path(home)})
        home_path = Path(settings.leadkit_home)
        if not is_workspace_or_empty(home_path):
            raise ConfigError(
                f"{home_path.resolve()} holds files that are not a leadkit workspace; refusing to write there",
                hint="Point LEADKIT_HOME at an empty or missing folder, or at an existing leadkit workspace.",
            )
        home_path.mkdir(parents=True, exist_ok=True)
        store = open_store(settings.leadkit_store, home_path, settings=settings)
        store.init()
        return cls(settings, store)

    @classmethod
    def scratch(cls, client_ids: Sequence[str] = ("Acme-Co",)) -> Workspace:
        """A throwaway SQLite workspace in a temporary folder with demo clients (for notebooks run by hand or by
        nbval with their default parameters)."""
        from leadkit.demo import seed

        home = Path(tempfile.mkdtemp(prefix="leadkit-scratch-"))
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
        ws = cls.create(home, settings=settings)
        seed(ws.store, len(client_ids), names=list(client_ids))
        return ws

    def run_dir(self, run_id: RunId | str) -> Path:
        base = run_id.base if isinstance(run_id, RunId) else RunId.parse(run_id).base
        return self.home / base

    def close(self) -> None:
        self.store.close()


def open_workspace(
    home: str | Path | None = None, store_url: str | None = None, *, read_only: bool = False
) -> Workspace:
    """The existing workspace at `home` (default LEADKIT_HOME), optionally with another store URL."""
    settings = get_settings()
    if store_url is not None:
        settings = settings.model_copy(update={"leadkit_store": store_url})
    return Workspace.open(home, settings=settings, read_only=read_only)
