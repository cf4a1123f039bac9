"""The batch lease on Airtable: a compare-and-set built from generation records in the `Leases` table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyairtable import Table

from leadkit.models import Lease
from leadkit.store import codecs as shared
from leadkit.store.airtable.api import claim
from leadkit.store.airtable.codecs import (
    Fields,
    Record,
    _created,
    _eq,
    _formula,
    _int,
    _ts,
)
from leadkit.store.codecs import parse_ts
from leadkit.store.schema import Leases

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
    }


def _lease(record: Record) -> Lease | None:
    f = record["fields"]
    if f.get(Leases.RELEASED):
        return None
    acquired = parse_ts(f.get(Leases.ACQUIRED_AT))
    heartbeat = parse_ts(f.get(Leases.HEARTBEAT_AT))
    assert acquired is not None and heartbeat is not None
    return Lease(
        name=str(f.get(Leases.NAME, "")),
        host=str(f.get(Leases.HOST, "")),
        pid=_int(f.get(Leases.PID)),
        run_id=str(f.get(Leases.RUN_ID, "")),
        acquired_at=acquired,
        heartbeat_at=heartbeat,
        ttl_s=float(f.get(Leases.TTL_S, 0.0)),
    )


def _lease_filled(record: Record) -> bool:
    f = record["fields"]
    return bool(f.get(Leases.RELEASED) or f.get(Leases.HOST))


class AirtableLeases:
    """The lease methods of `AirtableStore` (mixed into it): the lease heads (holder, generation) this process
    last read or wrote save reads, and the lease records it wrote are deleted when it releases."""

    _lease_heads: dict[str, tuple[Lease | None, int]]
    _lease_records: dict[str, list[str]]

    def _table(self, name: str) -> Table:
        raise NotImplementedError  # AirtableStore's

    def _lease_head(self, name: str) -> tuple[Lease | None, int, bool]:
        """(current holder, highest generation, a claim is in progress), read from the base."""
        records = self._table(Leases.TABLE).all(
            formula=_formula(_eq(Leases.NAME, name)), sort=[f"-{Leases.GENERATION}"], max_records=2
        )
        self._lease_heads.pop(name, None)
        if not records:
            self._lease_heads[name] = (None, 0)
            return None, 0, False
        top = records[0]
        generation = _int(top["fields"].get(Leases.GENERATION))
        if _lease_filled(top):
            current = _lease(top)
            self._lease_heads[name] = (current, generation)
            return current, generation, False
        claimed = parse_ts(top["fields"].get(Leases.CLAIMED_AT)) or _created(top)
        in_progress = datetime.now(UTC) - claimed < timedelta(seconds=LEASE_CLAIM_GRACE_S)
        previous = _lease(records[1]) if len(records) > 1 and _lease_filled(records[1]) else None
        return previous, generation, in_progress

    def get_lease(self, name: str) -> Lease | None:
        return self._lease_head(name)[0]

    def swap_lease(self, name: str, expected: Lease | None, new: Lease | None) -> bool:
        """Compare-and-set. The head this process last read or wrote saves a read: if it is out of date, the
        claim of the next generation finds that generation taken and the swap fails, as it must."""
        cached = self._lease_heads.get(name)
        if cached is not None and cached[0] == expected:
            current, generation, in_progress = cached[0], cached[1], False
        else:
            current, generation, in_progress = self._lease_head(name)
        if in_progress or current != expected:
            return False
        if current is None and new is None:
            return True
        table = self._table(Leases.TABLE)
        generation += 1
        record, created = claim(
            table,
            {
                Leases.LEASE_KEY: f"{name}#{generation}",
                Leases.NAME: name,
                Leases.GENERATION: generation,
                Leases.CLAIMED_AT: _ts(datetime.now(UTC)),
            },
            [Leases.LEASE_KEY],
        )
        if not created:
            self._lease_heads.pop(name, None)
            return False
        table.update(record["id"], _lease_fields(new) if new is not None else {Leases.RELEASED: True})
        self._lease_heads[name] = (new, generation)
        mine = self._lease_records.setdefault(name, [])
        if new is None and mine:
            table.batch_delete(mine)  # the generations this process wrote; the release record stays
            mine.clear()
        mine.append(record["id"])
        return True
