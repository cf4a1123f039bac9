"""One exception tree for leadkit.

Every error carries a *category* (what kind of thing went wrong), a *hint* (what to do
about it) and an *exit code* (what a scheduler sees)::

    LeadkitError                 bug        exit 1
    ├── AuthError                auth       exit 2   401/403, token refused
    ├── ConfigError              config     exit 2   missing setting, wrong URL, HTML where JSON was expected
    │   └── StoreUnusable                            a store file that is empty, corrupt, locked or read-only
    ├── RateLimitError           rate_limit exit 1   429 that outlasted the wait
    ├── UpstreamError            upstream   exit 1   5xx, 408, timeouts, dropped connections
    │   └── DeadlineExceeded                       a client's time budget ran out
    ├── NotFound                 missing_record exit 2   what was asked for (run, client, client run) is not there
    │   └── MissingRecordError                     a record looked up in the store
    ├── SchemaError              schema     exit 2   unknown field, missing select option or table
    ├── DependencyError          dependency exit 2   a declared package that does not import
    ├── DataError                data       exit 2   bad input (also a ValueError)
    │   ├── InvalidRunId
    │   └── InvalidClientId
    ├── LeaseHeld                config     exit 3   another batch of this stream is running
    └── NotebookError            bug        exit 1   a client notebook failed (cell, kernel, timeout)

Messages never contain secrets: code that builds them passes URLs and statuses, never headers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class Category(StrEnum):
    AUTH = "auth"
    CONFIG = "config"
    RATE_LIMIT = "rate_limit"
    UPSTREAM = "upstream"
    MISSING_RECORD = "missing_record"
    SCHEMA = "schema"
    DEPENDENCY = "dependency"
    DATA = "data"
    BUG = "bug"


HINTS: dict[Category, str] = {
    Category.AUTH: "The service refused the token: check that it is set, not expired, and has access "
    "(Airtable: scopes data.records:read/write and schema.bases:read on the base; Apify: a valid API token).",
    Category.CONFIG: "Check the setting or URL named in the message; an HTML page where JSON was expected "
    "usually means a wrong base URL, a missing route or a login page, not an expired token.",
    Category.RATE_LIMIT: "The service rate-limited us; leadkit waits and retries. If it keeps happening, "
    "run fewer workers or spread batches out.",
    Category.UPSTREAM: "The service failed or timed out (5xx, 408, dropped connection); leadkit retried. "
    "Re-run later; nothing was marked as final.",
    Category.MISSING_RECORD: "A record that should exist was not found; check the run ID and client ID "
    "(`leadkit show RUN_ID`).",
    Category.SCHEMA: "The base lacks a table, field or select option leadkit writes: run "
    "`leadkit airtable provision` or add it by hand.",
    Category.DEPENDENCY: "A declared dependency does not import: run `make setup` (or "
    "`pip install -e .`) in the environment that runs leadkit.",
    Category.DATA: "Nothing was changed: correct that input and run the command again.",
    Category.BUG: "An unexpected error inside leadkit; the traceback is kept with the failure.",
}


class LeadkitError(Exception):
    """Base of every error leadkit raises on purpose."""

    category: ClassVar[Category] = Category.BUG
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or HINTS[self.category]
        self.details = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"category": str(self.category), "message": self.message, "hint": self.hint}


class AuthError(LeadkitError):
    category = Category.AUTH
    exit_code = 2


class ConfigError(LeadkitError):
    category = Category.CONFIG
    exit_code = 2


class StoreUnusable(ConfigError):
    """A store file that cannot be used as it is: empty, not SQLite, truncated, corrupt, locked or read-only.
    The message names the file and what is wrong, the hint the fix; nothing was written."""


class RateLimitError(LeadkitError):
    category = Category.RATE_LIMIT


class UpstreamError(LeadkitError):
    category = Category.UPSTREAM


class DeadlineExceeded(UpstreamError):
    """The time budget of a client's run (derived from the notebook's timeout) ran out before the work ended."""


class NotFound(LeadkitError):
    """What was asked for (a run, a client, a client of a run) is not there: bad input, exit 2, nothing changed."""

    category = Category.MISSING_RECORD
    exit_code = 2


class MissingRecordError(NotFound):
    """A record looked up in the store (by the ID a command was given) does not exist."""


class SchemaError(LeadkitError):
    category = Category.SCHEMA
    exit_code = 2


class DependencyError(LeadkitError):
    category = Category.DEPENDENCY
    exit_code = 2


class DataError(LeadkitError, ValueError):
    category = Category.DATA
    exit_code = 2


class InvalidRunId(DataError):
    """A run ID that matches none of the known formats."""


class InvalidClientId(DataError):
    """A client ID that could escape a path, a formula or a notebook name."""


class LeaseHeld(LeadkitError):
    category = Category.CONFIG
    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(
            message,
            hint=hint
            or "Another batch of this stream is running. Wait for it, or if its process is gone, "
            "start again: a dead holder on this host is taken over at once.",
            **details,
        )


class NotebookError(LeadkitError):
    """A client notebook failed: a cell raised, the kernel died or it ran past its timeout."""


def category_of(exc: BaseException) -> Category:
    """The category of any exception: leadkit's own, or the nearest fit for a foreign one."""
    if isinstance(exc, LeadkitError):
        return exc.category
    if isinstance(exc, ModuleNotFoundError | ImportError):
        return Category.DEPENDENCY
    if isinstance(exc, TimeoutError | ConnectionError):
        return Category.UPSTREAM
    return Category.BUG


def hint_of(exc: BaseException) -> str:
    if isinstance(exc, LeadkitError):
        return exc.hint
    return HINTS[category_of(exc)]
