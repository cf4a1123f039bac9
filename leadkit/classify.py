"""Failure classification: every failure gets a category, a fingerprint that groups its repeats, and a hint.

A leaf module: records, workflow and the batch classify failures through it; the reports built from failures
(groups, stats, alert texts) live above it in `leadkit.diagnosis` and `leadkit.alerts`.
"""

from __future__ import annotations

import re
import traceback as tb
from dataclasses import replace
from datetime import datetime

from leadkit.errors import HINTS, Category, category_of, hint_of
from leadkit.models import Failure, utcnow

_NORMALISERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"https?://[^\s'\"]+"), "<url>"),
    # an Apify run, dataset or key-value store ID, or any ID a message names as such (random base62 letters)
    (
        re.compile(
            r"\b((?:Apify |actor )?(?:run|runs|dataset|datasets|key-value store|request|record|build)[ /:#]+)"
            r"[A-Za-z0-9]{8,}\b",
            re.IGNORECASE,
        ),
        r"\1<id>",
    ),
    # an Apify ID anywhere: 17 random base62 characters, mixed case (not a CamelCase word such as an error's name)
    (re.compile(r"\b(?!(?:[A-Z][a-z]+)+\b)(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{17}\b"), "<id>"),
    (re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{10,}\b"), "<id>"),  # letters and digits mixed
    (re.compile(r"\b\d{6}-\d{6}(?:-[A-Za-z0-9_.-]+)?"), "<run>"),
    (re.compile(r"\bSR-\d{6}-\d{3}[\w-]*"), "<run>"),
    (re.compile(r"\b(?:rec|app|tbl|fld|usr)[A-Za-z0-9]{14}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def fingerprint(category: str, message: str) -> str:
    """The message with what changes from one occurrence of the same problem to the next normalised (URLs, hosts'
    ports, leadkit run IDs, Apify run, dataset and other random IDs, Airtable record IDs, times, hex and numbers),
    prefixed by its category: one upstream problem over many runs is one fingerprint."""
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


# ------------------------------------------------------------------------------------------------ classification

#: Words in a failure message that name its category, for failures recorded as text only (a notebook cell that
#: raised, a log line): leadkit's exception names and the services' error types. First match wins.
_TEXT_CATEGORIES: list[tuple[re.Pattern[str], Category]] = [
    (re.compile(r"\b(?:ModuleNotFoundError|ImportError|DependencyError)\b"), Category.DEPENDENCY),
    (
        re.compile(r"\b(?:UNKNOWN_FIELD_NAME|INVALID_MULTIPLE_CHOICE_OPTIONS|TABLE_NOT_FOUND|SchemaError)\b"),
        Category.SCHEMA,
    ),
    (re.compile(r"\bInsufficient permissions to create new select option\b", re.I), Category.SCHEMA),
    (
        re.compile(r"\b(?:AUTHENTICATION_REQUIRED|AuthError|token-not-provided|user-or-token-not-found)\b"),
        Category.AUTH,
    ),
    (re.compile(r"\b(?:RateLimitError|rate-limit-exceeded|RATE_LIMIT_REACHED)\b"), Category.RATE_LIMIT),
    (re.compile(r"\b(?:UpstreamError|ReadTimeout|ConnectTimeout|ConnectError)\b"), Category.UPSTREAM),
    (re.compile(r"\b(?:MissingRecordError|MODEL_ID_NOT_FOUND)\b"), Category.MISSING_RECORD),
    (re.compile(r"\bConfigError\b"), Category.CONFIG),
    (re.compile(r"\b(?:DataError|InvalidRunId|InvalidClientId)\b"), Category.DATA),
]


def classify_text(message: str) -> Category | None:
    """The category a failure message names (an exception class or a service's error type), or None."""
    for pattern, category in _TEXT_CATEGORIES:
        if pattern.search(message):
            return category
    return None


def classified(failure: Failure) -> Failure:
    """The failure with its category, fingerprint and hint made specific when it was stored as a `bug` whose
    message names a more precise category (e.g. "cell 3 raised SchemaError: ..." from a notebook)."""
    if failure.category != Category.BUG.value:
        return failure
    better = classify_text(failure.message)
    if better is None:
        return failure
    return replace(
        failure,
        category=better.value,
        fingerprint=fingerprint(better.value, failure.message),
        hint=HINTS[better],
    )
