"""Failure classification: every failure gets a category, a fingerprint that groups its repeats, and a hint."""

from __future__ import annotations

import re
import traceback as tb
from datetime import datetime

from leadkit.errors import category_of, hint_of
from leadkit.models import Failure, utcnow

_NORMALISERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"https?://[^\s'\"]+"), "<url>"),
    (re.compile(r"\b\d{6}-\d{6}(?:-[A-Za-z0-9_.-]+)?"), "<run>"),
    (re.compile(r"\bSR-\d{6}-\d{3}[\w-]*"), "<run>"),
    (re.compile(r"\b(?:rec|app|tbl|fld|usr)[A-Za-z0-9]{14}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def fingerprint(category: str, message: str) -> str:
    """The message with run IDs, record IDs, URLs, times and numbers normalised, prefixed by its category."""
    text = message.strip().splitlines()[0] if message.strip() else ""
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+", " ", text)[:200]
    return f"{category}: {text}"


def failure_from(
    exc: BaseException,
    *,
    run_id: str | None = None,
    client_id: str | None = None,
    stage: str | None = None,
    notebook: str | None = None,
    cell: int | None = None,
    at: datetime | None = None,
) -> Failure:
    """Classify an exception into a Failure record."""
    from leadkit.config import scrub

    category = str(category_of(exc))
    message = scrub(f"{exc}" or type(exc).__name__)
    if category == "bug":
        message = f"{type(exc).__name__}: {message}"
    trace = None
    if category == "bug" and exc.__traceback__ is not None:
        trace = scrub("".join(tb.format_exception(exc)))
    return Failure(
        category=category,
        fingerprint=fingerprint(category, message),
        message=message,
        hint=hint_of(exc),
        run_id=run_id,
        client_id=client_id,
        stage=stage,
        at=at or utcnow(),
        notebook=notebook,
        cell=cell,
        traceback=trace,
    )
