"""Failures and auth checks of `AirtableStore` (mixed into it): created once each, read newest first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pyairtable import Table
from pyairtable.formulas import GTE, Field, Formula

from leadkit.models import (
    AuthCheck,
    Failure,
)
from leadkit.store.airtable.api import create_once
from leadkit.store.airtable.archive import Archive
from leadkit.store.airtable.codecs import (
    Record,
    clip,
    created_time,
    eq,
    formula_of,
    ms_precision,
    opt_int,
    sortable_id,
    time_cell,
    without_blanks,
)
from leadkit.store.codecs import failure_to_dict, parse_ts
from leadkit.store.schema import (
    AuthChecks,
    Failures,
)

log = logging.getLogger(__name__)


class AirtableReports:
    """The failures and auth checks of `AirtableStore`."""

    base_id: str
    _table: Callable[[str], Table]

    @property
    def archive(self) -> Archive | None:
        raise NotImplementedError  # AirtableStore's

    def add_failure(self, failure: Failure) -> None:
        data = failure_to_dict(failure, stamp=time_cell)
        create_once(
            self._table(Failures.TABLE),
            [
                without_blanks(
                    {
                        Failures.FAILURE_ID: sortable_id(),
                        Failures.CATEGORY: data["category"],
                        Failures.FINGERPRINT: data["fingerprint"],
                        Failures.MESSAGE: clip(data["message"]),
                        Failures.HINT: clip(data["hint"]),
                        Failures.RUN_ID: data["run_id"],
                        Failures.CLIENT_ID: data["client_id"],
                        Failures.STAGE: data["stage"],
                        Failures.AT: data["at"],
                        Failures.NOTEBOOK: data["notebook"],
                        Failures.CELL: data["cell"],
                        Failures.TRACEBACK: clip(data["traceback"]),
                    }
                )
            ],
            Failures.FAILURE_ID,
        )

    def _newest(
        self,
        table: str,
        at_field: str,
        id_field: str,
        since: datetime | None,
        limit: int | None,
        where: Formula | None = None,
    ) -> Sequence[Record]:
        options: dict[str, Any] = {"sort": [f"-{at_field}", f"-{id_field}"]}
        formula = formula_of(GTE(Field(at_field), ms_precision(since)) if since is not None else None, where)
        if formula:
            options["formula"] = formula
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = limit
        return self._table(table).all(**options)

    def list_failures(
        self, *, since: datetime | None = None, limit: int | None = None, client_id: str | None = None
    ) -> list[Failure]:
        out = []
        where = eq(Failures.CLIENT_ID, client_id) if client_id is not None else None
        for record in self._newest(Failures.TABLE, Failures.AT, Failures.FAILURE_ID, since, limit, where):
            f = record["fields"]
            out.append(
                Failure(
                    category=str(f.get(Failures.CATEGORY, "")),
                    fingerprint=str(f.get(Failures.FINGERPRINT, "")),
                    message=str(f.get(Failures.MESSAGE, "")),
                    hint=str(f.get(Failures.HINT, "")),
                    run_id=f.get(Failures.RUN_ID) or None,
                    client_id=f.get(Failures.CLIENT_ID) or None,
                    stage=f.get(Failures.STAGE) or None,
                    at=parse_ts(f.get(Failures.AT)) or created_time(record),
                    notebook=f.get(Failures.NOTEBOOK) or None,
                    cell=opt_int(f.get(Failures.CELL)),
                    traceback=f.get(Failures.TRACEBACK) or None,
                )
            )
        return out

    def add_auth_checks(self, checks: Sequence[AuthCheck]) -> None:
        if not checks:
            return
        create_once(
            self._table(AuthChecks.TABLE),
            [
                without_blanks(
                    {
                        AuthChecks.CHECK_ID: sortable_id(),
                        AuthChecks.NAME: c.name,
                        AuthChecks.OK: c.ok,
                        AuthChecks.CATEGORY: c.category,
                        AuthChecks.STATUS_CODE: c.status,
                        AuthChecks.LATENCY_MS: c.latency_ms,
                        AuthChecks.HINT: c.hint,
                        AuthChecks.CHECKED_AT: time_cell(c.checked_at),
                        AuthChecks.DETAIL: clip(c.detail),
                    }
                )
                for c in checks
            ],
            AuthChecks.CHECK_ID,
        )

    def list_auth_checks(self, *, since: datetime | None = None, limit: int | None = None) -> list[AuthCheck]:
        out = []
        records: list[Record] = list(
            self._newest(AuthChecks.TABLE, AuthChecks.CHECKED_AT, AuthChecks.CHECK_ID, since, limit)
        )
        if self.archive is not None and (limit is None or len(records) < limit):
            old = self.archive.records(self.base_id, AuthChecks.TABLE, since=since)[::-1]
            records += old[: None if limit is None else limit - len(records)]
        for record in records:
            f = record["fields"]
            out.append(
                AuthCheck(
                    name=str(f.get(AuthChecks.NAME, "")),
                    ok=bool(f.get(AuthChecks.OK, False)),
                    category=f.get(AuthChecks.CATEGORY) or None,
                    status=opt_int(f.get(AuthChecks.STATUS_CODE)),
                    latency_ms=float(f.get(AuthChecks.LATENCY_MS, 0.0)),
                    hint=str(f.get(AuthChecks.HINT, "")),
                    checked_at=parse_ts(f.get(AuthChecks.CHECKED_AT)) or created_time(record),
                    detail=str(f.get(AuthChecks.DETAIL, "")),
                )
            )
        return out
