"""Creates that know what happened, on a base that has no unique keys and no atomicity across requests.

Airtable cannot refuse a second record with the same key, and a write's answer can be lost after Airtable acted
(a 502 from a proxy, a dropped connection, a read timeout). urllib3 re-sends an upsert (a PATCH), and the
re-sent answer lists the record under `updatedRecords`: it cannot say who created it. So the records whose
creation decides something (a lease generation, a run, a ClientRun) are created with a POST, which nothing
re-sends, each carrying a mark of its writer (a nonce), and then:

- a create whose answer was lost is resolved by reading the key back and looking for the mark
  (`create_marked`), with a read budget of its own; only when the mark is not there after that is the create
  taken as not done (and its error raised, so the caller does not guess);
- among records that share a key, the one created first wins (`first_created`): the writer of a later one
  removes its own. Two records created in the same millisecond decide nothing (each writer removes its own and
  tries again), because the one applied first may have read before the other existed.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence

from pyairtable import Table

from leadkit.errors import LeadkitError, UpstreamError
from leadkit.store.airtable.codecs import Fields, Record
from leadkit.store.schema import MAX_RECORDS_PER_REQUEST

log = logging.getLogger(__name__)

#: Reads of the key after a create whose answer was lost, and the pause between them.
READ_BACK_ATTEMPTS = 3
READ_BACK_PAUSE_S = 0.5


#: The longest pause after two writers tied (same millisecond), so that their next tries do not tie again.
TIE_PAUSE_S = 0.25


def after_tie(sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait a random moment (up to TIE_PAUSE_S) after a tie, before trying again."""
    sleep(random.uniform(0.01, TIE_PAUSE_S))


def new_nonce() -> str:
    """A mark unique to one write."""
    return uuid.uuid4().hex[:16]


def _order(record: Record) -> tuple[str, str]:
    return str(record.get("createdTime", "")), str(record["id"])


def first_created(records: Sequence[Record]) -> Record | None:
    """The record created first, or None when two share the earliest creation time (undecided) or there are
    none."""
    if not records:
        return None
    ordered = sorted(records, key=_order)
    if len(ordered) > 1 and ordered[0].get("createdTime") == ordered[1].get("createdTime"):
        return None
    return ordered[0]


def oldest(records: Sequence[Record]) -> Record | None:
    """The record created first, ties broken by record ID: how a reader picks among duplicates."""
    return min(records, key=_order) if records else None


def create_marked(
    table: Table,
    rows: Sequence[Fields],
    read_back: Callable[[], Sequence[Record]],
    is_mine: Callable[[Record, int], bool],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Record]:
    """Create `rows` (at most 10) with one POST, never re-sent. When the answer is lost, `read_back()` reads the
    records that may be them and `is_mine(record, index)` recognises row `index` by its mark; each row found is
    returned as stored. Rows still missing after `READ_BACK_ATTEMPTS` reads were not created: the create's error
    is raised (nothing is sent again here; the caller decides)."""
    if len(rows) > MAX_RECORDS_PER_REQUEST:
        raise ValueError(f"create_marked takes at most {MAX_RECORDS_PER_REQUEST} rows, got {len(rows)}")
    try:
        return [dict(r) for r in table.batch_create(list(rows))]
    except UpstreamError as exc:
        lost: LeadkitError = exc
    found: dict[int, Record] = {}
    for attempt in range(READ_BACK_ATTEMPTS):
        if attempt:
            sleep(READ_BACK_PAUSE_S * attempt)
        try:
            candidates = list(read_back())
        except UpstreamError as exc:
            log.warning("reading back a create on %s whose answer was lost failed: %s", table.name, exc)
            continue
        for index in range(len(rows)):
            if index not in found:
                match = next((dict(r) for r in candidates if is_mine(r, index)), None)
                if match is not None:
                    found[index] = match
        if len(found) == len(rows):
            log.warning(
                "Airtable create on %s lost its answer (%s); all %d records were created", table.name, lost, len(rows)
            )
            return [found[i] for i in range(len(rows))]
    log.warning(
        "Airtable create on %s lost its answer (%s): %d of %d records were created",
        table.name,
        lost,
        len(found),
        len(rows),
    )
    raise lost
