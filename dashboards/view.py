"""The base of every dashboard view: its data is read in a worker thread, its models change on the session's loop.

A view's `read()` does the store reads and everything computed from them, and touches no widget, pane or Bokeh
model: it runs in a thread of asyncio's default executor (`asyncio.to_thread`), so a slow query (a large
workspace, a slow Airtable answer) holds up neither this session's other callbacks nor any other session served by
the same process. Its `show(data)` then puts the result on the page, on the session's event loop, where Bokeh
models may change. A refresh that a newer one overtook (the user changed a filter while the old read ran) is
dropped, so what is shown is always the newest read.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import panel as pn

import leadkit as lk

log = logging.getLogger("leadkit.dashboard")


class View:
    """One page of the dashboard: `layout` is shown; `refresh()` re-reads the store and shows the result."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ws = app.ws
        self.state = app.state
        self.message = pn.pane.HTML("", css_classes=["lk-message"], sizing_mode="stretch_width")
        self.layout: pn.Column = pn.Column(sizing_mode="stretch_width")
        self._wanted = 0  # the newest refresh asked for; an older read that finishes later is not shown

    def read(self) -> Any:
        """What the view shows, read from the store. Runs in a worker thread: it must not change any model."""
        raise NotImplementedError

    def show(self, got: Any) -> None:
        """Put what `read()` returned on the page (on the session's event loop)."""
        raise NotImplementedError

    def show_error(self, text: str) -> None:
        self.message.object = (
            f'<div class="lk-error" style="color:#b00020;white-space:pre-wrap">{html.escape(text)}</div>'
        )

    def refresh(self) -> None:
        """Schedule a re-read (see `reload`) on this session; returns at once."""
        pn.state.execute(self.reload)

    async def reload(self) -> None:
        """Read in a worker thread, then show; an error is shown in the view's message line, not raised."""
        self._wanted += 1
        mine = self._wanted
        try:
            got = await asyncio.to_thread(self.read)
            if mine != self._wanted:
                return
            self.show(got)
        except lk.LeadkitError as exc:
            if mine == self._wanted:
                self.show_error(f"{exc.message} ({exc.hint})")
        except Exception as exc:
            log.exception("dashboard view %s failed", type(self).__name__)
            if mine == self._wanted:
                self.show_error(f"{type(exc).__name__}: {exc}")
        else:
            self.message.object = ""
