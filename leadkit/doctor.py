"""`leadkit doctor`: is everything leadkit needs here, before a batch finds out the hard way?

- every dependency leadkit declares is installed at a satisfying version, and its module **imports**, for real, in
  a subprocess with this interpreter and this environment (PYTHONPATH included): a package that is declared and
  present but does not load is the original's own incident ("Cannot find module 'express-rate-limit'");
- the kernel a batch runs notebooks in: which interpreter it starts, and that it can `import leadkit`;
- the settings are present and well formed; one that no client needs yet (APIFY_TOKEN on a demo workspace, or
  with no client that harvests) is a warning;
- the store: the SQLite files are sound (not empty, truncated, corrupt or locked); Airtable bases have every
  table, field and select option leadkit writes, each problem with its fix;
- the workspace exists and is writable.

Each check is ok, warn or fail; only a failure makes `leadkit doctor` exit non-zero. Works with no workspace at
all: that is then one failed check with its hint.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadkit.errors import HINTS, Category, LeadkitError, category_of, hint_of

if TYPE_CHECKING:
    from leadkit.config import Settings
    from leadkit.workspace import Workspace

__all__ = ["DoctorCheck", "DoctorReport", "declared_requirements", "run_doctor"]

#: Extra requirement specs (whitespace-separated) the doctor checks as if declared: how a test reproduces
#: "declared but does not import" without breaking the environment.
EXTRA_REQUIREMENTS_ENV = "LEADKIT_DOCTOR_EXTRA_REQUIREMENTS"

#: Distributions whose import name is not their normalised name.
_IMPORT_NAMES = {"pydantic-settings": "pydantic_settings", "jupyter-client": "jupyter_client"}

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class DoctorCheck:
    """One check. `level` is ok, warn (worth knowing, nothing is broken) or fail; `ok` is false only for fail."""

    name: str
    ok: bool
    category: str | None
    detail: str
    hint: str
    level: str = ""

    def __post_init__(self) -> None:
        if not self.level:
            self.level = OK if self.ok else FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "level": self.level,
            "ok": self.ok,
            "category": self.category,
            "detail": self.detail,
            "hint": self.hint,
        }


@dataclass
class DoctorReport:
    checks: list[DoctorCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[DoctorCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def warnings(self) -> list[DoctorCheck]:
        return [c for c in self.checks if c.level == WARN]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def _ok(name: str, detail: str) -> DoctorCheck:
    return DoctorCheck(name, True, None, detail, "")


def _warn(name: str, category: Category, detail: str, hint: str) -> DoctorCheck:
    return DoctorCheck(name, True, category.value, detail, hint, WARN)


def _fail(name: str, category: Category, detail: str, hint: str | None = None) -> DoctorCheck:
    return DoctorCheck(name, False, category.value, detail, hint or HINTS[category])


def _from_error(name: str, exc: BaseException) -> DoctorCheck:
    return DoctorCheck(name, False, category_of(exc).value, str(exc) or type(exc).__name__, hint_of(exc))


def run_doctor(
    ws_or_none: Workspace | None,
    *,
    settings: Settings | None = None,
    extra_requirements: Sequence[str] | None = None,
    store_problem: LeadkitError | None = None,
) -> DoctorReport:
    """Run every check; never raises for what it checks (each problem is a failed check with a hint).
    `store_problem` is why the workspace could not be opened, when that is why `ws_or_none` is None."""
    report = DoctorReport()
    extra = list(extra_requirements or []) + os.environ.get(EXTRA_REQUIREMENTS_ENV, "").split()
    report.checks.extend(check_dependencies(extra))
    if settings is None and ws_or_none is not None:
        settings = ws_or_none.settings
    if settings is None:
        from leadkit.config import get_settings

        try:
            settings = get_settings()
        except LeadkitError as exc:
            report.checks.append(_from_error("settings", exc))
            return report
    report.checks.append(check_kernel(settings, ws_or_none))
    report.checks.extend(check_settings(settings, ws_or_none))
    workspace = check_workspace(ws_or_none, settings)
    report.checks.extend(workspace)
    opened = ws_or_none is not None or store_problem is not None  # a read-only workspace still has a store
    if opened or all(c.ok for c in workspace) or settings.leadkit_store.startswith("airtable://"):
        report.checks.extend(check_store(ws_or_none, settings, store_problem))
    report.checks.extend(check_alerts(ws_or_none, Path(settings.leadkit_home)))
    return report


def check_alerts(ws: Workspace | None, home: Path | None = None) -> list[DoctorCheck]:
    """The alert channels: each one's last delivery (a failed one is retried with the next alert, see `leadkit
    alerts`); a channel Apprise cannot use is a failure; no channel at all, once the workspace has run a real
    batch, or alerts recorded with no channel to send them, are warnings."""
    from leadkit.alerts.engine import alert_settings, channel_states

    try:
        states = channel_states(ws.store if ws is not None else None, alert_settings(ws.home if ws else home))
    except LeadkitError as exc:
        return [_from_error("alerts", exc)]
    out = []
    unsent = _unsent_alerts(ws)
    if not states:
        real = _real_batches(ws)
        hint = (
            "Set LEADKIT_ALERT_URLS (in the environment or the workspace's .env) to one or more Apprise URLs, e.g. "
            "mailto://user:pass@smtp.example.com?to=ops@example.com, then `leadkit alerts test`."
        )
        if unsent:
            out.append(
                _warn(
                    "alerts",
                    Category.CONFIG,
                    f"{unsent} alert(s) of the last 7 days were recorded with no channel: nobody was told",
                    hint,
                )
            )
        elif real:
            out.append(
                _warn(
                    "alerts",
                    Category.CONFIG,
                    f"no channel in LEADKIT_ALERT_URLS, and this workspace runs batches ({real}): a failure "
                    "would be recorded, not sent",
                    hint,
                )
            )
        else:
            out.append(_ok("alerts", "no channel in LEADKIT_ALERT_URLS: alerts are recorded, not sent"))
        return out
    if unsent:
        out.append(
            _warn(
                "alerts:(no channel)",
                Category.CONFIG,
                f"{unsent} alert(s) of the last 7 days were recorded with no channel (sent while none was set)",
                "They are in `leadkit alerts`; keep LEADKIT_ALERT_URLS set where batches run (the workspace's .env "
                "is read from any folder).",
            )
        )
    out.extend(
        _ok(
            f"alerts:{s.channel}",
            f"last delivery {s.last_at:%Y-%m-%d %H:%M} UTC arrived" if s.last_at else "no alert yet",
        )
        if s.ok
        else _fail(
            f"alerts:{s.channel}",
            Category.UPSTREAM,
            f"the last alert ({s.last_at:%Y-%m-%d %H:%M} UTC) was not delivered: {s.last_error}; "
            f"{s.undelivered} message(s) wait for the next alert",
            "Check the channel (`leadkit alerts test`): its host, port and credentials in LEADKIT_ALERT_URLS.",
        )
        for s in states
    )
    return out


def _unsent_alerts(ws: Workspace | None) -> int:
    """Messages of the last 7 days recorded with no channel (not tests)."""
    from datetime import timedelta

    from leadkit.models import utcnow
    from leadkit.store.base import AlertRecords

    if ws is None or not isinstance(ws.store, AlertRecords):
        return 0
    try:
        alerts = ws.store.list_alerts(since=utcnow() - timedelta(days=7), limit=1000)
    except LeadkitError:
        return 0
    return len({a.message_id for a in alerts if not a.channel and a.kind != "test"})


def _real_batches(ws: Workspace | None) -> str:
    """'' when the workspace has run no batch for a client other than the demo's, else a few words on one."""
    from leadkit.workspace import demo_client_ids

    if ws is None:
        return ""
    demo = demo_client_ids(ws.home)
    try:
        for record in ws.store.list_client_runs(limit=200):
            if record.client_id not in demo:
                return f"run {record.run_id} ran {record.client_id}"
    except LeadkitError:
        return ""
    return ""


# ------------------------------------------------------------------------------------------------ dependencies


def declared_requirements() -> list[str]:
    """The requirement specs leadkit declares for a plain install (no extras): from the installed
    distribution's metadata, or from pyproject.toml when leadkit runs from a source tree not installed."""
    try:
        declared = metadata.requires("leadkit") or []
    except metadata.PackageNotFoundError:
        data = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))
        declared = list(data.get("project", {}).get("dependencies", []))
    return [spec for spec in declared if not _only_for_extras(spec)]


def _only_for_extras(spec: str) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        marker = Requirement(spec).marker
    except InvalidRequirement:
        return False  # reported by check_requirement
    return marker is not None and "extra" in str(marker) and not marker.evaluate({"extra": ""})


def check_dependencies(extra: Iterable[str] = ()) -> list[DoctorCheck]:
    """Each declared requirement: installed at an accepted version (metadata), then imported for real."""
    specs = [*declared_requirements(), *extra]
    checks = [check_requirement(spec) for spec in specs]
    modules = {c.name: c.details_module for c in checks if c.ok and c.details_module}
    results = import_in_subprocess(sorted(set(modules.values())))
    out = []
    for check in checks:
        module = modules.get(check.name)
        error = results.get(module, "the import check did not report on it") if module else ""
        if not error:
            out.append(check.public())
            continue
        out.append(
            _fail(
                check.name,
                Category.DEPENDENCY,
                f"{check.spec} is installed, but `import {module}` fails: {error}",
                f"Reinstall it in the environment that runs leadkit ({_env()}): "
                f"`{sys.executable} -m pip install --force-reinstall '{check.spec}'`; if a folder on PYTHONPATH "
                f"or the working directory holds a module named {module!r}, rename or remove it.",
            )
        )
    return out


_IMPORT_SCRIPT = """
import importlib, json, sys
out = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
        out[name] = ""
    except BaseException as exc:  # SystemExit or KeyboardInterrupt raised at import time count too
        out[name] = f"{type(exc).__name__}: {exc}"
print("LEADKIT-IMPORTS " + json.dumps(out))
"""

#: Longest time the import check may take (importing panel and jupyterlab cold takes seconds).
IMPORT_TIMEOUT_S = 120.0


def import_in_subprocess(modules: Sequence[str], *, python: str | None = None) -> dict[str, str]:
    """Import `modules` in a fresh interpreter (this one unless `python`) with this process's environment,
    PYTHONPATH and working directory: module -> "" (imported) or the error. Never raises. The answer is kept for
    the life of this process, per interpreter, environment and folder (a second report in one process reuses it)."""
    return dict(_imports(tuple(modules), python or sys.executable, tuple(sorted(os.environ.items())), os.getcwd()))


@functools.lru_cache(maxsize=8)
def _imports(
    modules: tuple[str, ...], python: str, environ: tuple[tuple[str, str], ...], cwd: str
) -> tuple[tuple[str, str], ...]:
    return tuple(_run_imports(modules, python, dict(environ), cwd).items())


def _run_imports(modules: Sequence[str], python: str, environ: dict[str, str], cwd: str) -> dict[str, str]:
    import json
    import subprocess

    if not modules:
        return {}
    argv = [python, "-c", _IMPORT_SCRIPT, json.dumps(list(modules))]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, env=environ, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {m: f"the import check could not run: {exc}" for m in modules}
    for line in done.stdout.splitlines():
        if line.startswith("LEADKIT-IMPORTS "):
            return dict(json.loads(line.removeprefix("LEADKIT-IMPORTS ")))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {m: f"the interpreter died while importing (exit {done.returncode}: {tail})" for m in modules}


def _import_name(dist: str) -> str:
    canonical = re.sub(r"[-_.]+", "-", dist).lower()
    if canonical in _IMPORT_NAMES:
        return _IMPORT_NAMES[canonical]
    provided = sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if any(re.sub(r"[-_.]+", "-", d).lower() == canonical for d in dists)
    )
    plain = canonical.replace("-", "_")
    if plain in provided or not provided:
        return plain
    public = [m for m in provided if not m.startswith("_")]
    return (public or provided)[0]


@dataclass
class _Requirement(DoctorCheck):
    spec: str = ""
    details_module: str | None = None

    def public(self) -> DoctorCheck:
        return DoctorCheck(self.name, self.ok, self.category, self.detail, self.hint, self.level)


def check_requirement(spec: str) -> _Requirement:
    """One declared requirement from the metadata: installed, at a version the spec accepts. The module to import
    is in `details_module` (check_dependencies imports it)."""
    from packaging.requirements import InvalidRequirement, Requirement

    def result(check: DoctorCheck, module: str | None = None) -> _Requirement:
        return _Requirement(check.name, check.ok, check.category, check.detail, check.hint, check.level, spec, module)

    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        return result(
            _fail(f"dependency:{spec}", Category.DATA, f"declared requirement {spec!r} does not parse: {exc}")
        )
    name = f"dependency:{req.name}"
    install = f"Run `make setup` (or `pip install '{spec}'`) in the environment that runs leadkit ({_env()})."
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return result(_ok(name, f"{spec}: not needed on this platform"))
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return result(_fail(name, Category.DEPENDENCY, f"{spec} is declared but not installed", install))
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return result(
            _fail(name, Category.DEPENDENCY, f"{spec} is declared but {req.name} {version} is installed", install)
        )
    module = _import_name(req.name)
    return result(_ok(name, f"{req.name} {version} ({spec}) is installed; `import {module}` works"), module)


def _env() -> str:
    return sys.prefix


# ------------------------------------------------------------------------------------------------ kernel


def check_kernel(settings: Settings, ws: Workspace | None) -> DoctorCheck:
    """The kernel a batch starts: its interpreter, and that it imports leadkit (the same one as this process)."""
    import json
    import subprocess

    from leadkit.batch import KERNEL_NAME

    name = f"kernel:{KERNEL_NAME}"
    fix = (
        f"Register this environment's kernel: `{sys.executable} -m ipykernel install --user --name {KERNEL_NAME}`, "
        f"or remove the kernel spec that points elsewhere (`jupyter kernelspec list`)."
    )
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        return _fail(name, Category.DEPENDENCY, f"no Jupyter kernel named {KERNEL_NAME!r} is installed", fix)
    except Exception as exc:  # a broken kernel.json
        return _fail(name, Category.DEPENDENCY, f"the kernel spec {KERNEL_NAME!r} cannot be read: {exc}", fix)
    python = spec.argv[0] if spec.argv else ""
    if python in ("python", "python3", "{python}") or not python:
        python = sys.executable
    script = "import json, sys, leadkit; print(json.dumps([sys.executable, leadkit.__file__]))"
    try:
        done = subprocess.run(  # from the workspace, where kernels run: not from a checkout that has leadkit/
            [python, "-c", script],
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            env=dict(os.environ),
            cwd=ws.home if ws is not None and ws.home.is_dir() else tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _fail(name, Category.DEPENDENCY, f"the kernel's interpreter {python} does not run: {exc}", fix)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return _fail(
            name,
            Category.DEPENDENCY,
            f"the kernel {KERNEL_NAME!r} runs {python}, which cannot import leadkit: {error}",
            fix,
        )
    try:
        executable, module_file = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return _fail(name, Category.DEPENDENCY, f"the kernel's interpreter {python} answered oddly", fix)
    import leadkit

    ours = Path(leadkit.__file__).resolve().parent
    if Path(module_file).resolve().parent != ours:
        return _warn(
            name,
            Category.DEPENDENCY,
            f"the kernel {KERNEL_NAME!r} runs {executable}, which imports another leadkit ({module_file}, not {ours})",
            fix,
        )
    return _ok(name, f"{KERNEL_NAME!r} runs {executable} and imports leadkit from {ours}")


# ------------------------------------------------------------------------------------------------ settings


def _url_check(name: str, setting: str, value: str) -> DoctorCheck:
    if re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", value.strip()) is None:
        return _fail(
            name,
            Category.CONFIG,
            f"{setting}={value!r} is not an http(s) URL",
            f"Set {setting} to the API root, e.g. the default, or a sandbox's URL (`leadkit sandbox` prints it).",
        )
    return _ok(name, f"{setting}={value}")


def _apify_needed(ws: Workspace | None) -> list[str] | None:
    """The clients that need APIFY_TOKEN (None: unknown, no workspace to ask)."""
    if ws is None:
        return None
    from leadkit.workspace import harvesting_clients

    try:
        return harvesting_clients(ws)
    except LeadkitError:
        return None


def check_settings(settings: Settings, ws: Workspace | None = None) -> list[DoctorCheck]:
    from leadkit.store.schema import BASE_ID_RE

    out = []
    store = settings.leadkit_store
    if store in ("", "sqlite", "sqlite://") or store.startswith("sqlite://"):
        out.append(_ok("settings:LEADKIT_STORE", f"SQLite ({store or 'in the workspace'})"))
    elif store.startswith("airtable://"):
        base = store.removeprefix("airtable://").strip("/")
        if BASE_ID_RE.fullmatch(base) is None:
            out.append(
                _fail(
                    "settings:LEADKIT_STORE",
                    Category.CONFIG,
                    f"LEADKIT_STORE={store!r}: {base!r} is not an Airtable base ID",
                    "A base ID is 'app' followed by 14 letters and digits; copy it from the base's URL.",
                )
            )
        else:
            out.append(_ok("settings:LEADKIT_STORE", f"Airtable master base {base}"))
        if settings.airtable_api_key is None or not settings.airtable_api_key.get_secret_value().strip():
            out.append(
                _fail(
                    "settings:AIRTABLE_API_KEY",
                    Category.CONFIG,
                    "AIRTABLE_API_KEY is not set, and the store is Airtable",
                    "Set AIRTABLE_API_KEY to a personal access token with data.records:read/write and "
                    "schema.bases:read on the master base and every client base.",
                )
            )
        else:
            out.append(_ok("settings:AIRTABLE_API_KEY", "set"))
    else:
        out.append(
            _fail(
                "settings:LEADKIT_STORE",
                Category.CONFIG,
                f"LEADKIT_STORE={store!r} is not a store URL leadkit knows",
                "Use an empty value or sqlite:// for SQLite in the workspace, or airtable://<master base id>.",
            )
        )
    out.append(_url_check("settings:AIRTABLE_ENDPOINT_URL", "AIRTABLE_ENDPOINT_URL", settings.airtable_endpoint_url))
    out.append(_url_check("settings:APIFY_API_URL", "APIFY_API_URL", settings.apify_api_url))
    if settings.apify_token is None or not settings.apify_token.get_secret_value().strip():
        needed = _apify_needed(ws)
        hint = (
            "Set APIFY_TOKEN in the environment or the workspace's .env (Apify Console > Settings > API & "
            "Integrations)."
        )
        if needed:
            shown = ", ".join(needed[:5]) + (f" and {len(needed) - 5} more" if len(needed) > 5 else "")
            out.append(
                _fail(
                    "settings:APIFY_TOKEN",
                    Category.CONFIG,
                    f"APIFY_TOKEN is not set, and {shown} harvest posts: their batches will fail",
                    hint,
                )
            )
        else:
            why = "no Active client harvests posts" if needed == [] else "no workspace to tell who needs it"
            out.append(
                _warn(
                    "settings:APIFY_TOKEN",
                    Category.CONFIG,
                    f"APIFY_TOKEN is not set; not needed yet ({why}; the demo's clients use its sandbox)",
                    hint + " Needed once a client harvests posts.",
                )
            )
    else:
        out.append(_ok("settings:APIFY_TOKEN", "set"))
    if not settings.apify_actor_id.strip():
        out.append(
            _fail(
                "settings:APIFY_ACTOR_ID",
                Category.CONFIG,
                "APIFY_ACTOR_ID is empty",
                "Set APIFY_ACTOR_ID to the actor that harvests posts, e.g. harvestapi~linkedin-profile-posts.",
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ workspace


def check_workspace(ws: Workspace | None, settings: Settings) -> list[DoctorCheck]:
    from leadkit.store.sqlite import workspace_exists
    from leadkit.workspace import NO_WORKSPACE_HINT

    home = ws.home if ws is not None else Path(settings.leadkit_home).resolve()
    if ws is None and not home.is_dir():
        return [
            _fail(
                "workspace",
                Category.CONFIG,
                f"no workspace folder at {home} (LEADKIT_HOME)",
                NO_WORKSPACE_HINT,
            )
        ]
    is_sqlite = not settings.leadkit_store.startswith("airtable://")
    if ws is None and is_sqlite and not settings.leadkit_store.startswith("sqlite://") and not workspace_exists(home):
        return [
            _fail(
                "workspace",
                Category.CONFIG,
                f"{home} (LEADKIT_HOME) is not a leadkit workspace",
                NO_WORKSPACE_HINT,
            )
        ]
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-", delete=True) as fh:
            fh.write(b"ok")
    except OSError as exc:
        return [
            _fail(
                "workspace",
                Category.CONFIG,
                f"the workspace {home} is not writable: {exc.strerror or exc}",
                "Executed notebooks and logs are written there: fix its permissions or point LEADKIT_HOME elsewhere.",
            )
        ]
    return [_ok("workspace", f"{home} exists and is writable"), *check_private(home)]


def check_private(home: Path) -> list[DoctorCheck]:
    """The workspace's `.env` (tokens, alert channel URLs, the dashboard login) and the folder itself (client
    data) are not readable by every user of the host; each one that is, is a warning with the chmod that fixes
    it."""
    import stat

    out = []
    env = home / ".env"
    try:
        env_mode = env.stat().st_mode if env.is_file() else None
        home_mode = home.stat().st_mode
    except OSError:
        return []
    if env_mode is not None and env_mode & (stat.S_IROTH | stat.S_IWOTH):
        out.append(
            _warn(
                "workspace:.env",
                Category.CONFIG,
                f"{env} is readable by every user of this host (mode {stat.S_IMODE(env_mode):o}); it holds tokens",
                f"chmod 600 {env}",
            )
        )
    if home_mode & stat.S_IROTH:
        out.append(
            _warn(
                "workspace:mode",
                Category.CONFIG,
                f"the workspace {home} is readable by every user of this host (mode {stat.S_IMODE(home_mode):o}); "
                "it holds client names, leads and run records",
                f"chmod 700 {home}  (or chmod 750 to share it with your group)",
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ store


def check_store(ws: Workspace | None, settings: Settings, problem: LeadkitError | None = None) -> list[DoctorCheck]:
    """The store's state. SQLite: the master file and every client base are sound (header, size, and SQLite's own
    quick check), read without writing anything. Airtable: the schema of the master base and the clients' bases."""
    if settings.leadkit_store.startswith("airtable://"):
        if problem is not None:
            return [_from_error("store", problem)]
        return _airtable_schema(ws, settings)
    if problem is not None:
        return [_from_error("store", problem)]
    from leadkit.store.sqlite import BASES_DIR, MASTER_FILE, check_file

    home = ws.home if ws is not None else Path(settings.leadkit_home).resolve()
    if settings.leadkit_store.startswith("sqlite://") and len(settings.leadkit_store) > len("sqlite://"):
        home = Path(settings.leadkit_store.removeprefix("sqlite://"))
    out = []
    files = [home / MASTER_FILE, *sorted((home / BASES_DIR).glob("*.sqlite"))]
    bad = []
    for path in files:
        try:
            check_file(path)
        except LeadkitError as exc:
            bad.append(_from_error(f"store:{path.relative_to(home)}", exc))
    out.extend(bad)
    if not bad:
        out.append(_ok("store", f"{home / MASTER_FILE} and {len(files) - 1} client base(s) are sound"))
    return out


def _airtable_schema(ws: Workspace | None, settings: Settings) -> list[DoctorCheck]:
    from leadkit.store.airtable import AirtableStore, make_api
    from leadkit.store.provision import check_schema

    master = settings.leadkit_store.removeprefix("airtable://").strip("/")
    try:
        api = make_api(settings)
    except LeadkitError as exc:
        return [_from_error("schema", exc)]
    out = _schema_checks(lambda: check_schema(api, master, "master"), master, "master base")
    if not all(c.ok for c in out):
        return out
    try:
        store = ws.store if ws is not None else AirtableStore(master, settings, api=api)
        clients = [c for c in store.list_clients() if c.base_id]
    except LeadkitError as exc:
        return [*out, _from_error(f"schema:{master}:clients", exc)]
    seen: set[str] = set()
    for client in clients:
        if client.base_id is None or client.base_id in seen:
            continue
        seen.add(client.base_id)
        base_id = client.base_id
        out.extend(
            _schema_checks(partial(check_schema, api, base_id, "client"), base_id, f"base of {client.client_id}")
        )
    return out


def _schema_checks(run: Callable[[], list[Any]], base_id: str, what: str) -> list[DoctorCheck]:
    try:
        problems = run()
    except LeadkitError as exc:
        return [_from_error(f"schema:{base_id}", exc)]
    if not problems:
        return [_ok(f"schema:{base_id}", f"{what} {base_id} has every table, field and select option leadkit writes")]
    out = []
    for problem in problems:
        where = ".".join(p for p in (problem.table, problem.field) if p)
        if problem.option:
            where += f"={problem.option}"
        out.append(
            _fail(
                f"schema:{base_id}:{where}",
                Category.SCHEMA,
                f"{what}: {problem.describe()}",
                problem.fix[:1].upper() + problem.fix[1:] + ".",
            )
        )
    return out
