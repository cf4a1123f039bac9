"""The leadkit diagnostics dashboard: overview, runs, a run's drill-down, failures, auth checks, client health.

Served by `leadkit dashboard` (see `leadkit.dashboard_server`), which calls `create_app(ws)` once per browser
session. It can also be served with `panel serve dashboards/app.py`, reading the workspace from LEADKIT_HOME.

The page, the filters, the runs page number and the open run live in the URL (`?view=runs&status=Failed&page=2`,
`?view=run&run=251128-093000`), so a reload or a periodic refresh keeps them. Every value that comes from a record
is shown as text: tables use Tabulator's escaping `plaintext` formatter, HTML panes get `html.escape`d text, and an
executed notebook is shown in a sandboxed iframe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
import panel as pn
import param

import leadkit as lk
from leadkit import (
    DASHBOARD,
    MIRRORED_TABLES,
    AuthChecks,
    ClientRunResults,
    Clients,
    Failures,
    FailureTriage,
    JobTracking,
    MissingRecordError,
    RunEvents,
    requests_for,
)

try:
    from dashboards import data
    from dashboards.alerts_view import AlertsView
    from dashboards.client_page import ClientPanel, HealthPanel
    from dashboards.failures_page import FailuresPanel
    from dashboards.run_page import RunPanel
    from dashboards.shared import read_workspace, sync_interval
    from dashboards.tables import WRAP_CSS, Table, as_text
    from dashboards.usage_view import UsageCard
    from dashboards.view import View
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    import data  # type: ignore[no-redef]
    from alerts_view import AlertsView  # type: ignore[no-redef]
    from client_page import ClientPanel, HealthPanel  # type: ignore[no-redef]
    from failures_page import FailuresPanel  # type: ignore[no-redef]
    from run_page import RunPanel  # type: ignore[no-redef]
    from shared import read_workspace, sync_interval  # type: ignore[no-redef]
    from tables import WRAP_CSS, Table, as_text  # type: ignore[no-redef]
    from usage_view import UsageCard  # type: ignore[no-redef]
    from view import View  # type: ignore[no-redef]

log = logging.getLogger("leadkit.dashboard")

pn.extension("tabulator")

VIEWS: dict[str, str] = {
    "Overview": "overview",
    "Runs": "runs",
    "Run drill-down": "run",
    "Failures": "failures",
    "Auth checks": "auth",
    "Client health": "health",
}
DEFAULT_REFRESH_S = 30.0
STATUS_COLOURS = {
    "Running": "#4c78a8",
    "Completed": "#54a24b",
    "Completed with Errors": "#f58518",
    "Failed": "#e45756",
}
#: Answer columns first: what failed, why and what to do, then the details.
FAILING_ORDER = ["Client", "Status", "Hint", "Error", "Category", "Run ID"]
AUTH_ORDER = ["Credential", "Result", "Hint", "Category", "HTTP", "Latency (ms)", "Checked (UTC)", "OK"]
#: The Runs filter value for "any client Failed or Stale, whatever the run's status".
HAS_FAILURES = "has-failures"
#: What the drill-down's read returns for a run ID no run has.
MISSING = object()
#: The key of `lk.alert_summary` for alerts recorded with no channel (shown as a red tile too).
UNSENT_KEY = "Alerts sent nowhere (24h)"
ROW_COLOURS = {"Failed": "#f8d7da", "Completed with Errors": "#fff3cd", "Completed": "#d9f2d9", "Running": "#dbe9f6"}


def run_colour(row: pd.Series) -> list[str]:
    colour = ROW_COLOURS.get(str(row.get("Status", "")), "")
    return [f"background-color: {colour}" if c == "Status" and colour else "" for c in row.index]


def esc(value: Any) -> str:
    return html.escape(data.text(value), quote=True)


def table(df: pd.DataFrame, css_class: str, **options: Any) -> pn.widgets.Tabulator:
    """A plain-text table (every cell through Tabulator's escaping `textarea` formatter), wrapped and fit to the
    window, for a view that sets its own rows with `set_value` (the Alerts view)."""
    options.pop("wrap", None)
    return pn.widgets.Tabulator(
        as_text(df),
        show_index=False,
        disabled=True,
        selectable=False,
        layout="fit_columns",
        formatters={c: {"type": "textarea"} for c in df.columns},
        css_classes=[css_class],
        sizing_mode="stretch_width",
        stylesheets=[WRAP_CSS],
        **options,
    )


def set_value(widget: pn.widgets.Tabulator, df: pd.DataFrame) -> None:
    """Replace a table's rows (as text, see `tables.as_text`) only when they changed, so a periodic refresh does
    not redraw a steady table. `df` must have the columns the table was made with (its column definitions are
    fixed: see `tables.Table`); other columns raise ValueError naming both."""
    current = widget.value
    made = list(current.columns) if isinstance(current, pd.DataFrame) else []
    if list(df.columns) != made:
        raise ValueError(f"table rows with columns {list(df.columns)}; this table shows {made}")
    df = as_text(df)
    if not (isinstance(current, pd.DataFrame) and current.shape == df.shape and current.equals(df)):
        widget.value = df


def key_values(values: dict[str, str], css_class: str) -> str:
    cells = "".join(
        f'<div class="lk-kv"><div class="lk-k">{esc(k)}</div><div class="lk-v">{esc(v)}</div></div>'
        for k, v in values.items()
    )
    return f'<div class="{css_class}" style="display:flex;gap:12px;flex-wrap:wrap">{cells}</div>'


KV_CSS = """
.lk-kv { border: 1px solid #ddd; border-radius: 6px; padding: 6px 12px; min-width: 120px; }
.lk-k { font-size: 12px; color: #666; }
.lk-v { font-size: 20px; font-weight: 600; }
"""


class State(param.Parameterized):
    """What the URL holds: the view, the open run and the filters."""

    view = param.String(default="overview")
    run = param.String(default="")
    status = param.String(default="")
    client = param.String(default="")
    since = param.String(default="")
    until = param.String(default="")
    page = param.Integer(default=1)
    unresolved = param.Boolean(default=False)


# ------------------------------------------------------------------------------------------------ overview
class OverviewView(View):
    # record keeping counts events (Run Events too) and the failed opens (Failures); the alert summary, Alerts
    TABLES = tuple(t for t in MIRRORED_TABLES if t != FailureTriage.TABLE)

    def __init__(self, app: App) -> None:
        super().__init__(app)
        from bokeh.models import ColumnDataSource, FactorRange
        from bokeh.plotting import figure

        self.numbers = pn.pane.HTML("", stylesheets=[KV_CSS], sizing_mode="stretch_width")
        # Red when alerts were recorded with no channel to send them to: nobody was told.
        self.unsent = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["lk-unsent-alerts"])
        statuses = list(STATUS_COLOURS)
        self.source = ColumnDataSource(data={"day": [], **{s: [] for s in statuses}})
        self.days = FactorRange(factors=[])
        self.chart = figure(
            x_range=self.days,
            height=240,
            title="Runs per day by status (UTC, last 14 days)",
            toolbar_location=None,
            sizing_mode="stretch_width",
        )
        self.chart.vbar_stack(
            statuses,
            x="day",
            width=0.8,
            color=[STATUS_COLOURS[s] for s in statuses],
            source=self.source,
            legend_label=statuses,
            line_color=None,  # a day with no run of a status is a zero-height bar: without an outline it draws nothing
        )
        self.chart.legend.location = "top_left"
        self.chart.xaxis.major_label_orientation = 0.8
        self.latest = Table(
            data.RUN_COLUMNS, "lk-latest-runs", empty="No runs yet: `leadkit batch` makes the first one.", tz=app.tz
        )
        self.latest.on_click(self._open)
        self.failing = Table(
            FAILING_ORDER,
            "lk-failing-clients",
            empty="No failing client: every client's latest run went fine.",
            tz=app.tz,
        )
        self.auth = Table(
            AUTH_ORDER, "lk-overview-auth", empty="No auth checks yet: run `leadkit auth-check`.", tz=app.tz
        )
        self.stats = Table(["Metric", "Value"], "lk-stats", empty="No record-keeping events yet.", tz=app.tz)
        self.usage = UsageCard(app.ws)  # the usage tally of the workspace itself
        self.layout[:] = [
            pn.pane.Markdown("## Overview"),
            self.message,
            self.unsent,
            self.numbers,
            pn.pane.Bokeh(self.chart, sizing_mode="stretch_width"),
            pn.pane.Markdown("### Failing clients (their latest run failed)"),
            self.failing.layout,
            pn.pane.Markdown("### Latest runs (click one to open it)"),
            self.latest.layout,
            pn.pane.Markdown("### Auth state"),
            self.auth.layout,
            pn.pane.Markdown("### Record keeping (`leadkit stats`)"),
            self.stats.layout,
            self.usage.pane,
        ]

    def _open(self, event: Any) -> None:
        self.app.open_run(str(self.latest.row(event.row)["Run ID"]))

    def read(self) -> dict[str, Any]:
        failing = data.failing_clients(self.ws)
        auth = data.auth_latest(self.ws)
        numbers = {**data.overview_numbers(self.ws, failing=failing, auth=auth), **lk.alert_summary(self.ws)}
        if len(failing):
            failing = failing.assign(Error=[lk.failure_headline(str(m)) for m in failing["Error"]])
        return {
            "numbers": numbers,
            "by_day": data.runs_by_day(self.ws),
            "latest": data.latest_runs(self.ws),
            "failing": failing[FAILING_ORDER],
            "auth": auth[AUTH_ORDER],
            "stats": data.stats_rows(self.ws),
            "usage": self.usage.read(),
        }

    def show(self, got: dict[str, Any]) -> None:
        self.numbers.object = key_values(got["numbers"], "lk-numbers")
        unsent = got["numbers"].get(UNSENT_KEY)
        self.unsent.object = (
            f"**Alerts sent nowhere in the last 24 h: {unsent}.** Nobody was told. Set `LEADKIT_ALERT_URLS` in the "
            "workspace's `.env` (`leadkit doctor` checks it; `leadkit alerts test` sends a test message)."
            if unsent
            else ""
        )
        self.unsent.visible = bool(unsent)
        by_day = got["by_day"]
        self.days.factors = list(by_day["day"])
        self.source.data = {c: list(by_day[c]) for c in ["day", *STATUS_COLOURS]}
        self.latest.update(got["latest"])
        self.failing.update(got["failing"])
        self.auth.update(got["auth"])
        self.stats.update(got["stats"])
        self.usage.show(got["usage"])


# ------------------------------------------------------------------------------------------------ runs
def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class RunsView(View):
    TABLES = (Clients.TABLE, JobTracking.TABLE, ClientRunResults.TABLE)  # a client filter reads its ClientRuns

    def __init__(self, app: App) -> None:
        super().__init__(app)
        statuses = {"All statuses": "", "Has failures": HAS_FAILURES, **{str(s): str(s) for s in lk.RunStatus}}
        self.status = pn.widgets.Select(
            label="Status", options=statuses, value=self._known(statuses, "status"), width=200
        )
        clients = {"All clients": "", **{c: c for c in data.client_ids(self.ws)}}
        if self.state.client and self.state.client not in clients.values():
            clients[self.state.client] = self.state.client
        self.client = pn.widgets.Select(label="Client", options=clients, value=self.state.client, width=200)
        self.since = pn.widgets.DatePicker(label="From (UTC)", value=_day(self.state.since), width=200)
        self.until = pn.widgets.DatePicker(label="To (UTC)", value=_day(self.state.until), width=200)
        self.clear = pn.widgets.Button(label="Clear filters", color="light")
        self.prev = pn.widgets.Button(label="‹ Previous", color="default", css_classes=["lk-prev"])
        self.next = pn.widgets.Button(label="Next ›", color="default", css_classes=["lk-next"])
        self.info = pn.pane.HTML("", css_classes=["lk-page-info"])
        self.table = Table(data.RUN_COLUMNS, "lk-runs-table", empty="No runs yet.", tz=app.tz, colour=run_colour)
        self.table.on_click(self._open)
        self.status.param.watch(lambda e: self._set(status=e.new), "value")
        self.client.param.watch(lambda e: self._set(client=e.new), "value")
        self.since.param.watch(lambda e: self._set(since=e.new.isoformat() if e.new else ""), "value")
        self.until.param.watch(lambda e: self._set(until=e.new.isoformat() if e.new else ""), "value")
        self.clear.on_click(lambda _: self._set(status="", client="", since="", until=""))
        self.prev.on_click(lambda _: self._page(-1))
        self.next.on_click(lambda _: self._page(+1))
        self.state.param.watch(self._state_changed, ["status", "client", "since", "until", "page"])
        self.layout[:] = [
            pn.pane.Markdown("## Runs (newest first; click a run to open it)"),
            pn.Row(self.status, self.client, self.since, self.until, self.clear),
            self.message,
            pn.Row(self.prev, self.info, self.next),
            self.table.layout,
        ]

    def _known(self, options: dict[str, str], name: str) -> str:
        value = str(getattr(self.state, name))
        return value if value in options.values() else ""

    def _set(self, **changes: str) -> None:
        changes = {k: v for k, v in changes.items() if getattr(self.state, k) != v}
        if changes:
            self.state.param.update(page=1, **changes)

    def _page(self, step: int) -> None:
        self.state.page = max(1, self.state.page + step)

    def _state_changed(self, *_: Any) -> None:
        if self.state.view != "runs":
            return
        self.status.value = self._known(self.status.options, "status")
        if self.state.client not in self.client.options.values():
            self.client.options = {**self.client.options, self.state.client: self.state.client}
        self.client.value = self.state.client
        self.since.value = _day(self.state.since)
        self.until.value = _day(self.state.until)
        self.refresh()

    def _open(self, event: Any) -> None:
        self.app.open_run(str(self.table.row(event.row)["Run ID"]))

    def inputs(self) -> tuple[str, str, str, str, int]:
        return self.state.status, self.state.client, self.state.since, self.state.until, self.state.page

    def read(self) -> Any:
        status = "" if self.state.status == HAS_FAILURES else self.state.status
        filt = data.run_filter(status, self.state.client, self.state.since, self.state.until)
        if self.state.status == HAS_FAILURES:
            filt = dataclasses.replace(filt, has_failures=True)
        return data.runs_page(self.ws, filt, self.state.page)

    def show(self, result: Any) -> None:
        self.table.update(result.rows, empty=self._why_empty())
        self.info.object = (
            f'<span class="lk-page">Page {result.page} of {result.pages}</span> · '
            f'<span class="lk-total">{result.total} runs</span>'
        )
        self.prev.disabled = result.page <= 1
        self.next.disabled = result.page >= result.pages
        if result.page != self.state.page:
            self.state.page = result.page

    def _why_empty(self) -> str:
        """Which filters left no run, or that there is no run at all."""
        parts = []
        if self.state.status == HAS_FAILURES:
            parts.append("with a failed client")
        elif self.state.status:
            parts.append(f"with status {self.state.status}")
        if self.state.client:
            parts.append(f"of client {self.state.client}")
        if self.state.since:
            parts.append(f"from {self.state.since}")
        if self.state.until:
            parts.append(f"to {self.state.until} (UTC)")
        if not parts:
            return "No runs yet: `leadkit batch` (or `leadkit demo`) makes the first one."
        return f"No run {' '.join(parts)}. Clear the filters to see every run."


# ------------------------------------------------------------------------------------------------ run drill-down
class RunView(View):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.run_input = pn.widgets.TextInput(
            label="Run ID", value=self.state.run, placeholder="251128-093000", width=260
        )
        self.run_input.param.watch(lambda e: setattr(self.state, "run", e.new.strip()), "value")
        self.panel = RunPanel(self.ws, app.tz, on_change=self.refresh)
        self.state.param.watch(self._run_picked, "run")
        self.layout[:] = [
            pn.Row(pn.pane.Markdown("## Run drill-down", margin=(0, 10)), self.run_input),
            self.message,
            self.panel.layout,
        ]

    def _run_picked(self, _: Any) -> None:
        """Another run was asked for: say it is being read (an Airtable read takes seconds), then read it."""
        if self.state.view != "run":
            return
        if self.state.run:
            self.panel.reading(self.state.run)
        self.refresh()

    def inputs(self) -> tuple[str, tuple[str | None, bool, str | None]]:
        return self.state.run, self.panel.inputs()

    def read(self) -> Any:
        if not self.state.run:
            return None
        try:
            return self.panel.read(self.state.run)
        except MissingRecordError:  # said as a fact about the run, not as an error of the dashboard
            return MISSING

    def show(self, got: Any) -> None:
        self.run_input.value = self.state.run
        if got is None:
            self.panel.clear("Pick a run in Runs (or the overview), or type its ID.")
        elif got is MISSING:
            self.panel.clear(
                f"Run {self.state.run} does not exist in this workspace. Pick one in Runs, or list them with "
                "`leadkit runs`; run IDs look like 251128-093000."
            )
        else:
            self.panel.show(got)

    def show_error(self, text: str) -> None:
        self.run_input.value = self.state.run
        self.panel.clear("")
        super().show_error(text)


# ------------------------------------------------------------------------------------------------ failures
class FailuresView(View):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.unresolved = pn.widgets.Checkbox(label="Not yet resolved only", value=self.state.unresolved)
        self.unresolved.link(self.state, value="unresolved", bidirectional=True)
        self.state.param.watch(lambda _: self.refresh() if self.state.view == "failures" else None, "unresolved")
        self.panel = FailuresPanel(self.ws, app.tz, may_act=app.authenticated, act_ws=app.ws)
        self.layout[:] = [
            pn.pane.Markdown("## Failures, grouped (the newest first)"),
            self.unresolved,
            self.message,
            self.panel.layout,
        ]

    def inputs(self) -> bool:
        return bool(self.state.unresolved)

    def read(self) -> Any:
        return self.panel.read(unresolved_only=self.state.unresolved)

    def show(self, got: Any) -> None:
        self.panel.show(got)


# ------------------------------------------------------------------------------------------------ auth checks
class AuthView(View):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.run_checks = pn.widgets.Button(label="Run the auth checks again", color="primary")
        self.run_checks.on_click(self._run)
        self.status = pn.pane.HTML("", css_classes=["lk-auth-status"])
        empty = "No auth checks yet: press the button above, or run `leadkit auth-check`."
        self.latest = Table(AUTH_ORDER, "lk-auth-latest", empty=empty, tz=app.tz, colour=self._colour)
        self.history = Table(AUTH_ORDER, "lk-auth-history", empty=empty, tz=app.tz, colour=self._colour)
        self.layout[:] = [
            pn.pane.Markdown("## Auth checks"),
            pn.Row(self.run_checks, self.status),
            self.message,
            pn.pane.Markdown("### Latest result per credential"),
            self.latest.layout,
            pn.pane.Markdown("### History (newest first)"),
            self.history.layout,
        ]

    @staticmethod
    def _colour(row: pd.Series) -> list[str]:
        colour = "background-color: #d9f2d9" if row["OK"] == "yes" else "background-color: #f8d7da"
        return [colour if c == "Result" else "" for c in row.index]

    async def _run(self, _: Any) -> None:
        self.run_checks.disabled = True
        self.status.object = "<span>checking…</span>"
        try:
            checks = await asyncio.to_thread(self._check)
        except lk.LeadkitError as exc:
            self.status.object = ""
            self.show_error(f"the auth checks could not run: {exc.message} ({exc.hint})")
            return
        finally:
            self.run_checks.disabled = False
        bad = sum(1 for c in checks if not c.ok)
        self.status.object = f'<span class="lk-checked">checked {len(checks)} credentials, {bad} failing</span>'
        self.refresh(fresh=True)

    def _check(self) -> list[Any]:
        """The auth checks, run from the dashboard (their store requests count as the dashboard's)."""
        with requests_for(DASHBOARD):
            return lk.run_auth_checks(self.app.ws)

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return data.auth_latest(self.ws)[AUTH_ORDER], data.auth_history(self.ws)[AUTH_ORDER]

    def show(self, got: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        self.latest.update(got[0])
        self.history.update(got[1])


# ------------------------------------------------------------------------------------------------ client health
class HealthView(View):
    """Every client by severity; with `?client=ID`, that client's page."""

    TABLES = (
        Clients.TABLE,
        JobTracking.TABLE,
        ClientRunResults.TABLE,
        RunEvents.TABLE,
        AuthChecks.TABLE,
        Failures.TABLE,
    )
    LEADS = True  # each client's lead counts and next due time (the mirror's lead summaries)

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.title = pn.pane.Markdown("## Client health: what needs action, what waits, what is fine")
        # a plain link (a fresh page), so going back never depends on a widget round trip
        self.back = pn.pane.HTML('<a class="lk-back" href="?view=health">‹ All clients</a>', margin=(18, 10))
        self.overview = HealthPanel(self.ws, app.tz)
        self.page = ClientPanel(self.ws, app.tz)
        self.state.param.watch(lambda _: self.refresh() if self.state.view == "health" else None, "client")
        self.layout[:] = [self.title, self.message]

    def inputs(self) -> str:
        return self.state.client

    def read(self) -> tuple[str, Any]:
        client = self.state.client
        return (client, self.page.read(client)) if client else ("", self.overview.read())

    def show(self, got: tuple[str, Any]) -> None:
        client, read = got
        if client:
            self.title.object = "## Client health: one client"
            self.layout[:] = [pn.Row(self.title, self.back), self.message, self.page.layout]
            self.page.show(read)
        else:
            self.title.object = "## Client health: what needs action, what waits, what is fine"
            self.layout[:] = [self.title, self.message, self.overview.layout]
            self.overview.show(read)


VIEW_CLASSES: dict[str, Callable[[App], View]] = {
    "overview": OverviewView,
    "runs": RunsView,
    "run": RunView,
    "failures": FailuresView,
    "auth": AuthView,
    "health": HealthView,
}
VIEWS["Alerts"] = "alerts"
VIEW_CLASSES["alerts"] = lambda app: AlertsView(app, table=table, set_value=set_value)  # type: ignore[return-value]


class App:
    """One browser session's dashboard. Views are built when first shown and refreshed in place."""

    def __init__(self, ws: Any, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        self.ws = ws
        #: What the views read: on Airtable the workspace's local mirror (`dashboards.shared`).
        self.read_ws = read_workspace(ws)
        self.state = State()
        #: Seconds a view's read is shared by every session before it is read again (`dashboards.shared`).
        self.read_interval_s = refresh_s if refresh_s > 0 else DEFAULT_REFRESH_S
        sync_interval(ws.store, self.read_interval_s)  # a bad LEADKIT_DASHBOARD_SYNC is said when the page opens
        #: Logged in through `leadkit dashboard --basic-auth`: the views may start work (a re-run).
        self.authenticated = bool(pn.state.user)
        #: The browser's own report (time zone); None outside a served page.
        self.browser = browser = pn.state.browser_info
        doc = pn.state.curdoc
        #: The browser has drawn the page (Panel's onload): a view is put on the page only after that, as a
        #: change of its own, with its read in its tables (see `View`).
        self.loaded = doc is None or doc.session_context is None
        if not self.loaded:
            pn.state.onload(self._page_loaded)
        if browser is not None:  # the viewer's time zone arrives after the page loads: show local times then
            browser.param.watch(lambda *_: self._time_zone_told(), ["timezone", "timezone_offset"])
        location = pn.state.location
        if location is not None:
            location.sync(
                self.state,
                {n: n for n in ("view", "run", "status", "client", "since", "until", "page", "unresolved")},
            )
        if self.state.view not in VIEW_CLASSES:
            self.state.view = "overview"
        if self.state.client and self.state.view == "overview":  # `?client=ID` opens that client's page
            self.state.view = "health"
        self.views: dict[str, View] = {}
        self.nav = pn.widgets.RadioButtonGroup(
            options=VIEWS,
            value=self.state.view,
            orientation="vertical",
            color="light",
            css_classes=["lk-nav"],
            sizing_mode="stretch_width",
        )
        self.nav.param.watch(lambda e: setattr(self.state, "view", e.new), "value")
        self.main = pn.Column(sizing_mode="stretch_width", css_classes=["lk-main"])
        #: Shown while a picked view reads (it goes on the page with its read: see `View`).
        self.reading_note = pn.pane.HTML("", css_classes=["lk-reading"], sizing_mode="stretch_width")
        self.state.param.watch(lambda _: self._show(), "view")
        self._show()
        if refresh_s > 0:
            pn.state.add_periodic_callback(self._tick, period=int(refresh_s * 1000))
        sidebar = pn.Column(
            pn.pane.Markdown("### leadkit"),
            self.nav,
            pn.pane.Markdown(f"Refreshes every {refresh_s:g} s" if refresh_s > 0 else "No auto refresh"),
            width=190,
        )
        self.layout = pn.Row(sidebar, self.main, sizing_mode="stretch_width")

    def _show(self) -> None:
        key = self.state.view if self.state.view in VIEW_CLASSES else "overview"
        self.nav.value = key
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = VIEW_CLASSES[key](self)
        if not any(o is view.layout for o in self.main.objects):
            # off the page until its read is in its tables (`View`); the view left stops being refreshed
            view.attach = True
            label = next((name for name, k in VIEWS.items() if k == key), key)
            self.reading_note.object = f'<p class="lk-reading-note">Reading {esc(label)}…</p>'
            self.main.objects = [self.reading_note]
        view.refresh()

    def ready(self) -> bool:
        """The browser has drawn the page and said its time zone (always, outside a served page)."""
        browser = self.browser
        told = browser is None or browser.timezone is not None or browser.timezone_offset is not None
        return self.loaded and told

    def _page_loaded(self) -> None:
        """The browser has drawn the page (Panel's onload): the view waiting for it goes on the page now."""
        self.loaded = True
        self._time_zone_told()

    def put_on_page(self, view: View) -> bool:
        """Show `view` (its read is in its models) unless the viewer picked another view meanwhile or the browser
        is not ready for it (`ready`; then the page's load or the time zone's arrival reads again). True: it is on
        the page, or will never be (another view was picked)."""
        if self.views.get(self.state.view) is not view:
            return True
        if not self.ready():
            return False
        self.main.objects = [view.layout]
        return True

    def tz(self) -> str | None:
        """The viewer's IANA time zone, once the browser has said it."""
        browser = self.browser
        return browser.timezone if browser is not None and browser.timezone else None

    def open_run(self, run_id: str) -> None:
        self.state.param.update(run=run_id, view="run")

    def _time_zone_told(self) -> None:
        """The browser said its time zone: the shown view reads again (a running read goes round again), so its
        times get their local hover and a view waiting for the time zone goes on the page (`put_on_page`)."""
        view = self.views.get(self.state.view)
        if view is not None:
            view.refresh()

    def _tick(self) -> None:
        """The periodic refresh: asks the shown view to read again, unless a read of it is running (that read is
        fresh). Returns at once: Bokeh runs it holding the session's lock, which the read (in a worker thread) and
        its `show` (in a callback of its own) must not wait for."""
        view = self.views.get(self.state.view)
        if view is not None and not view.reading:
            view.refresh()


def create_app(ws: Any, *, refresh_s: float = DEFAULT_REFRESH_S) -> pn.viewable.Viewable:
    """The dashboard for one session, reading `ws` (a `leadkit.Workspace`)."""
    return App(ws, refresh_s=refresh_s).layout


if __name__.startswith("bokeh"):
    create_app(lk.open_workspace()).servable(title="leadkit dashboard")
