"""One time budget per client run: every wait (polls, retries, pages, capacity waits) draws on it.

Kept apart from `leadkit.http` so the workflow can hold a deadline without importing httpx (kernels import the
workflow on their hot path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from leadkit.errors import DeadlineExceeded

__all__ = ["Deadline"]


class Deadline:
    """One time budget (monotonic seconds) that every wait of a client's run draws on.

    `Deadline.unbounded()` never runs out; `Deadline(seconds)` runs out `seconds` from now."""

    def __init__(self, seconds: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.seconds = seconds
        self.at = None if seconds is None else clock() + max(0.0, seconds)

    @classmethod
    def unbounded(cls) -> Deadline:
        return cls(None)

    def remaining(self) -> float:
        """Seconds left (infinity when unbounded, never below 0)."""
        if self.at is None:
            return float("inf")
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self, what: str, **details: Any) -> None:
        """Raise DeadlineExceeded naming `what` (with `details`) when no time is left."""
        if self.expired:
            raise DeadlineExceeded(
                f"the client's time budget of {self.seconds:.1f} s ran out before {what}",
                hint="The run's deadline comes from the notebook timeout (`leadkit batch --timeout`); raise it, "
                "or lower the batch size so one actor run fits.",
                **details,
            )

    def cap(self, seconds: float) -> float:
        """`seconds`, or less when the budget has less left."""
        return min(seconds, self.remaining())

    def __repr__(self) -> str:
        return "Deadline(unbounded)" if self.at is None else f"Deadline({self.remaining():.1f}s left)"
