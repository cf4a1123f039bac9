"""One client's leads in the `Leads` table of that client's own Airtable base."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pyairtable import Api, Table
from pyairtable.formulas import AND, EQ, GTE, LT, LTE, NOT, OR, Field, Formula, to_formula_str

from leadkit.errors import (
    DataError,
    MissingRecordError,
)
from leadkit.linkedin_urls import is_valid_profile_url, normalize_profile_url
from leadkit.models import (
    DuePolicy,
    HarvestStatus,
    Lead,
    NewLead,
)
from leadkit.store.airtable.api import create_once
from leadkit.store.airtable.codecs import (
    Fields,
    Record,
    clip,
    created_time,
    eq,
    formula_of,
    ms_precision,
    opt_int,
    posts_json,
    reading,
    time_cell,
    time_field,
    without_blanks,
)
from leadkit.store.base import ImportResult
from leadkit.store.codecs import parse_ts
from leadkit.store.schema import (
    RECORD_ID_RE,
    Leads,
)

_LEAD_FIELDS: dict[str, str] = {
    "harvest_status": Leads.HARVEST_STATUS,
    "posts_found": Leads.POSTS_FOUND,
    "last_check_at": Leads.LAST_CHECK_AT,
    "last_error": Leads.HARVEST_ERROR,
    "posts_actioned": Leads.POSTS_ACTIONED,
    "harvest_run_id": Leads.HARVEST_RUN_ID,
    "posts": Leads.POSTS_CONTENT,
    "company": Leads.COMPANY,
    "next_check_at": Leads.NEXT_CHECK_AT,
}
_LEAD_ATTRIBUTES = frozenset({*_LEAD_FIELDS, "name"})


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


def _lead_value(attribute: str, value: Any) -> Any:
    if value is None:
        return None
    if attribute == "harvest_status":
        return HarvestStatus(value).value
    if attribute in ("last_check_at", "next_check_at"):
        return time_cell(value)
    if attribute == "posts":
        return posts_json(list(value))
    if attribute == "last_error":
        return clip(str(value))
    return value


def lead_from(record: Record) -> Lead:
    with reading(Leads.TABLE, record):
        return _lead_of(record)


def _lead_of(record: Record) -> Lead:
    f = record["fields"]
    status = f.get(Leads.HARVEST_STATUS)
    name = " ".join(p for p in (f.get(Leads.FIRST_NAME, ""), f.get(Leads.LAST_NAME, "")) if p)
    return Lead(
        lead_id=record["id"],
        profile_url=str(f.get(Leads.PROFILE_URL, "")),
        name=name,
        company=str(f.get(Leads.COMPANY, "")),
        harvest_status=HarvestStatus(status) if status else None,
        posts_found=opt_int(f.get(Leads.POSTS_FOUND)),
        last_check_at=time_field(Leads.TABLE, record, Leads.LAST_CHECK_AT),
        last_error=f.get(Leads.HARVEST_ERROR) or None,
        posts_actioned=opt_int(f.get(Leads.POSTS_ACTIONED)),
        harvest_run_id=f.get(Leads.HARVEST_RUN_ID) or None,
        posts=json.loads(f.get(Leads.POSTS_CONTENT) or "[]"),
        created_at=parse_ts(f.get(Leads.DATE_CREATED)) or created_time(record),
        next_check_at=time_field(Leads.TABLE, record, Leads.NEXT_CHECK_AT),
    )


class AirtableLeadBase:
    """One client's leads, in the `Leads` table of that client's own base (`Client.base_id`)."""

    def __init__(self, api: Api, base_id: str, client_id: str) -> None:
        self.api = api
        self.base_id = base_id
        self.client_id = client_id
        self.table: Table = api.table(base_id, Leads.TABLE)

    def list_leads(self, *, status: str | None = None, limit: int | None = None) -> list[Lead]:
        formula = None
        if status in ("", "blank"):
            formula = formula_of(eq(Leads.HARVEST_STATUS, ""))
        elif status is not None:
            formula = formula_of(eq(Leads.HARVEST_STATUS, _harvest_status(status)))
        options: dict[str, Any] = {"sort": [f"-{Leads.DATE_CREATED}"]}
        if formula:
            options["formula"] = formula
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = limit
        return [lead_from(r) for r in self.table.all(**options)]

    def due_leads(self, policy: DuePolicy, now: datetime, *, limit: int) -> list[Lead]:
        """Leads due under `policy`, filtered by Airtable: blank or Pending first (newest first), then the
        re-checks that are due (longest due first), at most `limit` in two list calls."""

        if limit <= 0:
            return []
        status = Field(Leads.HARVEST_STATUS)
        last, next_ = Field(Leads.LAST_CHECK_AT), Field(Leads.NEXT_CHECK_AT)
        not_actioned = OR(EQ(Field(Leads.POSTS_ACTIONED), ""), EQ(Field(Leads.POSTS_ACTIONED), 0))

        def recheck(value: HarvestStatus, period: Any) -> Formula:
            return AND(
                EQ(status, value.value),
                OR(
                    AND(next_, LTE(next_, ms_precision(now))),  # a date field is true when it is set
                    AND(NOT(next_), OR(NOT(last), LTE(last, ms_precision(now - period)))),
                ),
            )

        fresh = self.table.all(
            formula=to_formula_str(AND(not_actioned, OR(EQ(status, ""), EQ(status, HarvestStatus.PENDING.value)))),
            sort=[f"-{Leads.DATE_CREATED}"],
            max_records=limit,
        )
        out = [lead for lead in map(lead_from, fresh) if is_valid_profile_url(lead.profile_url)]
        if len(out) < limit:
            due = self.table.all(
                formula=to_formula_str(
                    AND(
                        not_actioned,
                        OR(
                            AND(
                                EQ(status, HarvestStatus.PROCESSING.value),
                                OR(NOT(last), LT(last, ms_precision(now - policy.processing_stale_after))),
                            ),
                            recheck(HarvestStatus.DONE, policy.refresh_after),
                            recheck(HarvestStatus.NO_POSTS, policy.no_posts_recheck),
                        ),
                    )
                ),
                sort=[Leads.NEXT_CHECK_AT, Leads.LAST_CHECK_AT],
                max_records=limit - len(out),
            )
            out += [lead for lead in map(lead_from, due) if is_valid_profile_url(lead.profile_url)]
        return out[:limit]

    def posts_found_since(self, since: datetime) -> int:
        records = self.table.all(
            formula=to_formula_str(GTE(Field(Leads.LAST_CHECK_AT), ms_precision(since))), fields=[Leads.POSTS_FOUND]
        )
        return sum(opt_int(r["fields"].get(Leads.POSTS_FOUND)) or 0 for r in records)

    def count_leads_by_status(self) -> dict[str, int]:
        """Airtable cannot count: reads the Harvest Status field alone of every lead (100 a request)."""
        counts: Counter[str] = Counter()
        for page in self.table.iterate(fields=[Leads.HARVEST_STATUS]):
            counts.update(str(r["fields"].get(Leads.HARVEST_STATUS) or "") for r in page)
        return dict(counts)

    def get_lead(self, lead_id: str) -> Lead:
        missing = MissingRecordError(
            f"lead {lead_id!r} not found in the base of client {self.client_id!r} ({self.base_id})"
        )
        if RECORD_ID_RE.fullmatch(lead_id) is None:
            raise missing
        try:
            return lead_from(self.table.get(lead_id))
        except MissingRecordError:
            raise missing from None

    def import_leads(self, leads: Sequence[NewLead]) -> ImportResult:

        known = {
            normalize_profile_url(url)
            for r in self.table.all(fields=[Leads.PROFILE_URL])
            if (url := str(r["fields"].get(Leads.PROFILE_URL, "")).strip())
        }
        now = time_cell(datetime.now(UTC))
        new: list[Fields] = []
        existing = 0
        for lead in leads:
            key = normalize_profile_url(lead.profile_url)
            if key in known:
                existing += 1
                continue
            known.add(key)
            first, last = _split_name(lead.name)
            new.append(
                {
                    Leads.PROFILE_URL: lead.profile_url,
                    Leads.FIRST_NAME: first or None,
                    Leads.LAST_NAME: last or None,
                    Leads.COMPANY: lead.company or None,
                    Leads.DATE_CREATED: now,
                }
            )
        if new:
            create_once(self.table, [without_blanks(f) for f in new], Leads.PROFILE_URL)
        return ImportResult(created=len(new), existing=existing)

    def update_leads(self, updates: Mapping[str, Mapping[str, Any]]) -> None:
        batch: list[dict[str, Any]] = []
        for lead_id, attributes in updates.items():
            unknown = set(attributes) - _LEAD_ATTRIBUTES
            if unknown:
                raise DataError(f"cannot update lead fields {sorted(unknown)}; accepted: {sorted(_LEAD_ATTRIBUTES)}")
            if RECORD_ID_RE.fullmatch(lead_id) is None:
                raise MissingRecordError(
                    f"lead {lead_id!r} not found in the base of client {self.client_id!r}; nothing was written"
                )
            fields: Fields = {}
            for attribute, value in attributes.items():
                if attribute == "name":
                    first, last = _split_name(value or "")
                    fields[Leads.FIRST_NAME], fields[Leads.LAST_NAME] = first or None, last or None
                else:
                    fields[_LEAD_FIELDS[attribute]] = _lead_value(attribute, value)
            if fields:
                batch.append({"id": lead_id, "fields": fields})
        if batch:
            self.table.batch_update(batch)  # type: ignore[arg-type]


def _harvest_status(value: str) -> str:
    try:
        return HarvestStatus(value).value
    except ValueError:
        raise DataError(
            f"lead status {value!r} is not one leadkit knows; accepted: "
            f"{[s.value for s in HarvestStatus]} or '' for blank"
        ) from None
