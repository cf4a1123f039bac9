"""Helpers the notebooks call: logging into the batch's log, the per-client report, and the published result."""

from __future__ import annotations

import html
from typing import Any

from leadkit import logs
from leadkit.workflow import ClientOutcome

#: The MIME type of the output through which a notebook tells the batch how its ClientRun ended.
RESULT_MIMETYPE = "application/vnd.leadkit.result+json"


def start_notebook_logging() -> None:
    """In a kernel started by a batch, send leadkit's records to the batch's log.jsonl."""
    logs.from_environment()


class Report:
    """A two-column table that shows as HTML in Jupyter (values escaped: they come from records) and as text
    elsewhere. No pandas: every kernel of a batch renders one."""

    def __init__(self, rows: list[tuple[str, Any]]) -> None:
        self.rows = rows

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
            f"{html.escape(str(v))}</td></tr>"
            for k, v in self.rows
        )
        return f"<table class='leadkit-report'>{body}</table>"

    def __repr__(self) -> str:
        width = max((len(k) for k, _ in self.rows), default=0)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in self.rows)


def client_report(outcome: ClientOutcome) -> Report:
    """The client's verdict and metrics as a small table."""
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
    return Report(rows)


def publish_result(outcome: ClientOutcome) -> None:
    """Show how the ClientRun ended, as text for people and as a JSON bundle the batch reads from the executed
    notebook (so it need not read the record back)."""
    from IPython.display import display

    record = outcome.record
    text = f"{record.client_id}: {record.status.value}" + (f" ({record.reason})" if record.reason else "")
    display(
        {
            "text/plain": text,
            RESULT_MIMETYPE: {"client_id": record.client_id, "run_id": record.run_id, "status": record.status.value},
        },
        raw=True,
    )
