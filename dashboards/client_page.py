"""Client health: every client with its severity (needs action, waiting, fine), worst first; and one client's
page (`?view=health&client=ID`): severity, why and the fix first, then its last failure, settings, leads by
status, recent runs, and posts harvested and failures per day over the last 30 days."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn

try:
    from dashboards import client_data as cd
    from dashboards.run_page import status_colour
    from dashboards.tables import Table
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    import client_data as cd  # type: ignore[no-redef]
    from run_page import status_colour  # type: ignore[no-redef]
    from tables import Table  # type: ignore[no-redef]

PAGE_CSS = """
.lk-severity { display: inline-block; padding: 2px 10px; border-radius: 10px; font-weight: 600; }
.lk-answer { font-size: 15px; margin: 4px 0; max-width: 1100px; }
.lk-answer b { color: #444; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
"""


def severity_colour(row: pd.Series) -> list[str]:
    colour = cd.SEVERITIES.get(str(row.get("Severity", "")), (0, ""))[1]
    return [f"background-color: {colour}" if c in ("Severity", "Client") and colour else "" for c in row.index]


def severity_badge(severity: str) -> str:
    colour = cd.SEVERITIES.get(severity, (0, "#eee"))[1]
    return f'<span class="lk-severity" style="background:{colour}">{html.escape(severity)}</span>'


def _with_code(text: str) -> str:
    """Escaped text with `backticked` commands shown as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


class HealthPanel:
    """Every client, worst first; each client's name links to its page."""

    def __init__(self, ws: Any, tz: Callable[[], str | None]) -> None:
        self.ws = ws
        self.table = Table(
            cd.HEALTH_COLUMNS,
            "lk-health-table",
            empty="No clients in this workspace: add one with `leadkit clients add` or `leadkit clients import`.",
            tz=tz,
            colour=severity_colour,
            widths={"Why": 20, "Next step": 27, "Next due (UTC)": 10, "Last run": 11},
            links={"Client": "?view=health&client={}"},
        )
        self.counts = pn.pane.HTML("", css_classes=["lk-health-counts"])
        # a shared credential that fails is said once, here, not as every client's verdict
        self.banner = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["lk-credential-banner"])
        self.layout = pn.Column(self.banner, self.counts, self.table.layout, sizing_mode="stretch_width")

    def read(self) -> tuple[pd.DataFrame, str]:
        """Every client's health row and the refused shared credentials' banner (a worker thread may call this:
        it changes no model)."""
        return cd.health_rows(self.ws), cd.credential_banner(cd.failed_credentials(self.ws))

    def show(self, got: tuple[pd.DataFrame, str]) -> None:
        rows, banner = got
        self.banner.object = html.escape(banner).replace("\n", "<br>")
        self.banner.visible = bool(banner)
        counts = rows["Severity"].value_counts()
        self.counts.object = (
            " · ".join(f"{severity_badge(s)} {int(counts.get(s, 0))}" for s in cd.SEVERITIES)
            + ' <span style="color:#666">(click a client for its page)</span>'
        )
        self.table.update(rows)


class ClientPanel:
    """One client's page (`layout`): `read(client_id)` off the loop, then `show(page)`."""

    def __init__(self, ws: Any, tz: Callable[[], str | None]) -> None:
        from bokeh.models import ColumnDataSource, FactorRange
        from bokeh.plotting import figure
        from bokeh.transform import dodge

        self.ws = ws
        self.answer = pn.pane.HTML(
            "", stylesheets=[PAGE_CSS], sizing_mode="stretch_width", css_classes=["lk-client-answer"]
        )
        self.failure = pn.pane.HTML(
            "", stylesheets=[PAGE_CSS], sizing_mode="stretch_width", css_classes=["lk-client-failure"]
        )
        self.settings = Table(["Setting", "Value"], "lk-client-settings", empty="No settings.", tz=tz)
        self.leads = Table(["Harvest status", "Leads"], "lk-client-leads", empty="No leads.", tz=tz)
        self.runs = Table(
            cd.RECENT_RUN_COLUMNS,
            "lk-client-runs",
            empty="This client has never been run.",
            tz=tz,
            colour=status_colour,
            widths={"Reason": 25, "Error": 25},
        )
        self.source = ColumnDataSource(data={"day": [], "posts": [], "failures": []})
        self.days = FactorRange(factors=[])
        self.chart = figure(
            x_range=self.days,
            height=230,
            title=f"Posts harvested and failures per day (UTC, last {cd.CLIENT_DAYS} days)",
            toolbar_location=None,
            sizing_mode="stretch_width",
        )
        self.chart.vbar(
            x=dodge("day", -0.2, range=self.days),
            top="posts",
            width=0.4,
            source=self.source,
            fill_color="#4c78a8",
            line_color=None,  # an empty day is a zero-height bar: without an outline it draws nothing
            legend_label="posts harvested",
        )
        self.chart.vbar(
            x=dodge("day", 0.2, range=self.days),
            top="failures",
            width=0.4,
            source=self.source,
            fill_color="#e45756",
            line_color=None,
            legend_label="failures",
        )
        self.chart.y_range.start = 0
        self.chart.legend.location = "top_left"
        self.chart.xaxis.major_label_orientation = 0.8
        self.layout = pn.Column(
            self.answer,
            self.failure,
            pn.pane.Markdown("### Recent runs"),
            self.runs.layout,
            pn.pane.Bokeh(self.chart, sizing_mode="stretch_width"),
            pn.Row(
                pn.Column(pn.pane.Markdown("### Settings"), self.settings.layout, width=420),
                pn.Column(pn.pane.Markdown("### Leads by harvest status"), self.leads.layout, width=300),
            ),
            sizing_mode="stretch_width",
        )

    def read(self, client_id: str) -> Any:
        """The client's page data (a worker thread may call this: it changes no model)."""
        return cd.client_page(self.ws, client_id)

    def show(self, page: Any) -> None:
        a = page.assessment
        self.answer.object = (
            f'<h2 class="lk-client-title">{html.escape(page.client_id)} {severity_badge(a.severity)}</h2>'
            f'<div class="lk-answer lk-why"><b>Why:</b> {html.escape(a.why)}</div>'
            f'<div class="lk-answer lk-next-step"><b>What to do:</b> {_with_code(a.next_step)}</div>'
            f'<div class="lk-answer lk-next-due"><b>Next due (UTC):</b> {html.escape(a.next_due)}</div>'
        )
        f = page.failure
        if f:
            self.failure.object = (
                '<div class="lk-answer lk-last-failure" style="border-left:4px solid #e45756;padding-left:8px">'
                f"<b>Last failure</b>{'' if f['Fix'] else ' (an earlier attempt: a later one did not fail)'} "
                f"({html.escape(f['At (UTC)'])} UTC, run {html.escape(f['Run'])}, stage "
                f"{html.escape(f['Stage'])}, {html.escape(f['Category'])}): {html.escape(f['Error'])}<br>"
                f"<b>Hint:</b> {html.escape(f['Hint'])}"
                + (f"<br><b>Fix:</b> {_with_code(f['Fix'])}" if f["Fix"] else "")
                + "</div>"
            )
        else:
            self.failure.object = '<div class="lk-answer lk-last-failure">No failure recorded for this client.</div>'
        self.settings.update(page.settings)
        self.leads.update(page.leads, empty="This client has no leads: import them with `leadkit leads import`.")
        self.runs.update(page.runs)
        daily = page.daily
        self.days.factors = list(daily["day"])
        self.source.data = {
            "day": list(daily["day"]),
            "posts": list(daily["posts"]),
            "failures": list(daily["failures"]),
        }
