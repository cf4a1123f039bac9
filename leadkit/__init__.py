"""leadkit: run records, post harvesting, auth checks and diagnosis for a multi-tenant lead pipeline.

This is the public API: the notebooks and the dashboard use these names and nothing else of leadkit's
(`tests/test_public_api.py` pins the list and checks both). `Workspace` (an opened workspace: `ws.store`, a `Store`,
and `ws.records`) and the `Store` and `LeadBase` protocols are documented types: what they offer is public too.
Names are imported lazily, so `import leadkit` stays cheap in every notebook kernel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Workspace": "leadkit.workspace",
    "open_workspace": "leadkit.workspace",
    "Store": "leadkit.store.base",
    "LeadBase": "leadkit.store.base",
    "ChangeVersions": "leadkit.store.base",
    "RunFilter": "leadkit.store.base",
    "RunId": "leadkit.runids",
    "RunStatus": "leadkit.models",
    "Source": "leadkit.models",
    "LeadkitError": "leadkit.errors",
    "ConfigError": "leadkit.errors",
    "MissingRecordError": "leadkit.errors",
    "get_settings": "leadkit.config",
    "run_client": "leadkit.workflow",
    "publish_result": "leadkit.notebook",
    "start_notebook_logging": "leadkit.notebook",
    "client_report": "leadkit.notebook",
    "notebook_workspace": "leadkit.labworkspace",
    "lab_link": "leadkit.labworkspace",
    "run_batch": "leadkit.batch",
    "run_auth_checks": "leadkit.checks",
    "list_attempts": "leadkit.history",
    "run_history": "leadkit.history",
    "run_status_label": "leadkit.history",
    "latest_failed": "leadkit.history",
    "latest_attempt": "leadkit.history",
    "real_client_run_counts": "leadkit.history",
    "counts_as_failed": "leadkit.history",
    "clients_failed": "leadkit.history",
    "client_health": "leadkit.health",
    "workspace_health": "leadkit.health",
    "record_stats": "leadkit.diagnosis",
    "group_failures": "leadkit.diagnosis",
    "failure_headline": "leadkit.diagnosis",
    "client_history": "leadkit.diagnosis",
    "describe_run": "leadkit.diagnosis",
    "example_run": "leadkit.diagnosis",
    "example_history": "leadkit.diagnosis",
    "list_alerts": "leadkit.alerts",
    "channel_states": "leadkit.alerts",
    "alert_summary": "leadkit.alerts",
    "set_triage": "leadkit.alerts",
    "DASHBOARD": "leadkit.requesters",
    "requests_for": "leadkit.requesters",
    "read_tally": "leadkit.store.airtable.usage",
    "usage_report": "leadkit.store.airtable.usage",
    # the dashboard's Airtable mirror, and the master base's tables (the original's names) its views read
    "AirtableMirror": "leadkit.store.mirror",
    "MirrorKeeper": "leadkit.store.mirror",
    "MIRRORED_TABLES": "leadkit.store.mirror",
    "AuthChecks": "leadkit.store.schema",
    "ClientRunResults": "leadkit.store.schema",
    "Clients": "leadkit.store.schema",
    "FailureTriage": "leadkit.store.schema",
    "Failures": "leadkit.store.schema",
    "JobTracking": "leadkit.store.schema",
    "RunEvents": "leadkit.store.schema",
}

__all__ = [
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
    "DASHBOARD",
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
    "MIRRORED_TABLES",
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
]

if TYPE_CHECKING:
    from leadkit.alerts import alert_summary, channel_states, list_alerts, set_triage
    from leadkit.batch import run_batch
    from leadkit.checks import run_auth_checks
    from leadkit.config import get_settings
    from leadkit.diagnosis import (
        client_history,
        describe_run,
        example_history,
        example_run,
        failure_headline,
        group_failures,
        record_stats,
    )
    from leadkit.errors import ConfigError, LeadkitError, MissingRecordError
    from leadkit.health import client_health, workspace_health
    from leadkit.history import (
        clients_failed,
        counts_as_failed,
        latest_attempt,
        latest_failed,
        list_attempts,
        real_client_run_counts,
        run_history,
        run_status_label,
    )
    from leadkit.labworkspace import lab_link, notebook_workspace
    from leadkit.models import RunStatus, Source
    from leadkit.notebook import client_report, publish_result, start_notebook_logging
    from leadkit.requesters import DASHBOARD, requests_for
    from leadkit.runids import RunId
    from leadkit.store.airtable.usage import read_tally, usage_report
    from leadkit.store.base import ChangeVersions, LeadBase, RunFilter, Store
    from leadkit.store.mirror import MIRRORED_TABLES, AirtableMirror, MirrorKeeper
    from leadkit.store.schema import (
        AuthChecks,
        ClientRunResults,
        Clients,
        Failures,
        FailureTriage,
        JobTracking,
        RunEvents,
    )
    from leadkit.workflow import run_client
    from leadkit.workspace import Workspace, open_workspace


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leadkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
