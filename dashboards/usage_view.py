"""The Airtable budget card: the month's requests as the store counted them, against the workspace plan.

It reads only the workspace's tally (`leadkit.store.airtable.usage`), never Airtable itself, so showing it costs
no request; records per base are the last ones `leadkit airtable usage` counted.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

CARD_CSS = """
.lk-usage { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; font-size: 13px; max-width: 720px; }
.lk-usage .lk-usage-over { color: #b00020; font-weight: 600; }
"""


def usage_numbers(ws: Any) -> dict[str, Any] | None:
    """The budget report of the workspace's Airtable store, or None when the store is not Airtable."""
    from leadkit import read_tally, usage_report

    base_id = getattr(ws.store, "base_id", None)
    if not str(getattr(ws.store, "url", "")).startswith("airtable://") or not base_id:
        return None
    return usage_report(read_tally(ws.home), master_base=base_id, plan=ws.settings.leadkit_airtable_plan)


def card_html(report: dict[str, Any] | None) -> str:
    if report is None:
        return '<div class="lk-usage">Airtable budget: the records are in SQLite, no Airtable budget applies.</div>'
    cap = report["monthly_cap"]
    share = report["projected_share"]
    over = share is not None and share > 1
    projection = f"{report['projected_requests']:,}" + (f" of {cap:,} a month" if cap else " (no monthly cap)")
    per_run = report["master_requests_per_client_run"]
    lines = [
        f"<b>Airtable budget</b> · {html.escape(report['month'])} · plan {html.escape(report['plan'])}",
        f"requests: {report['requests']:,} (master {report['master_requests']:,}; the dashboard "
        f"{report['dashboard_requests']:,}, batches and commands {report['other_requests']:,}) · "
        f"client runs: {report['client_runs']:,} · per client run: {per_run if per_run is not None else 'n/a'}",
        f'<span class="{"lk-usage-over" if over else ""}">projected this month: {projection}'
        + (f" ({100 * share:.0f}%)" if share is not None else "")
        + "</span>",
    ]
    for entry in report["records_per_base"]:
        lines.append(
            f"records in {html.escape(entry['base'])}: {entry['records']:,} of {entry['cap']:,} "
            f"({100 * entry['share']:.0f}%)"
        )
    return '<div class="lk-usage">' + "<br>".join(lines) + "</div>"


class UsageCard:
    """The card's pane: `read()` the tally (off the loop), `show(read)` it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pane = pn.pane.HTML("", stylesheets=[CARD_CSS], sizing_mode="stretch_width")

    def read(self) -> dict[str, Any] | None:
        return usage_numbers(self.ws)

    def show(self, report: dict[str, Any] | None) -> None:
        self.pane.object = card_html(report)
