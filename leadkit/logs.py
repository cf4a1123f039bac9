"""Structured logging: every record carries its run and client.

A batch writes `<workspace>/<base run id>/log.jsonl` (one JSON object a line: level, time, run_id, client_id,
event, message) and readable lines on stderr. Kernels started by the batch find the file in
`LEADKIT_LOG_FILE` and append to it, so records from inside the notebooks land in the same log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from leadkit.config import scrub

LOG_FILE_ENV = "LEADKIT_LOG_FILE"

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("leadkit_run_id", default=None)
_client_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("leadkit_client_id", default=None)


class ContextFilter(logging.Filter):
    """Adds run_id and client_id (from the context, unless the call passed them in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = _run_id.get()
        if getattr(record, "client_id", None) is None:
            record.client_id = _client_id.get()
        if getattr(record, "event", None) is None:
            record.event = record.name.removeprefix("leadkit.")
        return True


class JsonLinesHandler(logging.Handler):
    """Appends one JSON object a line; each line is written with a single O_APPEND write."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.dumps(
                {
                    "level": record.levelname,
                    "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                    "run_id": getattr(record, "run_id", None),
                    "client_id": getattr(record, "client_id", None),
                    "event": getattr(record, "event", record.name),
                    "message": scrub(record.getMessage()),
                    "pid": record.process,
                }
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except Exception:
            self.handleError(record)


class ReadableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(str(v) for v in (getattr(record, "run_id", None), getattr(record, "client_id", None)) if v)
        prefix = f"[{context}] " if context else ""
        return scrub(f"{record.levelname.lower():7} {prefix}{record.getMessage()}")


def _leadkit_logger() -> logging.Logger:
    logger = logging.getLogger("leadkit")
    logger.setLevel(logging.INFO)
    return logger


def add_jsonl(path: Path) -> JsonLinesHandler:
    """Send leadkit's records to a JSON-lines file (once per path)."""
    logger = _leadkit_logger()
    for handler in logger.handlers:
        if isinstance(handler, JsonLinesHandler) and handler.path == Path(path):
            return handler
    handler = JsonLinesHandler(path)
    logger.addHandler(handler)
    return handler


def add_stderr(level: int = logging.INFO) -> None:
    logger = _leadkit_logger()
    if any(getattr(h, "_leadkit_stderr", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.addFilter(ContextFilter())
    handler.setFormatter(ReadableFormatter())
    handler._leadkit_stderr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def from_environment() -> None:
    """In a kernel started by a batch: append to the batch's log file."""
    path = os.environ.get(LOG_FILE_ENV)
    if path:
        add_jsonl(Path(path))


@contextmanager
def context(run_id: str | None = None, client_id: str | None = None) -> Iterator[None]:
    tokens = []
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    if client_id is not None:
        tokens.append((_client_id, _client_id.set(client_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
