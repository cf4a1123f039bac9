"""`leadkit doctor`: is everything leadkit needs here, before a batch finds out the hard way?

- every dependency `pyproject.toml` declares is installed at a satisfying version and its module can be found,
  read from the installed distribution's metadata, so a missing one is reported even when the part of leadkit
  that needs it has not been imported yet (the original shipped without `express-rate-limit` for weeks);
- the settings are present and well formed;
- the store: SQLite opens; Airtable bases have every table, field and select option leadkit writes, each
  problem with its fix;
- the workspace exists and is writable.

Works with no workspace at all: that is then one failed check with its hint.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
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


@dataclass
class DoctorCheck:
    name: str
    ok: bool
    category: str | None
    detail: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "category": self.category, "detail": self.detail, "hint": self.hint}


@dataclass
class DoctorReport:
    checks: list[DoctorCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[DoctorCheck]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def _ok(name: str, detail: str) -> DoctorCheck:
    return DoctorCheck(name, True, None, detail, "")


def _fail(name: str, category: Category, detail: str, hint: str | None = None) -> DoctorCheck:
    return DoctorCheck(name, False, category.value, detail, hint or HINTS[category])


def _from_error(name: str, exc: BaseException) -> DoctorCheck:
    return DoctorCheck(name, False, category_of(exc).value, str(exc) or type(exc).__name__, hint_of(exc))


def run_doctor(
    ws_or_none: Workspace | None,
    *,
    settings: Settings | None = None,
    extra_requirements: Sequence[str] | None = None,
) -> DoctorReport:
    """Run every check; never raises for what it checks (each problem is a failed check with a hint)."""
    report = DoctorReport()
    extra = list(extra_requirements or []) + os.environ.get(EXTRA_REQUIREMENTS_ENV, "").split()
    report.checks.extend(check_dependencies(extra))
    if settings is None and ws_or_none is not None:
        settings = ws_or_none.settings
    if settings is None:
        from pydantic import ValidationError

        from leadkit.config import get_settings

        try:
            settings = get_settings()
        except ValidationError as exc:
            report.checks.append(_settings_error(exc))
            return report
    report.checks.extend(check_settings(settings))
    workspace = check_workspace(ws_or_none, settings)
    report.checks.extend(workspace)
    if all(c.ok for c in workspace) or settings.leadkit_store.startswith("airtable://"):
        report.checks.extend(check_store(ws_or_none, settings))
    report.checks.extend(check_alerts(ws_or_none))
    return report


def check_alerts(ws: Workspace | None) -> list[DoctorCheck]:
    """Each alert channel's last delivery; a failed one is retried with the next alert (see `leadkit alerts`)."""
    from leadkit.alerts.engine import alert_settings, channel_states

    try:
        states = channel_states(ws.store if ws is not None else None, alert_settings())
    except LeadkitError as exc:
        return [_from_error("alerts", exc)]
    if not states:
        return [_ok("alerts", "no channel in LEADKIT_ALERT_URLS: alerts are recorded, not sent")]
    return [
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
    ]


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
    return [check_requirement(spec) for spec in [*declared_requirements(), *extra]]


def _import_name(dist: str) -> str:
    canonical = re.sub(r"[-_.]+", "-", dist).lower()
    if canonical in _IMPORT_NAMES:
        return _IMPORT_NAMES[canonical]
    try:
        files = metadata.distribution(dist).read_text("top_level.txt")
    except metadata.PackageNotFoundError:
        files = None
    if files and files.split():
        return files.split()[0]
    return canonical.replace("-", "_")


def check_requirement(spec: str) -> DoctorCheck:
    """One declared requirement: installed, at a version the spec accepts, and its module findable."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        return _fail(f"dependency:{spec}", Category.DATA, f"declared requirement {spec!r} does not parse: {exc}")
    name = f"dependency:{req.name}"
    install = f"Run `make setup` (or `pip install '{spec}'`) in the environment that runs leadkit ({_env()})."
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return _ok(name, f"{spec}: not needed on this platform")
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return _fail(name, Category.DEPENDENCY, f"{spec} is declared but not installed", install)
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return _fail(name, Category.DEPENDENCY, f"{spec} is declared but {req.name} {version} is installed", install)
    module = _import_name(req.name)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:
        return _fail(
            name, Category.DEPENDENCY, f"{req.name} {version}: module {module!r} does not import: {exc}", install
        )
    if not found:
        return _fail(
            name, Category.DEPENDENCY, f"{req.name} {version} is installed but module {module!r} is missing", install
        )
    return _ok(name, f"{req.name} {version} ({spec})")


def _env() -> str:
    import sys

    return sys.prefix


# ------------------------------------------------------------------------------------------------ settings


def _settings_error(exc: Any) -> DoctorCheck:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())).upper() or '(settings)'}: {err.get('msg', '')}"
        for err in exc.errors()
    )
    return _fail(
        "settings",
        Category.CONFIG,
        f"the settings do not validate: {problems}",
        "Fix the named environment variables (or .env); `leadkit --help` lists what each one means.",
    )


def _url_check(name: str, setting: str, value: str) -> DoctorCheck:
    if re.fullmatch(r"https?://[^\s/]+(?:/\S*)?", value.strip()) is None:
        return _fail(
            name,
            Category.CONFIG,
            f"{setting}={value!r} is not an http(s) URL",
            f"Set {setting} to the API root, e.g. the default, or a sandbox's URL (`leadkit sandbox` prints it).",
        )
    return _ok(name, f"{setting}={value}")


def check_settings(settings: Settings) -> list[DoctorCheck]:
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
        out.append(
            _fail(
                "settings:APIFY_TOKEN",
                Category.CONFIG,
                "APIFY_TOKEN is not set: batches cannot harvest posts (dry runs and the demo's sandbox work without it)",
                "Set APIFY_TOKEN in the environment or .env (Apify Console > Settings > API & Integrations).",
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

    home = ws.home if ws is not None else Path(settings.leadkit_home).resolve()
    if ws is None and not home.is_dir():
        return [
            _fail(
                "workspace",
                Category.CONFIG,
                f"no workspace folder at {home} (LEADKIT_HOME)",
                "Run `leadkit demo` to create a demo workspace there, or set LEADKIT_HOME to an existing one.",
            )
        ]
    is_sqlite = not settings.leadkit_store.startswith("airtable://")
    if ws is None and is_sqlite and not settings.leadkit_store.startswith("sqlite://") and not workspace_exists(home):
        return [
            _fail(
                "workspace",
                Category.CONFIG,
                f"{home} (LEADKIT_HOME) is not a leadkit workspace",
                "Run `leadkit demo` to create a demo workspace there, or set LEADKIT_HOME to an existing one.",
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
    return [_ok("workspace", f"{home} exists and is writable")]


# ------------------------------------------------------------------------------------------------ store


def check_store(ws: Workspace | None, settings: Settings) -> list[DoctorCheck]:
    if settings.leadkit_store.startswith("airtable://"):
        return _airtable_schema(ws, settings)
    if ws is not None:
        return [_ok("store", f"{ws.store.url} opens")]
    from leadkit.workspace import Workspace

    try:
        opened = Workspace.open(settings=settings)
    except LeadkitError as exc:
        return [_from_error("store", exc)]
    try:
        return [_ok("store", f"{opened.store.url} opens")]
    finally:
        opened.close()


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
