"""Words the command line prints: counts with the right plural, and long text wrapped at word boundaries."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plural", "table_lines", "wrap_text"]

_IRREGULAR = {"batch": "batches", "is": "are", "was": "were", "has": "have", "entry": "entries"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 batch`, `2 batches`, `0 credentials`: the count and the noun in the right number."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun) or noun + 's'}"


def wrap_text(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken between words (a word longer than the width is
    broken only when it must be); one empty line for no text."""
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False) or [""]


def table_lines(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, wrap: Mapping[str, int] | None = None
) -> list[str]:
    """A plain table: a header, a rule and one line per row, except that the cells of the columns in `wrap`
    (column -> width) are wrapped between words onto as many lines as they need (the other cells of those lines
    are blank). `(none)` for no rows."""
    if not rows:
        return ["(none)"]
    limits = dict(wrap or {})
    cells: list[dict[str, list[str]]] = []
    for row in rows:
        texts = {c: "" if row.get(c) is None else str(row.get(c)) for c in columns}
        cells.append({c: wrap_text(t, limits[c]) if c in limits else [t] for c, t in texts.items()})
    widths = {c: max(len(c), *(len(part) for cell in cells for part in cell[c])) for c in columns}
    out = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    for cell in cells:
        height = max(len(parts) for parts in cell.values())
        for i in range(height):
            parts = [(cell[c][i] if i < len(cell[c]) else "").ljust(widths[c]) for c in columns]
            out.append("  ".join(parts).rstrip())
    return out
