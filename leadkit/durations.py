"""Short durations as people type them on a command line: ``30s``, ``15m``, ``2h``, ``7d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from leadkit.errors import DataError

__all__ = ["format_duration", "parse_duration"]

_UNITS: tuple[tuple[str, int], ...] = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_ACCEPTED = (
    "a positive whole number with a unit s, m, h or d (e.g. 30s, 15m, 2h, 7d), "
    "or units combined largest first (e.g. 1h30m, 2d12h)"
)


def parse_duration(text: str) -> timedelta:
    """A positive ``timedelta`` from ``text``; raise :class:`DataError` naming the input otherwise."""
    if not isinstance(text, str):
        raise DataError(f"Duration {text!r} is a {type(text).__name__}, not text; expected {_ACCEPTED}.")
    stripped = text.strip().lower()
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None:
        raise DataError(f"Duration {text!r} is not valid; expected {_ACCEPTED}.")
    seconds = sum(int(value) * size for value, (_, size) in zip(match.groups(), _UNITS, strict=True) if value)
    if seconds <= 0:
        raise DataError(f"Duration {text!r} is zero; expected {_ACCEPTED}.")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise DataError(f"Duration {text!r} is too long to represent; expected {_ACCEPTED}.") from None


def format_duration(value: timedelta) -> str:
    """Compact text for ``value`` (``2h5m``, ``45s``), rounded to whole seconds; ``parse_duration`` reads it."""
    if value < timedelta(0):
        raise DataError(f"Duration {value} is negative; only zero or positive durations can be formatted.")
    microseconds = value // timedelta(microseconds=1)
    remaining = (microseconds + 500_000) // 1_000_000
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
