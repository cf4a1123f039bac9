"""The client's deadline for the calls that are not handed one: store calls, made deep inside a store whose
methods take no deadline. The workflow runs a client inside `within(deadline)`; `current()` is what an Airtable
request draws on (None outside a client's run: no limit)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from leadkit.deadline import Deadline

__all__ = ["current", "within"]

_CURRENT: ContextVar[Deadline | None] = ContextVar("leadkit_client_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the client's run this code runs for, or None."""
    return _CURRENT.get()


@contextmanager
def within(deadline: Deadline | None) -> Iterator[None]:
    """Make `deadline` the current one for the block (in this thread or task; threads started inside do not
    inherit it)."""
    token = _CURRENT.set(deadline)
    try:
        yield
    finally:
        _CURRENT.reset(token)
