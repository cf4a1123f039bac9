"""The batch lease on Airtable: a compare-and-set built from generation records in the `Leases` table.

Every change of holder, and every heartbeat, creates the next generation's record, filled in (holder, times), with
a POST that nothing re-sends. The generation is a fencing number that only grows: after creating it the writer
reads the head back, and holds the lease only if its record is the first created of the highest generation. So
- a claim or heartbeat whose answer was lost is resolved by finding the writer's record in that read (its holder
  fields and claim time are its mark), never by a re-sent answer;
- two writers of one generation cannot both win (the later removes its record);
- a holder that was taken over cannot come back (ABA): its late heartbeat creates a generation that is not the
  highest, and it learns it lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyairtable import Table

from leadkit.errors import LeadkitError
from leadkit.models import Lease
from leadkit.store import codecs as shared
from leadkit.store.airtable.codecs import (
    Fields,
    Record,
    created_time,
    eq,
    formula_of,
    int_cell,
    reading,
    required_time,
    time_cell,
)
from leadkit.store.airtable.writes import after_tie, create_marked, first_created, oldest
from leadkit.store.codecs import parse_ts
from leadkit.store.schema import Leases

log = logging.getLogger(__name__)

#: How many records of the newest generations a head read fetches (duplicates of one generation included).
HEAD_READ = 6

#: A lease claim older than this whose holder never filled it in is taken as abandoned.
LEASE_CLAIM_GRACE_S = 30.0


def _lease_fields(lease: Lease) -> Fields:
    return {
        Leases.HOST: lease.host,
        Leases.PID: lease.pid,
        Leases.RUN_ID: lease.run_id,
        Leases.ACQUIRED_AT: shared.ts(lease.acquired_at),
        Leases.HEARTBEAT_AT: shared.ts(lease.heartbeat_at),
        Leases.TTL_S: lease.ttl_s,
        Leases.PROCESS_STARTED: lease.process_started,
    }


def _lease(record: Record) -> Lease | None:
    f = record["fields"]
    if f.get(Leases.RELEASED):
        return None
    with reading(Leases.TABLE, record):
        acquired = required_time(Leases.TABLE, record, Leases.ACQUIRED_AT)
        heartbeat = required_time(Leases.TABLE, record, Leases.HEARTBEAT_AT)
        return _lease_of(record, acquired, heartbeat)


def _lease_of(record: Record, acquired: datetime, heartbeat: datetime) -> Lease:
    f = record["fields"]
    return Lease(
        name=str(f.get(Leases.NAME, "")),
        host=str(f.get(Leases.HOST, "")),
        pid=int_cell(f.get(Leases.PID)),
        run_id=str(f.get(Leases.RUN_ID, "")),
        acquired_at=acquired,
        heartbeat_at=heartbeat,
        ttl_s=float(f.get(Leases.TTL_S, 0.0)),
        process_started=float(f.get(Leases.PROCESS_STARTED) or 0.0),
    )


def _identity(lease: Lease) -> tuple[str, int, float]:
    """The holder process: what marks its lease records."""
    return lease.host, lease.pid, round(lease.process_started, 2)


def _record_identity(record: Record) -> tuple[str, int, float]:
    f = record["fields"]
    return (
        str(f.get(Leases.HOST, "")),
        int_cell(f.get(Leases.PID)),
        round(float(f.get(Leases.PROCESS_STARTED) or 0.0), 2),
    )


@dataclass
class _Head:
    holder: Lease | None
    generation: int
    #: The highest generation has no decided holder yet (a claim being filled in, or two claims of one
    #: millisecond): no swap now.
    undecided: bool
    records: list[Record]


def _lease_filled(record: Record) -> bool:
    f = record["fields"]
    return bool(f.get(Leases.RELEASED) or f.get(Leases.HOST))


class AirtableLeases:
    """The lease methods of `AirtableStore` (mixed into it): the lease heads (holder, generation) this process
    last read or wrote save reads, and the lease records it wrote are deleted when it releases."""

    _lease_heads: dict[str, tuple[Lease | None, int]]
    _lease_records: dict[str, list[str]]
    #: A swap whose create may or may not have landed (its answer and the read back both failed):
    #: (expected, new). The same holder's next swap from `expected` accepts `new` as the current holder.
    _lease_unknown: dict[str, tuple[Lease | None, Lease | None]]

    def _table(self, name: str) -> Table:
        raise NotImplementedError  # AirtableStore's

    def _read_head(self, name: str) -> _Head:
        records: list[Record] = list(
            self._table(Leases.TABLE).all(
                formula=formula_of(eq(Leases.NAME, name)), sort=[f"-{Leases.GENERATION}"], max_records=HEAD_READ
            )
        )
        self._lease_heads.pop(name, None)
        if not records:
            self._lease_heads[name] = (None, 0)
            return _Head(None, 0, False, records)
        generation = int_cell(records[0]["fields"].get(Leases.GENERATION))
        top = [r for r in records if int_cell(r["fields"].get(Leases.GENERATION)) == generation]
        filled = [r for r in top if _lease_filled(r)]
        if filled:
            winner = first_created(filled)
            chosen = winner if winner is not None else oldest(filled)
            assert chosen is not None  # `filled` is not empty
            # a tie is left to its writers, who remove their records; one they could not remove is decided by
            # record ID once it is older than the grace, so it never blocks the lease
            undecided = winner is None and datetime.now(UTC) - created_time(chosen) < timedelta(
                seconds=LEASE_CLAIM_GRACE_S
            )
            current = _lease(chosen)
            if not undecided:
                self._lease_heads[name] = (current, generation)
            return _Head(current, generation, undecided, records)
        # A claim written before leases were filled in at creation: wait for its holder while it is young.
        first = oldest(top)
        assert first is not None
        claimed = parse_ts(first["fields"].get(Leases.CLAIMED_AT)) or created_time(first)
        in_progress = datetime.now(UTC) - claimed < timedelta(seconds=LEASE_CLAIM_GRACE_S)
        below = [r for r in records if int_cell(r["fields"].get(Leases.GENERATION)) < generation and _lease_filled(r)]
        previous = _lease(below[0]) if below else None
        return _Head(previous, generation, in_progress, records)

    def _lease_head(self, name: str) -> tuple[Lease | None, int, bool]:
        """(current holder, highest generation, no holder decided yet), read from the base."""
        head = self._read_head(name)
        return head.holder, head.generation, head.undecided

    def get_lease(self, name: str) -> Lease | None:
        return self._read_head(name).holder

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        """Compare-and-set by creating the next generation (see the module docstring). The head this process
        last read or wrote saves a read: if it is out of date, the head read after the create shows a higher
        generation or an earlier record of this one, and the swap fails, as it must. A heartbeat of the holder
        whose previous heartbeat landed though its answer was lost matches that heartbeat's record."""
        cached = self._lease_heads.get(name)
        if cached is not None and cached[0] == expected:
            current, generation = cached
        else:
            head = self._read_head(name)
            if head.undecided:
                return False
            current, generation = head.holder, head.generation
        unknown = self._lease_unknown.pop(name, None)
        if current != expected and not (unknown is not None and unknown == (expected, current)):
            return False
        if current is None and new is None:
            return True
        writer = new if new is not None else expected
        assert writer is not None
        generation += 1
        claimed_at = time_cell(datetime.now(UTC))
        fields: Fields = {
            Leases.LEASE_KEY: f"{name}#{generation}",
            Leases.NAME: name,
            Leases.GENERATION: generation,
            Leases.CLAIMED_AT: claimed_at,
        }
        if new is not None:
            fields.update({k: v for k, v in _lease_fields(new).items() if v is not None})
        else:
            fields.update(
                {
                    Leases.RELEASED: True,
                    Leases.HOST: writer.host,
                    Leases.PID: writer.pid,
                    Leases.PROCESS_STARTED: writer.process_started,
                    Leases.HEARTBEAT_AT: claimed_at,
                }
            )
        table = self._table(Leases.TABLE)
        me = _identity(writer)
        read: list[_Head] = []

        def read_back() -> list[Record]:
            read.append(self._read_head(name))
            return read[-1].records

        def is_mine(record: Record, _: int) -> bool:
            f = record["fields"]
            return (
                int_cell(f.get(Leases.GENERATION)) == generation
                and _record_identity(record) == me
                and f.get(Leases.CLAIMED_AT) == claimed_at
            )

        try:
            record = create_marked(table, [fields], read_back, is_mine)[0]
        except LeadkitError:
            # not known whether it landed: if it did, the next swap from `expected` finds `new` and goes on
            self._lease_heads.pop(name, None)
            self._lease_unknown[name] = (expected, new)
            raise
        head = read[-1] if read else self._read_head(name)
        mine_at_generation = [
            r
            for r in head.records
            if int_cell(r["fields"].get(Leases.GENERATION)) == generation and _record_identity(r) == me
        ]
        at_generation = [r for r in head.records if int_cell(r["fields"].get(Leases.GENERATION)) == generation]
        winner = first_created(at_generation)
        if head.generation != generation or winner is None or winner["id"] not in {r["id"] for r in mine_at_generation}:
            # fenced (a higher generation exists), beaten to this generation, or a tie: take back what we wrote
            why = (
                f"generation {head.generation} exists"
                if head.generation != generation
                else "another claim of it came first"
                if winner is not None
                else "two claims of it came in the same millisecond"
            )
            log.info("lease %s: the claim of generation %d failed (%s)", name, generation, why)
            if winner is None:
                after_tie()
            self._lease_heads.pop(name, None)
            try:
                table.batch_delete([r["id"] for r in mine_at_generation] or [record["id"]])
            except LeadkitError as exc:
                log.warning("lease %s: the failed claim's record could not be removed: %s", name, exc)
            return False
        self._lease_heads[name] = (new, generation)
        mine = self._lease_records.setdefault(name, [])
        if new is None and mine:
            table.batch_delete(mine)  # the generations this process wrote; the release record stays
            mine.clear()
        mine.append(winner["id"])
        return True
