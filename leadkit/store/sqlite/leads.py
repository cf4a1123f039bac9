"""One client's leads on the embedded store: `<home>/bases/<client id>.sqlite`, a base per client as in Airtable."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadkit.errors import DataError, MissingRecordError
from leadkit.linkedin_urls import is_valid_profile_url, normalize_profile_url
from leadkit.models import (
    DuePolicy,
    HarvestStatus,
    Lead,
    NewLead,
)
from leadkit.store.base import (
    SUMMARY_DAYS,
    SUMMARY_TIMES,
    ImportResult,
    LeadSummary,
)
from leadkit.store.codecs import parse_ts, ts
from leadkit.store.sqlite.files import Db, Pool
from leadkit.store.sqlite.migrations import BASE_MIGRATIONS


class SQLiteLeadBase:
    """One client's leads in `<home>/bases/<client id>.sqlite`. After each write its `LeadSummary` is handed to
    `on_write` (the master store keeps it)."""

    def __init__(
        self,
        path: Path,
        client_id: str,
        pool: Pool | None = None,
        *,
        read_only: bool = False,
        on_write: Callable[[LeadSummary], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self._db = Db(path, BASE_MIGRATIONS, pool if pool is not None else Pool(), read_only=read_only)
        self._on_write = on_write

    def summary(self, now: datetime | None = None) -> LeadSummary:
        """The client's `LeadSummary` as its leads are now (one read of five columns of every lead)."""

        now = now or datetime.now(UTC)
        first_day = now.astimezone(UTC).date() - timedelta(days=SUMMARY_DAYS - 1)
        by_status: Counter[str] = Counter()
        posts: Counter[str] = Counter()
        due_now = 0
        next_checks: list[datetime] = []
        checked: dict[str, list[datetime]] = {"Done": [], "No Posts": [], "Processing": []}
        rows = self._db.query(
            "SELECT profile_url, harvest_status, posts_actioned, next_check_at, last_check_at, posts_found FROM leads"
        )
        for url, status, actioned, next_at, last_at, found in rows:
            by_status[status or ""] += 1
            last = parse_ts(last_at)
            if last is not None and found and last.astimezone(UTC).date() >= first_day:
                posts[last.astimezone(UTC).date().isoformat()] += int(found)
            if actioned or not is_valid_profile_url(url):
                continue
            nxt = parse_ts(next_at)
            if status in ("Done", "No Posts") and nxt is not None:
                next_checks.append(nxt)
            elif status in checked and last is not None:
                checked[status].append(last)
            else:  # blank, Pending, or never checked: due whatever the time
                due_now += 1
        lengths = {"next": len(next_checks), **{k: len(v) for k, v in checked.items()}}
        return LeadSummary(
            client_id=self.client_id,
            by_status=dict(by_status),
            due_now=due_now,
            next_checks=tuple(sorted(next_checks)[:SUMMARY_TIMES]),
            checked={k: tuple(sorted(v)[:SUMMARY_TIMES]) for k, v in checked.items()},
            lengths=lengths,
            posts_by_day=dict(posts),
            written_at=now,
        )

    def _written(self) -> None:
        if self._on_write is not None:
            self._on_write(self.summary())

    def close(self) -> None:
        self._db.close()

    def _lead(self, row: sqlite3.Row) -> Lead:
        status = row["harvest_status"]
        return Lead(
            lead_id=row["lead_id"],
            profile_url=row["profile_url"],
            name=row["name"],
            company=row["company"],
            harvest_status=HarvestStatus(status) if status else None,
            posts_found=row["posts_found"],
            last_check_at=parse_ts(row["last_check_at"]),
            last_error=row["last_error"],
            posts_actioned=row["posts_actioned"],
            harvest_run_id=row["harvest_run_id"],
            posts=json.loads(row["posts"]),
            created_at=parse_ts(row["created_at"]),
            next_check_at=parse_ts(row["next_check_at"]),
        )

    def due_leads(self, policy: DuePolicy, now: datetime, *, limit: int) -> list[Lead]:
        """Leads due for harvesting (`DuePolicy`), never checked or Pending first (newest first), then re-checks
        (longest due first); at most `limit`, read `limit` rows at a time (a lead whose URL is not a LinkedIn
        profile is passed over)."""

        if limit <= 0:
            return []
        sql = (
            "SELECT *, CASE WHEN harvest_status IS NULL OR harvest_status = ? THEN 0 ELSE 1 END AS rank, "
            "COALESCE(next_check_at, last_check_at, '') AS due FROM leads "
            "WHERE (posts_actioned IS NULL OR posts_actioned = 0) AND ("
            "harvest_status IS NULL OR harvest_status = ? "
            "OR (harvest_status = ? AND (last_check_at IS NULL OR last_check_at < ?)) "
            "OR (harvest_status = ? AND (next_check_at <= ? OR (next_check_at IS NULL AND "
            "(last_check_at IS NULL OR last_check_at <= ?)))) "
            "OR (harvest_status = ? AND (next_check_at <= ? OR (next_check_at IS NULL AND "
            "(last_check_at IS NULL OR last_check_at <= ?))))) "
            "ORDER BY rank, CASE WHEN rank = 0 THEN created_at END DESC, due, lead_id LIMIT ? OFFSET ?"
        )
        base = [
            HarvestStatus.PENDING.value,
            HarvestStatus.PENDING.value,
            HarvestStatus.PROCESSING.value,
            ts(now - policy.processing_stale_after),
            HarvestStatus.DONE.value,
            ts(now),
            ts(now - policy.refresh_after),
            HarvestStatus.NO_POSTS.value,
            ts(now),
            ts(now - policy.no_posts_recheck),
        ]
        out: list[Lead] = []
        offset = 0
        while len(out) < limit:
            rows = self._db.query(sql, [*base, limit, offset])
            out += [lead for lead in map(self._lead, rows) if is_valid_profile_url(lead.profile_url)]
            if len(rows) < limit:
                break
            offset += limit
        return out[:limit]

    def posts_found_since(self, since: datetime) -> int:
        """Posts Found summed over the leads last checked at or after `since`."""
        rows = self._db.query(
            "SELECT COALESCE(SUM(posts_found), 0) AS n FROM leads WHERE last_check_at >= ?", (ts(since),)
        )
        return int(rows[0]["n"])

    def list_leads(self, *, status: str | None = None, limit: int | None = None) -> list[Lead]:
        sql = "SELECT * FROM leads"
        params: list[Any] = []
        if status in ("", "blank"):
            sql += " WHERE harvest_status IS NULL"
        elif status is not None:
            sql += " WHERE harvest_status = ?"
            params.append(HarvestStatus(status).value)
        sql += " ORDER BY created_at DESC, lead_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._lead(r) for r in self._db.query(sql, params)]

    def count_leads_by_status(self) -> dict[str, int]:
        rows = self._db.query("SELECT harvest_status, COUNT(*) FROM leads GROUP BY harvest_status")
        return {str(r[0] or ""): int(r[1]) for r in rows}

    def get_lead(self, lead_id: str) -> Lead:
        rows = self._db.query("SELECT * FROM leads WHERE lead_id = ?", (lead_id,))
        if not rows:
            raise MissingRecordError(f"lead {lead_id!r} not found in the base of client {self.client_id!r}")
        return self._lead(rows[0])

    def import_leads(self, leads: Sequence[NewLead]) -> ImportResult:

        created = existing = 0
        now = datetime.now(UTC)
        with self._db.write() as conn:
            next_id = conn.execute("SELECT COUNT(*) FROM leads").fetchone()[0] + 1
            for lead in leads:
                key = normalize_profile_url(lead.profile_url)
                cur = conn.execute(
                    "INSERT INTO leads (lead_id, profile_url, url_key, name, company, posts, created_at) "
                    "VALUES (?, ?, ?, ?, ?, '[]', ?) ON CONFLICT(url_key) DO NOTHING",
                    (f"lead{next_id:06d}", lead.profile_url, key, lead.name, lead.company, ts(now)),
                )
                if cur.rowcount:
                    created += 1
                    next_id += 1
                else:
                    existing += 1
        if created:
            self._written()
        return ImportResult(created=created, existing=existing)

    _COLUMNS = {
        "harvest_status",
        "posts_found",
        "last_check_at",
        "last_error",
        "posts_actioned",
        "harvest_run_id",
        "posts",
        "name",
        "company",
        "next_check_at",
    }

    def update_leads(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        for fields in updates.values():
            unknown = set(fields) - self._COLUMNS
            if unknown:
                raise DataError(f"cannot update lead fields {sorted(unknown)}; accepted: {sorted(self._COLUMNS)}")
        with self._db.write() as conn:
            for lead_id, fields in updates.items():
                if not fields:
                    continue
                values: list[Any] = []
                for name, value in fields.items():
                    if name == "posts":
                        value = json.dumps(value)
                    elif name in ("last_check_at", "next_check_at"):
                        value = ts(value)
                    elif name == "harvest_status" and value is not None:
                        value = HarvestStatus(value).value
                    values.append(value)
                assignments = ", ".join(f"{name} = ?" for name in fields)
                cur = conn.execute(f"UPDATE leads SET {assignments} WHERE lead_id = ?", [*values, lead_id])
                if cur.rowcount == 0:
                    raise MissingRecordError(
                        f"lead {lead_id!r} not found in the base of client {self.client_id!r}; nothing was written"
                    )
        self._written()
