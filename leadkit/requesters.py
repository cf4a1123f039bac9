"""Who a store request is made for: the batches and commands (nobody named), or the dashboard.

The dashboard runs its reads inside `requests_for(DASHBOARD)`; the Airtable store's usage tally
(`leadkit.store.airtable.usage`) counts the requests made there under `dashboard_requests` as well, so the
dashboard's own cost is seen apart from the batches'. A context variable: it follows the read into the thread
`asyncio.to_thread` runs it in, and no other session's or thread's requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: Who the requests made in this context are for ("" for the batches and commands).
REQUESTER: ContextVar[str] = ContextVar("leadkit_requester", default="")
#: The requester name of the dashboard's reads and actions.
DASHBOARD = "dashboard"


@contextmanager
def requests_for(who: str) -> Iterator[None]:
    """Count the store requests made inside the block (this thread or task, and threads started with its
    context, such as `asyncio.to_thread`) as made for `who` too."""
    token = REQUESTER.set(who)
    try:
        yield
    finally:
        REQUESTER.reset(token)
