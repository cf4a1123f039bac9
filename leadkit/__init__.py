"""leadkit: run records, post harvesting, auth checks and diagnosis for a multi-tenant lead pipeline.

The public API is small and imported lazily, so `import leadkit` stays cheap in every notebook kernel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "publish_result": "leadkit.notebook",
    "open_workspace": "leadkit.workspace",
    "run_doctor": "leadkit.doctor",
    "run_auth_checks": "leadkit.checks",
    "client_health": "leadkit.health",
    "record_stats": "leadkit.diagnosis",
    "group_failures": "leadkit.diagnosis",
    "failure_headline": "leadkit.diagnosis",
    "client_history": "leadkit.diagnosis",
    "list_attempts": "leadkit.history",
    "run_history": "leadkit.history",
    "run_status_label": "leadkit.history",
    "latest_failed": "leadkit.history",
    "latest_attempt": "leadkit.history",
    "real_client_run_counts": "leadkit.history",
    "counts_as_failed": "leadkit.history",
    "clients_failed": "leadkit.history",
    "run_batch": "leadkit.batch",
    "RunFilter": "leadkit.store.base",
    "RunId": "leadkit.runids",
    "validate_client_id": "leadkit.runids",
    "parse_duration": "leadkit.durations",
    "Settings": "leadkit.config",
    "get_settings": "leadkit.config",
    "Workspace": "leadkit.workspace",
    "RunRecordService": "leadkit.records",
    "run_client": "leadkit.workflow",
    "decide": "leadkit.workflow",
    "Verdict": "leadkit.workflow",
    "Source": "leadkit.models",
    "Client": "leadkit.models",
    "ClientRun": "leadkit.models",
    "ClientRunStatus": "leadkit.models",
    "RunStatus": "leadkit.models",
    "LeadkitError": "leadkit.errors",
    "Category": "leadkit.errors",
    "start_notebook_logging": "leadkit.notebook",
    "client_report": "leadkit.notebook",
    "list_alerts": "leadkit.alerts",
    "channel_states": "leadkit.alerts",
    "alert_summary": "leadkit.alerts",
    "set_triage": "leadkit.alerts",
}

__all__ = [
    "publish_result",
    "open_workspace",
    "run_doctor",
    "run_auth_checks",
    "client_health",
    "record_stats",
    "group_failures",
    "failure_headline",
    "client_history",
    "list_attempts",
    "run_history",
    "run_status_label",
    "latest_failed",
    "latest_attempt",
    "real_client_run_counts",
    "counts_as_failed",
    "clients_failed",
    "run_batch",
    "RunFilter",
    "Category",
    "Client",
    "ClientRun",
    "ClientRunStatus",
    "LeadkitError",
    "RunId",
    "RunRecordService",
    "RunStatus",
    "Settings",
    "Source",
    "Verdict",
    "Workspace",
    "client_report",
    "decide",
    "get_settings",
    "parse_duration",
    "run_client",
    "start_notebook_logging",
    "validate_client_id",
    "list_alerts",
    "channel_states",
    "alert_summary",
    "set_triage",
]

if TYPE_CHECKING:
    from leadkit.alerts import alert_summary, channel_states, list_alerts, set_triage
    from leadkit.batch import run_batch
    from leadkit.config import Settings, get_settings
    from leadkit.diagnosis import client_history, failure_headline
    from leadkit.durations import parse_duration
    from leadkit.errors import Category, LeadkitError
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
    from leadkit.models import Client, ClientRun, ClientRunStatus, RunStatus, Source
    from leadkit.notebook import client_report, start_notebook_logging
    from leadkit.records import RunRecordService
    from leadkit.runids import RunId, validate_client_id
    from leadkit.workflow import Verdict, decide, run_client
    from leadkit.workspace import Workspace


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leadkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
