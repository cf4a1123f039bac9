"""Value codecs both backends use: the exact text form of a time and a failure's JSON form."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from leadkit.models import Failure


def ts(dt: datetime | None) -> str | None:
    """A sortable UTC text form of a time, to the microsecond (fixed width, so text order is time order)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: object) -> datetime | None:
    """The time an ISO 8601 text names (UTC when it names no zone); None for anything that is not text or is empty."""
    if not value or not isinstance(value, str):
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def failure_to_dict(failure: Failure, *, stamp: Callable[[datetime | None], str | None] = ts) -> dict[str, Any]:
    """A failure as plain values; `stamp` writes its time (microseconds by default)."""
    return {
        "category": failure.category,
        "fingerprint": failure.fingerprint,
        "message": failure.message,
        "hint": failure.hint,
        "run_id": failure.run_id,
        "client_id": failure.client_id,
        "stage": failure.stage,
        "at": stamp(failure.at),
        "notebook": failure.notebook,
        "cell": failure.cell,
        "traceback": failure.traceback,
    }


def failure_from_dict(data: Mapping[str, Any]) -> Failure:
    """The failure `failure_to_dict` wrote (a missing time reads as now)."""
    values = dict(data)
    values["at"] = parse_ts(values.get("at")) or datetime.now(UTC)
    return Failure(**values)


def failure_to_json(failure: Failure | None) -> str | None:
    return None if failure is None else json.dumps(failure_to_dict(failure))


def failure_from_json(text: str | None) -> Failure | None:
    return failure_from_dict(json.loads(text)) if text else None
