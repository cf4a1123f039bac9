"""The dashboard's Alerts view: each channel's delivery state and last test, the alert history, and the triage
of failure groups (a status and a note), which only a logged-in user (`leadkit dashboard --basic-auth`) can set.

Registered in `dashboards/app.py`; like every view (`dashboards/view.py`) it reads the store in a worker thread
(`read`) and changes its models on the session's loop (`show`).
Every value from a record is shown as text (Tabulator's escaping `plaintext` formatter, `html.escape`).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn

import leadkit as lk

try:
    from dashboards.view import View
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    from view import View  # type: ignore[no-redef]

log = logging.getLogger("leadkit.dashboard")

CHANNEL_COLUMNS = ["Channel", "Last alert", "Delivered", "Error", "Undelivered", "Last test", "Test delivered"]
ALERT_COLUMNS = ["At", "Kind", "Key", "Clients", "Channel", "Delivered", "Error", "Subject"]
TRIAGE_STATUSES = ["NEW", "INVESTIGATING", "FIXED", "IGNORED"]
HISTORY_ROWS = 200  # the newest alert rows read
HISTORY_PAGE = 25  # rows per page of the history table


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _yes(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "NO")


def channel_rows(ws: Any) -> pd.DataFrame:
    rows = [
        [
            s.channel,
            _when(s.last_at),
            _yes(s.last_delivered),
            s.last_error or "",
            str(s.undelivered),
            _when(s.last_test_at),
            _yes(s.last_test_delivered),
        ]
        for s in lk.channel_states(ws)
    ]
    return pd.DataFrame(rows, columns=CHANNEL_COLUMNS, dtype=str)


def alert_rows(ws: Any) -> pd.DataFrame:
    rows = [
        [
            _when(a.at),
            a.kind,
            a.key,
            ", ".join(a.clients),
            a.channel or "(no channel)",
            _yes(a.delivered) if a.channel else "-",
            a.error or "",
            a.subject,
        ]
        for a in lk.list_alerts(ws, limit=HISTORY_ROWS)
    ]
    return pd.DataFrame(rows, columns=ALERT_COLUMNS, dtype=str)


class AlertsView(View):
    """Channels, history and triage. `table` and `set_value` are the dashboard's own helpers (plain-text tables
    that redraw only when their rows changed), handed in by `dashboards/app.py`."""

    def __init__(self, app: Any, *, table: Callable[..., Any], set_value: Callable[[Any, pd.DataFrame], None]) -> None:
        super().__init__(app)
        self.set_value = set_value
        self.channels = table(pd.DataFrame(columns=CHANNEL_COLUMNS), "lk-alert-channels")
        # a page at a time: the browser draws 25 wrapped rows whatever the history holds
        self.history = table(
            pd.DataFrame(columns=ALERT_COLUMNS), "lk-alert-history", pagination="local", page_size=HISTORY_PAGE
        )
        self.user = pn.state.user if pn.state.curdoc is not None else None
        self.fingerprint = pn.widgets.TextInput(label="Fingerprint (or a unique start of it)", width=420)
        self.status = pn.widgets.Select(label="Status", options=TRIAGE_STATUSES, value="INVESTIGATING", width=160)
        self.note = pn.widgets.TextInput(label="Note", width=320)
        self.set_button = pn.widgets.Button(label="Set status", color="primary", css_classes=["lk-triage-set"])
        self.set_button.on_click(self._set)
        self.triage_result = pn.pane.HTML("", css_classes=["lk-triage-result"])
        logged_in = bool(self.user)
        for widget in (self.fingerprint, self.status, self.note, self.set_button):
            widget.disabled = not logged_in
        triage_help = (
            f"Logged in as {html.escape(str(self.user))}."
            if logged_in
            else "Setting a status needs a login: serve the dashboard with `leadkit dashboard --basic-auth USER:PASSWORD`."
        )
        self.layout = pn.Column(
            pn.pane.Markdown("## Alerts"),
            self.message,
            pn.pane.Markdown("### Channels (LEADKIT_ALERT_URLS; scheme and host only)"),
            self.channels,
            pn.pane.Markdown("### History (newest first; one row per message and channel)"),
            self.history,
            pn.pane.Markdown("### Triage a failure group"),
            pn.pane.HTML(f'<div class="lk-triage-help">{html.escape(triage_help)}</div>'),
            pn.Row(self.fingerprint, self.status, self.note),
            pn.Row(self.set_button, self.triage_result),
            sizing_mode="stretch_width",
        )

    def _set(self, _: Any) -> None:
        if not self.user:
            return
        try:
            triage = lk.set_triage(self.app.ws, self.fingerprint.value, self.status.value, self.note.value or None)
        except lk.LeadkitError as exc:
            self.triage_result.object = (
                f'<span class="lk-error" style="color:#b00020">{html.escape(exc.message)}</span>'
            )
            return
        log.info("triage set by %s: %s -> %s", self.user, triage.fingerprint, triage.status.value)
        self.triage_result.object = (
            f'<span class="lk-triage-done">{html.escape(triage.status.value)}: {html.escape(triage.fingerprint)}</span>'
        )

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return channel_rows(self.ws), alert_rows(self.ws)

    def show(self, got: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        self.set_value(self.channels, got[0])
        self.set_value(self.history, got[1])
