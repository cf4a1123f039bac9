"""Tables an operator reads at a glance: the answer columns first and wrapped, the table never wider than its
column, a sentence when it is empty, times in UTC with the viewer's local time on hover.

Every cell is text: plain columns use Tabulator's escaping `plaintext`/`textarea` formatters; time columns are
built here as `<span title="local time">UTC time</span>` from escaped text, so a record never reaches the page
as markup.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import panel as pn

#: Columns that hold what an operator acts on: always wrapped, never clipped.
ANSWER_COLUMNS = ("Status", "Severity", "Why", "Reason", "Hint", "Next step", "Error", "Message", "Fix", "Outcome")
#: Shares of the table's width (percent) for columns that need little; the others share the rest equally, so
#: a table is never wider than its place (Tabulator's `fitColumns`) and long texts wrap.
NARROW: dict[str, int] = {
    "Client": 9,
    "Status": 8,
    "Severity": 7,
    "Category": 8,
    "Kind": 6,
    "Stage": 6,
    "Attempts": 8,
    "Attempt": 7,
    "Count": 6,
    "Clients": 7,
    "Failures": 7,
    "Resolved": 8,
    "OK": 4,
    "HTTP": 5,
    "Leads": 5,
    "Posts": 6,
    "Run ID": 10,
    "Source": 6,
}
TIME_WIDTH = 13
UTC_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Headers wrap between words only (never "Categ|ory"); cells wrap (a URL breaks anywhere) instead of ending in an
#: ellipsis.
WRAP_CSS = """
.tabulator-col-title { white-space: normal !important; overflow-wrap: normal; word-break: keep-all; hyphens: none; }
.tabulator-row .tabulator-cell { white-space: normal !important; overflow-wrap: anywhere; text-overflow: clip !important; }
"""
EMPTY_CSS = """
.lk-empty { color: #555; font-style: italic; margin: 2px 0 6px 0; }
"""


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every cell as text (None and NaN as ""), in object columns. A table's column definitions follow
    its data's types; giving it text only keeps them as built, so new rows never make the browser rebuild the
    columns (Tabulator's `setColumns` throws "reading 'firstChild'" on a table it is still building)."""

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return ""
        return str(value)

    return pd.DataFrame({c: [cell(v) for v in df[c]] for c in df.columns}, columns=df.columns, dtype=object)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def is_time_column(name: str) -> bool:
    return name.endswith("(UTC)")


def local_title(value: str, tz: str | None) -> str:
    """The hover text of a UTC time: the same moment in the viewer's time zone (when the browser told it)."""
    try:
        moment = datetime.strptime(value, UTC_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return ""
    if not tz:
        return "UTC (your local time zone is not known yet)"
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"UTC (unknown time zone {tz})"
    local = moment.astimezone(zone)
    return f"your local time: {local.strftime(UTC_FORMAT)} {local.tzname() or ''} ({tz})".replace("  ", " ")


def with_local_times(df: pd.DataFrame, tz: str | None) -> pd.DataFrame:
    """`df` with each time cell as escaped text inside a span whose title is the viewer's local time."""
    columns = [c for c in df.columns if is_time_column(str(c))]
    if not columns or not len(df):
        return df
    out = df.copy()
    for c in columns:
        out[c] = [
            f'<span class="lk-time" title="{esc(local_title(str(v), tz))}">{esc(v)}</span>' if v else "" for v in out[c]
        ]
    return out


class Table:
    """A read-only table with its empty-state sentence above it (`layout` is what to show).

    Its columns are declared when it is made, for good: every column's formatter and width is set then, and
    `update` only ever gives its widget rows with those same columns (its `value`, as text). Changing a live
    Tabulator's column definitions makes the browser call `setColumns`, which throws "reading 'firstChild'" on a
    table it is still building; swapping the widget for another makes the browser look up the old one's models
    ("reference ... isn't known"). So a table's widget is never replaced, and rows with other columns are refused
    (ValueError naming both): a view whose columns vary (a run's metrics) declares them all up front."""

    def __init__(
        self,
        columns: Sequence[str],
        css_class: str,
        *,
        empty: str,
        tz: Callable[[], str | None] = lambda: None,
        colour: Callable[[pd.Series], list[str]] | None = None,
        widths: dict[str, int] | None = None,  # percent of the table's width
        links: dict[str, str] | None = None,  # column -> URL with `{}` for the cell's value (URL-quoted)
        **options: Any,
    ) -> None:
        self.css_class = css_class
        self.empty_text = empty
        self.tz = tz
        self.columns = list(columns)
        self.colour = colour
        self.extra_widths = widths or {}
        self.links = links or {}
        self.options = options
        self.empty = pn.pane.HTML(
            "", css_classes=["lk-empty-note"], stylesheets=[EMPTY_CSS], sizing_mode="stretch_width"
        )
        self.widget = self._make(self.columns)
        self.layout = pn.Column(self.empty, self.widget, sizing_mode="stretch_width")
        self.raw = pd.DataFrame([], columns=self.columns)

    def _make(self, columns: list[str]) -> pn.widgets.Tabulator:
        """The widget, with no rows, whose column definitions (formatters, widths) are those of `columns`."""
        widget = pn.widgets.Tabulator(
            as_text(pd.DataFrame([], columns=columns)),
            show_index=False,
            disabled=True,
            selectable=False,
            layout="fit_columns",
            formatters=self._formatters(columns),
            widths=self._widths(columns),
            css_classes=[self.css_class],
            sizing_mode="stretch_width",
            stylesheets=[WRAP_CSS],
            **self.options,
        )
        if self.colour is not None:
            styler = widget.style
            assert styler is not None
            styler.apply(self.colour, axis=1)
        return widget

    def on_click(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` with Tabulator's click event when a cell is clicked."""
        self.widget.on_click(callback)

    def _formatters(self, columns: Sequence[str]) -> dict[str, Any]:
        html_columns = {c for c in columns if is_time_column(c) or c in self.links}
        return {c: {"type": "html"} if c in html_columns else {"type": "textarea"} for c in columns}

    def _widths(self, columns: Sequence[str]) -> dict[str, str]:
        out = {c: NARROW[c] for c in columns if c in NARROW}
        out.update({c: TIME_WIDTH for c in columns if is_time_column(c)})
        out.update({c: w for c, w in self.extra_widths.items() if c in columns})
        rest = [c for c in columns if c not in out]
        if rest:
            share = max(5, (100 - sum(out.values())) // len(rest))
            out.update({c: share for c in rest})
        scale = 99 / sum(out.values())
        return {c: f"{max(3, int(w * scale))}%" for c, w in out.items()}

    def update(self, df: pd.DataFrame, *, empty: str | None = None) -> None:
        """Show `df` (plain values; time columns get their local-time hover here); when it has no rows, say so.
        `df` must have the table's columns, in order (see the class); other columns raise ValueError."""
        if list(df.columns) != self.columns:
            raise ValueError(
                f"table {self.css_class} got rows with columns {list(df.columns)}; it shows {self.columns}"
            )
        self.raw = df
        shown = as_text(with_local_times(df, self.tz()))
        if self.links and len(shown):
            shown = shown.copy()
            for c, url in self.links.items():
                if c in shown.columns:
                    shown[c] = [
                        f'<a class="lk-link" href="{esc(url.format(quote(str(v))))}">{esc(v)}</a>' for v in shown[c]
                    ]
        current = self.widget.value
        if not (isinstance(current, pd.DataFrame) and current.shape == shown.shape and current.equals(shown)):
            self.widget.value = shown
        note = "" if len(df) else (empty or self.empty_text).strip()
        self.empty.object = f'<p class="lk-empty {self.css_class}-empty">{esc(note)}</p>' if note else ""

    def row(self, index: int) -> pd.Series:
        """The plain values of row `index` (as given to `update`)."""
        return self.raw.iloc[index]
