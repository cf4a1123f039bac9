"""Failures grouped by fingerprint, readable: each group's representative real message first (secret-free URL,
first line of the body), its hint and clients; the fingerprint and the full message in the row's detail. For
a group with clients whose latest attempt failed, the view offers the re-run: a button when the dashboard is
behind `--basic-auth` (a login), else the `leadkit rerun` command to run."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn

import leadkit as lk

try:
    from dashboards.data import text
    from dashboards.tables import Table
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    from data import text  # type: ignore[no-redef]
    from tables import Table  # type: ignore[no-redef]

COLUMNS = ["Category", "Count", "Clients", "Error", "Hint", "Resolved", "Last seen (UTC)", "First seen (UTC)"]
DETAIL_COLUMNS = ["Fingerprint", "Full message", "Every client", "Stages", "Runs", "Re-run"]
#: Clients named in a group's row; the row's detail and its re-run command name them all.
CLIENTS_SHOWN = 12


def clients_cell(clients: list[str]) -> str:
    """The first `CLIENTS_SHOWN` clients, and how many there are when that is not all of them."""
    if len(clients) <= CLIENTS_SHOWN:
        return ", ".join(clients)
    return ", ".join(clients[:CLIENTS_SHOWN]) + f" … ({len(clients)} in all)"


def rerun_command(category: str, clients: list[str]) -> str:
    return "leadkit rerun --failed --category " + category + "".join(f" --client {c}" for c in clients)


def group_rows(ws: Any, *, unresolved_only: bool) -> pd.DataFrame:
    rows = []
    for g in lk.group_failures(ws, unresolved_only=unresolved_only):
        rows.append(
            {
                "Category": text(g.category),
                "Count": int(g.count),
                "Clients": clients_cell(sorted(g.clients)),
                "Error": g.headline,
                "Hint": g.hint,
                "Resolved": "yes" if g.resolved else "no",
                "Last seen (UTC)": text(g.last_seen),
                "First seen (UTC)": text(g.first_seen),
                "Fingerprint": g.fingerprint,
                "Full message": g.example,
                "Every client": ", ".join(sorted(g.clients)),
                "Stages": ", ".join(g.stages),
                "Runs": ", ".join(g.runs),
                "Re-run": "" if g.resolved or not g.clients else rerun_command(g.category, sorted(g.clients)),
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, *DETAIL_COLUMNS])


class FailuresPanel:
    """The groups (`layout`): `read()` off the loop, then `show(groups)`. `may_act`: the viewer logged in, so it
    may re-run."""

    def __init__(self, ws: Any, tz: Callable[[], str | None], *, may_act: bool, act_ws: Any = None) -> None:
        self.ws = ws
        #: Where a re-run goes (the workspace itself; `ws` may be its read-only mirror).
        self.act_ws = act_ws if act_ws is not None else ws
        self.may_act = may_act
        self.rows = pd.DataFrame([], columns=[*COLUMNS, *DETAIL_COLUMNS])
        self.targets: dict[str, tuple[str, list[str]]] = {}
        self.table = Table(
            COLUMNS,
            "lk-failures-table",
            empty="No failures recorded.",
            tz=tz,
            widths={"Error": 27, "Hint": 27, "Clients": 9},
            row_content=self._detail,
            embed_content=False,
            # a page at a time: the browser draws 25 wrapped groups whatever the workspace holds
            pagination="local",
            page_size=25,
        )
        self.commands = pn.pane.HTML("", css_classes=["lk-rerun-commands"], sizing_mode="stretch_width")
        self.pick = pn.widgets.Select(label="Re-run the failed clients of", options=[], width=520, visible=may_act)
        self.go = pn.widgets.Button(label="Re-run now", color="warning", visible=may_act, css_classes=["lk-rerun"])
        self.go.on_click(self._rerun)
        self.status = pn.pane.HTML("", css_classes=["lk-rerun-status"])
        self.layout = pn.Column(
            self.table.layout,
            pn.pane.Markdown("### Re-run what failed"),
            self.commands,
            pn.Row(self.pick, self.go, self.status),
            sizing_mode="stretch_width",
        )

    def _detail(self, row: pd.Series) -> pn.pane.HTML:
        match = self.rows[(self.rows["Error"] == row["Error"]) & (self.rows["Category"] == row["Category"])]
        full = match.iloc[0] if len(match) else row
        lines = "".join(
            f"<div><b>{html.escape(c)}</b>: {html.escape(str(full.get(c, '')))}</div>" for c in DETAIL_COLUMNS
        )
        return pn.pane.HTML(
            f'<div class="lk-failure-detail" style="white-space:pre-wrap;max-width:1100px">{lines}</div>',
            sizing_mode="stretch_width",
        )

    def read(self, *, unresolved_only: bool) -> tuple[pd.DataFrame, bool]:
        """The failure groups (a worker thread may call this: it changes no model)."""
        return group_rows(self.ws, unresolved_only=unresolved_only), unresolved_only

    def show(self, got: tuple[pd.DataFrame, bool]) -> None:
        rows, unresolved_only = got
        self.rows = rows
        empty = (
            "No unresolved failures: every failed client has completed since."
            if unresolved_only
            else "No failures recorded: every client run so far completed or was skipped with its reason."
        )
        self.table.update(rows[COLUMNS], empty=empty)
        todo = [c for c in rows["Re-run"] if c]
        if not todo:
            self.commands.object = (
                '<p class="lk-empty">Nothing to re-run: no group has a client whose latest attempt failed.</p>'
            )
        else:
            how = "Pick a group and press Re-run now, or run" if self.may_act else "Run"
            items = "".join(f"<li><code>{html.escape(c)}</code></li>" for c in todo)
            login = (
                "" if self.may_act else " (the dashboard starts re-runs itself only behind <code>--basic-auth</code>)"
            )
            self.commands.object = f"<p>{how} one of these{login}:</p><ul>{items}</ul>"
        self.targets = {
            c: (str(r["Category"]), [x.strip() for x in str(r["Every client"]).split(",") if x.strip()])
            for c, r in zip(rows["Re-run"], rows.to_dict("records"), strict=True)
            if c
        }
        options = list(self.targets)
        current = self.pick.value
        self.pick.options = options
        self.pick.value = current if current in options else (options[0] if options else None)

    async def _rerun(self, _: Any) -> None:
        command = self.pick.value
        if not self.may_act or not command:
            return
        category, clients = self.targets[command]
        self.go.disabled = True
        self.status.object = f"<span>re-running {html.escape(', '.join(clients))}…</span>"
        try:
            chosen = lk.latest_failed(self.act_ws, client_ids=clients, category=category)
            if not chosen:
                self.status.object = "<span>nothing to re-run: their latest attempts no longer failed</span>"
                return
            result = await asyncio.to_thread(
                lk.run_batch, self.act_ws, client_ids=[f.client_id for f in chosen], progress=False
            )
            self.status.object = (
                f'<span class="lk-rerun-done">run {html.escape(result.run.run_id)}: '
                f"{html.escape(result.run.status.value)}</span>"
            )
        except lk.LeadkitError as exc:
            self.status.object = f'<span class="lk-error">{html.escape(exc.message)} ({html.escape(exc.hint)})</span>'
        finally:
            self.go.disabled = False
