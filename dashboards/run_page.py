"""A run's drill-down, answers first: the run's status (and its history), the failed clients with reason, hint,
next step and error, then every attempt, the failures in detail, the metrics, what happened (events), and the
executed notebook of the first failed client, opened at its report."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import panel as pn

try:
    from dashboards import client_data as cd
    from dashboards.notebook_html import NotebookUnavailable, iframe, notebook_html
    from dashboards.tables import Table
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    import client_data as cd  # type: ignore[no-redef]
    from notebook_html import NotebookUnavailable, iframe, notebook_html  # type: ignore[no-redef]
    from tables import Table  # type: ignore[no-redef]

FAILED_ONLY = "Failed clients"
#: Rows per page of the run's client tables: the browser draws a page, not a 1,000-client run
PAGE_ROWS = 50
ALL = "All clients"

SUMMARY_CSS = """
.lk-kv { border: 1px solid #ddd; border-radius: 6px; padding: 4px 10px; min-width: 110px; }
.lk-k { font-size: 12px; color: #666; }
.lk-v { font-size: 18px; font-weight: 600; }
.lk-bad .lk-v { color: #b00020; }
"""


def status_colour(row: pd.Series) -> list[str]:
    colour = cd.STATUS_COLOURS.get(str(row.get("Status", "")), "")
    return [f"background-color: {colour}" if c == "Status" and colour else "" for c in row.index]


def summary_html(values: dict[str, str], css_class: str, *, bad: tuple[str, ...] = ()) -> str:
    cells = "".join(
        f'<div class="lk-kv{" lk-bad" if k in bad else ""}"><div class="lk-k">{html.escape(k)}</div>'
        f'<div class="lk-v">{html.escape(v)}</div></div>'
        for k, v in values.items()
    )
    return f'<div class="{css_class}" style="display:flex;gap:8px;flex-wrap:wrap">{cells}</div>'


@dataclass
class RunRead:
    """One read of a run's drill-down: its records, its events and the executed notebook to show."""

    detail: cd.RunClients
    opened: bool  # another run than the one shown before
    label: str | None  # whose executed notebook is shown
    events: pd.DataFrame
    hidden: int  # 'started' events left out
    notebook: str  # the notebook pane's HTML


class RunPanel:
    """The contents of the drill-down for one run (`layout`). `read(run_id)` does the reads (in a worker thread,
    no model touched), `show(read)` puts them on the page (under the session's lock). `on_change` is called when
    the viewer changes what is read (the 'started' events toggle, the executed notebook picked): the view reads
    again, so every read goes the one way, off the loop."""

    def __init__(self, ws: Any, tz: Callable[[], str | None], *, on_change: Callable[[], None]) -> None:
        self.ws = ws
        self.on_change = on_change
        self.detail: cd.RunClients | None = None
        self.summary = pn.pane.HTML("", stylesheets=[SUMMARY_CSS], sizing_mode="stretch_width")
        self.which = pn.widgets.RadioButtonGroup(options=[FAILED_ONLY, ALL], value=ALL, css_classes=["lk-which"])
        self.which.param.watch(lambda _: self._show_clients(), "value")
        self.clients = Table(
            cd.RUN_CLIENT_COLUMNS,
            "lk-run-clients",
            empty="This run has no client records (no client was opened).",
            tz=tz,
            colour=status_colour,
            widths={"Reason": 15, "Hint": 19, "Next step": 19, "Error": 19},
            pagination="local",
            page_size=PAGE_ROWS,
        )
        self.attempts = Table(
            ["Client", "Attempt", "Outcome", "Why", "Started (UTC)", "Notebook"],
            "lk-run-attempts",
            empty="Every client ran once: no client was resumed or re-run in this run.",
            tz=tz,
        )
        self.history = Table(
            ["At (UTC)", "Run status"], "lk-run-history", empty="No status recorded yet (the run is running).", tz=tz
        )
        self.failures = Table(
            ["Client", "Stage", "Category", "Error", "Hint", "At (UTC)"],
            "lk-run-failures",
            empty="No failure was recorded in this run.",
            tz=tz,
            row_content=self._failure_detail,
            embed_content=False,
        )
        self.metrics = Table(
            cd.METRICS_COLUMNS,
            "lk-run-metrics",
            empty="No client records.",
            tz=tz,
            pagination="local",
            page_size=PAGE_ROWS,
        )
        self.show_started = pn.widgets.Checkbox(label="Show 'started' events too", value=False)
        self.show_started.param.watch(lambda _: self.on_change(), "value")
        self.events = Table(
            cd.EVENT_COLUMNS,
            "lk-run-events",
            empty="No events.",
            tz=tz,
            widths={"Message": 38, "Metrics": 22},
            pagination="local",
            page_size=50,
        )
        self.notebook_client = pn.widgets.Select(label="Executed notebook of", options=[], width=420)
        self.notebook_client.param.watch(self._notebook_picked, "value")
        self._showing = False  # `show` sets the notebook picker itself: that is no pick to re-read
        self.notebook = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["lk-notebook-pane"])
        self.layout = pn.Column(
            self.summary,
            pn.Row(pn.pane.Markdown("### Clients", margin=(0, 10)), self.which),
            self.clients.layout,
            pn.pane.Markdown("### Executed notebook (opens at its report)"),
            self.notebook_client,
            self.notebook,
            pn.pane.Markdown("### Attempts (resumed or re-run clients)"),
            self.attempts.layout,
            pn.pane.Markdown("### Run status history"),
            self.history.layout,
            pn.pane.Markdown("### Failures (expand a row for its fingerprint and full message)"),
            self.failures.layout,
            pn.pane.Markdown("### Metrics per client"),
            self.metrics.layout,
            pn.pane.Markdown("### Events (what happened)"),
            self.show_started,
            self.events.layout,
            sizing_mode="stretch_width",
        )

    def _failure_detail(self, row: pd.Series) -> pn.pane.HTML:
        assert self.detail is not None
        rows = self.detail.failures
        match = rows[(rows["Client"] == row["Client"]) & (rows["Error"] == row["Error"])]
        full = match.iloc[0] if len(match) else row
        return pn.pane.HTML(
            '<div class="lk-failure-detail" style="white-space:pre-wrap;max-width:1100px">'
            f"<b>Fingerprint</b>: {html.escape(str(full.get('Fingerprint', '')))}<br>"
            f"<b>Full message</b>: {html.escape(str(full.get('Full message', '')))}</div>",
            sizing_mode="stretch_width",
        )

    def clear(self, note: str) -> None:
        self.detail = None
        self.summary.object = f'<p class="lk-hint">{html.escape(note)}</p>'
        for table in (self.clients, self.attempts, self.history, self.failures, self.metrics, self.events):
            # no run is shown: say nothing about one (an unknown run's tables must not read "the run is running")
            table.update(pd.DataFrame([], columns=table.columns), empty=" ")
        self.notebook_client.options = []
        self.notebook.object = ""

    def reading(self, run_id: str) -> None:
        """Say that `run_id` is being read (its tables keep the run shown until the read is in)."""
        self.summary.object = f'<p class="lk-hint lk-reading-run">Reading run {html.escape(run_id)}…</p>'

    def inputs(self) -> tuple[str | None, bool, str | None]:
        """What `read` depends on besides the run: the run shown now, the toggle, the notebook picked."""
        shown = self.detail.run.run_id if self.detail is not None else None
        return shown, bool(self.show_started.value), self.notebook_client.value

    def read(self, run_id: str) -> RunRead:
        detail = cd.run_clients(self.ws, run_id)
        opened = self.detail is None or self.detail.run.run_id != run_id
        options = list(detail.notebooks)
        label = self.notebook_client.value
        if opened or label not in options:
            first_failed = next((o for o in options if o in detail.failed), None)
            label = first_failed or (options[0] if options else None)
        events, hidden = cd.run_events(self.ws, run_id, include_started=self.show_started.value)
        return RunRead(detail, opened, label, events, hidden, self._notebook_html(detail, label))

    def show(self, got: RunRead) -> None:
        detail = self.detail = got.detail
        bad = ("Failed",) if detail.failed else ()
        self.summary.object = summary_html(detail.summary, "lk-run-summary", bad=bad)
        if got.opened:  # a run opens on its failed clients, when it has any
            self.which.value = FAILED_ONLY if detail.failed else ALL
        self.which.options = [f"{FAILED_ONLY}", ALL] if detail.failed else [ALL]
        self._show_clients()
        self.attempts.update(detail.attempts)
        self.history.update(detail.history)
        self.failures.update(detail.failures[["Client", "Stage", "Category", "Error", "Hint", "At (UTC)"]])
        self.metrics.update(detail.metrics)
        self._show_events(got.events, got.hidden)
        self._showing = True
        try:
            self.notebook_client.options = list(detail.notebooks)
            self.notebook_client.value = got.label
        finally:
            self._showing = False
        self.notebook.object = got.notebook

    def _show_clients(self) -> None:
        if self.detail is None:
            return
        rows = self.detail.clients
        if self.which.value == FAILED_ONLY:
            rows = rows[rows["Client"].isin(self.detail.failed)]
        self.clients.update(rows.reset_index(drop=True))

    def _show_events(self, events: pd.DataFrame, hidden: int) -> None:
        note = f"{hidden} 'started' events hidden" if hidden and not self.show_started.value else ""
        self.show_started.label = f"Show 'started' events too ({note})" if note else "Show 'started' events too"
        self.events.update(events, empty="No events recorded for this run.")

    def _notebook_picked(self, _: Any) -> None:
        if not self._showing:
            self.on_change()

    def _notebook_html(self, detail: cd.RunClients, label: str | None) -> str:
        """The notebook pane's HTML for `label`'s executed notebook (reads the file: call it off the loop)."""
        if not label or label not in detail.notebooks:
            return '<p class="lk-hint">No executed notebook recorded for this run.</p>'
        try:
            document = notebook_html(detail.notebooks[label], self.ws.home)
        except NotebookUnavailable as exc:
            return f'<p class="lk-error">{html.escape(str(exc))}</p>'
        return iframe(document, title=f"executed notebook of {label}")
