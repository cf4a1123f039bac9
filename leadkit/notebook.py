"""Helpers the notebooks call: logging into the batch's log, and the per-client report table."""

from __future__ import annotations

from typing import Any

from leadkit import logs
from leadkit.workflow import ClientOutcome


def start_notebook_logging() -> None:
    """In a kernel started by a batch, send leadkit's records to the batch's log.jsonl."""
    logs.from_environment()


def client_report(outcome: ClientOutcome) -> Any:
    """The client's verdict and metrics as a small pandas table (pandas is imported only here)."""
    import pandas as pd

    record = outcome.record
    rows: list[tuple[str, Any]] = [
        ("client", record.client_id),
        ("client run ID", record.client_run_id),
        ("status", record.status.value),
        ("source", record.source.value),
        ("reason", record.reason or ""),
    ]
    if outcome.verdict is not None:
        rows.append(("due for harvesting", "yes" if outcome.verdict.due else "no"))
        rows.append(("leads waiting", outcome.verdict.leads_waiting))
        rows.append(("posts today", outcome.verdict.posts_today))
    for name, value in sorted(record.metrics.items()):
        rows.append((name, value))
    if record.failure is not None:
        rows.append(("failure", f"{record.failure.category}: {record.failure.message}"))
        rows.append(("hint", record.failure.hint))
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")
