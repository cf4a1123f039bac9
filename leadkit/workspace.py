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
from leadkit.private import GROUP_DIR, PRIVATE_DIR, write_private
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
        if not is_workspace_or_empty(home_path) and not is_initialised(home_path):
            raise ConfigError(
                f"{home_path.resolve()} holds files that are not a leadkit workspace; refusing to write there",
                hint="Point LEADKIT_HOME at an empty or missing folder, or at an existing leadkit workspace.",
            )
        if not home_path.exists():
            home_path.mkdir(parents=True, mode=PRIVATE_DIR)
            home_path.chmod(PRIVATE_DIR)
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

    def lab_path(self, notebook: str | Path) -> str | None:
        """The path `leadkit lab` opens an executed notebook by (its Lab root is the workspace): a link to
        `/lab/tree/<this>` opens it. None for a notebook outside the workspace."""
        path = Path(notebook)
        if not path.is_absolute():
            path = self.home / path
        try:
            return path.resolve().relative_to(self.home.resolve()).as_posix()
        except ValueError:
            return None

    def lab_link(self, notebook: str | Path) -> str | None:
        """A link (`/lab/tree/...`) that opens an executed notebook in `leadkit lab`; None outside the workspace."""
        from urllib.parse import quote

        rel = self.lab_path(notebook)
        return None if rel is None else f"/lab/tree/{quote(rel)}"

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


#: The first line of the `.env` that `leadkit init` writes: how a folder holding only it is known as a workspace.
ENV_TEMPLATE_MARK = "# leadkit settings for this workspace."


def is_initialised(home: Path) -> bool:
    """A folder `leadkit init` (or the demo) made: it holds the SQLite store or the workspace's `.env`."""
    from leadkit.store.sqlite import workspace_exists

    env = home / ".env"
    if workspace_exists(home):
        return True
    try:
        return env.is_file() and env.read_text(encoding="utf-8", errors="replace").startswith(ENV_TEMPLATE_MARK)
    except OSError:
        return False


def init_workspace(home: Path, store_url: str, settings: Settings, *, group: bool = False) -> tuple[bool, list[str]]:
    """Create an empty workspace at `home` with a commented `.env`: (created?, what was done). Refuses a folder
    holding other files; an existing workspace is left as it is. With an Airtable store the master base is only
    checked (the caller runs the schema check); its URL goes into the `.env`. The folder is made 0700 (0750 with
    `group`) and the `.env` 0600."""
    from leadkit.config import env_template
    from leadkit.store.sqlite import is_workspace_or_empty

    if is_initialised(home):
        return False, [f"{home} is already a leadkit workspace: nothing changed"]
    if not is_workspace_or_empty(home):
        raise ConfigError(
            f"{home} holds files that are not a leadkit workspace; refusing to write there",
            hint="Point LEADKIT_HOME (or `leadkit init --home`) at an empty or missing folder.",
        )
    done = []
    mode = GROUP_DIR if group else PRIVATE_DIR
    try:
        home.mkdir(parents=True, exist_ok=True, mode=mode)
        home.chmod(mode)
        template = env_template()
        if store_url:
            template = template.replace("# LEADKIT_STORE=\n", f"LEADKIT_STORE={store_url}\n")
        write_private(home / ".env", template)
    except OSError as exc:
        raise ConfigError(f"cannot create the workspace {home}: {exc.strerror or exc}") from None
    done.append(f"made {home} mode {mode:o} ({'you and your group' if group else 'only you'} can read it)")
    done.append(f"wrote {home / '.env'} mode 600 (every setting, commented; fill in the tokens)")
    if not store_url.startswith("airtable://"):
        ws = Workspace.create(home, settings=settings.model_copy(update={"leadkit_home": home, "leadkit_store": ""}))
        ws.close()
        done.append(f"created the SQLite store {home / 'leadkit.sqlite'} (no clients yet)")
    return True, done


#: The file in a workspace listing the clients `leadkit demo` created (so the demo can tell them from real ones).
DEMO_FILE = "demo-clients.json"


def demo_client_ids(home: Path) -> set[str]:
    """The IDs of the clients the demo created in the workspace at `home` (none when it never ran there)."""
    import json

    try:
        data = json.loads((Path(home) / DEMO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(c) for c in data} if isinstance(data, list) else set()


def record_demo_clients(home: Path, client_ids: Sequence[str]) -> None:
    import json

    path = Path(home) / DEMO_FILE
    path.write_text(json.dumps(sorted(demo_client_ids(home) | set(client_ids))), encoding="utf-8")


def harvesting_clients(ws: Workspace) -> list[str]:
    """Active clients (not the demo's) whose settings ask for post harvesting: who needs APIFY_TOKEN."""
    demo = demo_client_ids(ws.home)
    return [
        c.client_id
        for c in ws.store.list_clients()
        if c.active and c.service_level >= 2 and c.post_access and c.daily_target > 0 and c.client_id not in demo
    ]
