"""The public API is the one used: `leadkit.__all__` is pinned here (a change to it is a decision, made in this
file), every name resolves, the type checker sees every one, and the notebooks (and, below, the dashboard) import
nothing else of leadkit's."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import leadkit

ROOT = Path(__file__).resolve().parent.parent

EXPORTED = {
    "DASHBOARD",
    "MIRRORED_TABLES",
    "AirtableMirror",
    "alert_summary",
    "AuthChecks",
    "ChangeVersions",
    "channel_states",
    "client_health",
    "client_history",
    "client_report",
    "ClientRunResults",
    "Clients",
    "clients_failed",
    "ConfigError",
    "counts_as_failed",
    "describe_run",
    "example_history",
    "example_run",
    "failure_headline",
    "Failures",
    "FailureTriage",
    "get_settings",
    "group_failures",
    "JobTracking",
    "lab_link",
    "latest_attempt",
    "latest_failed",
    "LeadBase",
    "LeadkitError",
    "list_alerts",
    "list_attempts",
    "MirrorKeeper",
    "MissingRecordError",
    "notebook_workspace",
    "open_workspace",
    "publish_result",
    "read_tally",
    "real_client_run_counts",
    "record_stats",
    "requests_for",
    "run_auth_checks",
    "run_batch",
    "run_client",
    "run_history",
    "run_status_label",
    "RunEvents",
    "RunFilter",
    "RunId",
    "RunStatus",
    "set_triage",
    "Source",
    "start_notebook_logging",
    "Store",
    "usage_report",
    "Workspace",
    "workspace_health",
}


def test_exported_members() -> None:
    assert set(leadkit.__all__) == EXPORTED
    assert len(leadkit.__all__) == len(EXPORTED), "a name is listed twice"
    for name in leadkit.__all__:
        assert getattr(leadkit, name) is not None, name
        assert name in dir(leadkit)


def test_the_type_checker_sees_every_exported_name() -> None:
    tree = ast.parse((ROOT / "leadkit" / "__init__.py").read_text())
    guarded = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {
        alias.asname or alias.name for node in guarded.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert seen == EXPORTED


def leadkit_uses(source: str) -> tuple[set[str], set[str]]:
    """(modules of leadkit imported other than the package itself, names taken from the package) in `source`,
    where `import leadkit as lk` makes `lk.name` a name taken."""
    tree = ast.parse(source)
    modules: set[str] = set()
    names: set[str] = set()
    aliases = {"leadkit"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "leadkit":
                    aliases.add(alias.asname or "leadkit")
                elif alias.name.startswith("leadkit."):
                    modules.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "leadkit":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("leadkit."):
                modules.add(node.module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            names.add(node.attr)
    return modules, names


def notebook_source(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return "\n".join(re.sub(r"^[%!].*$", "", text, flags=re.M) for text in code)


def test_notebooks_use_only_the_public_api() -> None:
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 5
    for path in notebooks:
        modules, names = leadkit_uses(notebook_source(path))
        assert modules == set(), f"{path.name} imports {sorted(modules)}: use `leadkit`'s public names"
        assert names <= EXPORTED | {"__version__"}, f"{path.name} uses {sorted(names - EXPORTED)}"


def test_the_dashboard_uses_only_the_public_api() -> None:
    modules_seen = sorted((ROOT / "dashboards").glob("*.py"))
    assert len(modules_seen) >= 10
    for path in modules_seen:
        modules, names = leadkit_uses(path.read_text())
        assert modules == set(), f"{path.name} imports {sorted(modules)}: use `leadkit`'s public names"
        assert names <= EXPORTED | {"__version__"}, f"{path.name} uses {sorted(names - EXPORTED)}"


def test_the_check_sees_a_private_import() -> None:
    modules, names = leadkit_uses("import leadkit as lk\nfrom leadkit.diagnosis import x\nlk.decide()\n")
    assert modules == {"leadkit.diagnosis"} and names == {"decide"}
