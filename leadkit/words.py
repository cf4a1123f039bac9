"""Words the command line prints: counts with the right plural, and long text wrapped at word boundaries."""

from __future__ import annotations

import textwrap

__all__ = ["plural", "wrap"]

_IRREGULAR = {"batch": "batches", "is": "are", "was": "were", "has": "have", "entry": "entries"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 batch`, `2 batches`, `0 credentials`: the count and the noun in the right number."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun) or noun + 's'}"


def wrap(text: str, width: int, *, indent: str = "") -> list[str]:
    """`text` in lines of at most `width` characters, broken between words (a word longer than the width is
    broken only when it must be), following lines indented by `indent`."""
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
