"""The base of every dashboard view: its data is read in a worker thread, its models change under the session's lock.

A view's `read()` does the store reads and everything computed from them and changes no widget, pane or Bokeh
model: it runs in a thread of asyncio's default executor (`asyncio.to_thread`), so a slow query (a large
workspace, a slow Airtable answer) holds up neither this session's other callbacks nor any other session served
by the same process. `show(got)` then puts the result on the page in a callback that Bokeh runs on the server's
loop holding the session's document lock (`Document.add_next_tick_callback`), where any model (a Bokeh
`ColumnDataSource` too, not only Panel's own objects) may change.

One read at a time per view: a refresh asked for while a read runs is not a second read but a note that the
running one must go round again. `inputs()` names what a read depends on besides the store (the filters, the
page, the open run); it is taken before the read and compared after it, so a result whose inputs changed while
it was read is never shown: the view reads again. What is shown is therefore always a read made with the inputs
the page has at the moment it is shown. A read that ends after the viewer left the view is dropped: the view
reads again when it is shown again.

A view goes on the page only with its first read already in its tables, in one callback (`attach`): the browser
then builds each table from rows it already holds. Panel's Tabulator view ignores rows given to a table while
Tabulator is still building it (its `setData` returns while `_building`, and nothing sends them again), so rows
sent just after the table reached the page (a view switched to, a page just opened) were lost and the table stayed
empty. Until the browser has said its time zone (it does so as the page is first drawn), the view waits off the
page too: the time zone changes every time cell's hover text, and those new rows would reach tables still being
built.

Reads are shared by every session of the server (`dashboards.shared`): a read of the same view with the same
inputs made by another tab within the interval is served from memory, and nothing is read again while the
store says nothing changed.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import panel as pn

import leadkit as lk
from leadkit import DASHBOARD, MIRRORED_TABLES, requests_for

try:
    from dashboards.shared import read_workspace, shared_reads
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    from shared import read_workspace, shared_reads  # type: ignore[no-redef]

log = logging.getLogger("leadkit.dashboard")

#: How long a change waits for the session's loop to run it before it is given up (a closed session never runs it).
SHOW_TIMEOUT_S = 60.0


async def under_lock(change: Callable[[], None]) -> None:
    """Run `change` on the current session's loop holding its document lock, and wait for it (at most
    `SHOW_TIMEOUT_S`). Outside a served session (a test building the app directly) it simply runs. An exception
    raised by `change` is raised here."""
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        change()
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def run() -> None:
        try:
            change()
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        else:
            if not done.done():
                done.set_result(None)

    doc.add_next_tick_callback(run)
    try:
        await asyncio.wait_for(asyncio.shield(done), SHOW_TIMEOUT_S)
    except TimeoutError:
        log.warning("the dashboard session did not run a change within %.0f s (closed?)", SHOW_TIMEOUT_S)


class View:
    """One page of the dashboard: `layout` is shown; `refresh()` re-reads the store and shows the result.
    `ws` is what the view reads (on Airtable the workspace's local mirror: `dashboards.shared.read_workspace`);
    what a viewer does goes to `app.ws`. `TABLES` and `LEADS` name what `read()` reads of an Airtable workspace
    (the mirror keeps them current while the view is open)."""

    TABLES: tuple[str, ...] = MIRRORED_TABLES
    LEADS = False

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ws = getattr(app, "read_ws", None) or read_workspace(app.ws)
        self.state = app.state
        self.message = pn.pane.HTML("", css_classes=["lk-message"], sizing_mode="stretch_width")
        self.layout: pn.Column = pn.Column(sizing_mode="stretch_width")
        self._asked = 0  # refreshes asked for; a read is shown only when no newer one was asked for meanwhile
        self._reading = False  # a reload is running: a new request makes it go round again
        self._fresh = False  # the next read must not be served from the shared cache (a viewer's own action)
        self._first = True  # no read of this view shown yet in this session (a page just opened)
        #: The view was picked and is not on the page yet: it goes on with a read already in its tables.
        self.attach = False

    def inputs(self) -> Any:
        """What `read()` depends on besides the store (compared before and after a read). None: nothing."""
        return None

    def read(self) -> Any:
        """What the view shows, read from the store. Runs in a worker thread: it must not change any model."""
        raise NotImplementedError

    def show(self, got: Any) -> None:
        """Put what `read()` returned on the page (under the session's document lock)."""
        raise NotImplementedError

    def show_error(self, text: str) -> None:
        self.message.object = (
            f'<div class="lk-error" style="color:#b00020;white-space:pre-wrap">{html.escape(text)}</div>'
        )

    @property
    def reading(self) -> bool:
        """A reload of this view is running."""
        return self._reading

    def refresh(self, *, fresh: bool = False) -> None:
        """Ask for a re-read (see `reload`); returns at once. `fresh`: read the store now, not the shared read
        (after the viewer changed something, e.g. ran the auth checks)."""
        self._fresh = self._fresh or fresh
        pn.state.execute(self.reload)

    async def reload(self) -> None:
        """Read in a worker thread, then show, until the shown read is the newest one asked for with the page's
        current inputs. Returns at once when another reload of this view is running (that one reads again). An
        error is shown in the view's message line, not raised."""
        self._asked += 1
        if self._reading:
            return
        self._reading = True
        try:
            while True:
                asked, inputs = self._asked, self.inputs()
                fresh, self._fresh = self._fresh, False
                change = partial(self._show_read, await self._read(inputs, fresh))
                if asked != self._asked or inputs != self.inputs():
                    continue  # overtaken while it read: read again with what the page holds now
                try:
                    await under_lock(change)
                except Exception as exc:
                    log.exception("dashboard view %s could not show its read", type(self).__name__)
                    await under_lock(partial(self.show_error, f"{type(exc).__name__}: {exc}"))
                if asked == self._asked:
                    return
        finally:
            self._reading = False

    def _shared_read(self, inputs: Any, fresh: bool) -> Any:
        """`read()`, or the same read another session made within the interval (`dashboards.shared`). Its store
        requests are counted as the dashboard's (`leadkit.requesters`)."""
        with requests_for(DASHBOARD):
            shared = shared_reads(self.app.ws)
            interval = float(getattr(self.app, "read_interval_s", 0.0))
            if interval <= 0:
                shared.prepare(self.TABLES, leads=self.LEADS)
                return self.read()
            first, self._first = self._first, False
            key = (type(self).__name__, inputs)
            return shared.read(key, interval, self.read, fresh=fresh, first=first, tables=self.TABLES, leads=self.LEADS)

    async def _read(self, inputs: Any, fresh: bool) -> tuple[Any, str | None]:
        """(what `read()` returned, None) or (None, the error to show)."""
        try:
            return await asyncio.to_thread(self._shared_read, inputs, fresh), None
        except lk.LeadkitError as exc:
            return None, f"{exc.message} ({exc.hint})"
        except Exception as exc:
            log.exception("dashboard view %s failed", type(self).__name__)
            return None, f"{type(exc).__name__}: {exc}"

    def on_page(self) -> bool:
        """This view is the one the session shows (a view left meanwhile is read again when it is shown again)."""
        main = getattr(self.app, "main", None)
        return main is None or any(o is self.layout for o in main.objects)

    def _show_read(self, result: tuple[Any, str | None]) -> None:
        if self.attach:  # picked: fill its tables off the page, then put it on (the browser builds them filled)
            try:
                self._show_result(result)
            finally:
                if self.app.put_on_page(self):
                    self.attach = False
            return
        if not self.on_page():  # its models are off the page: changing them makes the browser's tables throw
            return
        self._show_result(result)

    def _show_result(self, result: tuple[Any, str | None]) -> None:
        got, error = result
        if error is not None:
            self.show_error(error)
            return
        self.message.object = ""
        self.show(got)
