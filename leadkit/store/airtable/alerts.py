"""The alert and triage methods of `AirtableStore` (mixed into it): the Alerts and Failure Triage tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pyairtable import Table
from pyairtable.formulas import GTE, Field

from leadkit.models import Alert, FailureTriage, TriageStatus
from leadkit.store.airtable.api import create_once
from leadkit.store.airtable.codecs import (
    created_time,
    eq,
    formula_of,
    ms_precision,
    sortable_id,
    time_cell,
    without_blanks,
)
from leadkit.store.codecs import parse_ts
from leadkit.store.schema import MAX_LONG_TEXT, Alerts
from leadkit.store.schema import FailureTriage as Triage


class AirtableAlerts:
    """Alerts (one record per message and channel) and the triage of failure groups (one per fingerprint)."""

    def _table(self, name: str) -> Table:
        raise NotImplementedError  # AirtableStore's

    def add_alerts(self, alerts: Sequence[Alert]) -> None:
        rows = [
            without_blanks(
                {
                    Alerts.ALERT_ID: sortable_id(),
                    Alerts.MESSAGE_ID: a.message_id,
                    Alerts.AT: time_cell(a.at),
                    Alerts.KIND: a.kind,
                    Alerts.KEY: a.key,
                    Alerts.CLIENTS: json.dumps(a.clients),
                    Alerts.RUN_ID: a.run_id,
                    Alerts.CHANNEL: a.channel,
                    Alerts.DELIVERED: a.delivered,
                    Alerts.ERROR: a.error,
                    Alerts.SUBJECT: a.subject,
                    Alerts.BODY: a.body[:MAX_LONG_TEXT],
                }
            )
            for a in alerts
        ]
        # each row carries a unique Alert ID: a create whose answer was lost is looked up, never sent twice
        create_once(self._table(Alerts.TABLE), rows, Alerts.ALERT_ID)

    def list_alerts(
        self,
        *,
        since: datetime | None = None,
        kind: str | None = None,
        key: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        options: dict[str, Any] = {"sort": [f"-{Alerts.AT}", f"-{Alerts.ALERT_ID}"]}
        formula = formula_of(
            eq(Alerts.KIND, kind) if kind is not None else None,
            eq(Alerts.KEY, key) if key is not None else None,
            GTE(Field(Alerts.AT), ms_precision(since)) if since is not None else None,
        )
        if formula:
            options["formula"] = formula
        if limit is not None:
            if limit <= 0:
                return []
            options["max_records"] = limit
        out = []
        for record in self._table(Alerts.TABLE).all(**options):
            f = record["fields"]
            out.append(
                Alert(
                    kind=str(f.get(Alerts.KIND, "")),
                    key=str(f.get(Alerts.KEY, "")),
                    subject=str(f.get(Alerts.SUBJECT, "")),
                    body=str(f.get(Alerts.BODY, "")),
                    channel=str(f.get(Alerts.CHANNEL, "")),
                    delivered=bool(f.get(Alerts.DELIVERED, False)),
                    error=f.get(Alerts.ERROR) or None,
                    clients=json.loads(f.get(Alerts.CLIENTS) or "[]"),
                    run_id=f.get(Alerts.RUN_ID) or None,
                    message_id=str(f.get(Alerts.MESSAGE_ID, "")),
                    at=parse_ts(f.get(Alerts.AT)) or created_time(record),
                )
            )
        return out

    def save_triage(self, triage: FailureTriage) -> None:
        fields = {
            Triage.FINGERPRINT: triage.fingerprint,
            Triage.STATUS: triage.status.value,
            Triage.NOTE: triage.note,
            Triage.CLIENTS: json.dumps(triage.clients),
            Triage.CATEGORY: triage.category,
            Triage.UPDATED_AT: time_cell(triage.updated_at),
        }
        self._table(Triage.TABLE).batch_upsert([{"fields": fields}], key_fields=[Triage.FINGERPRINT])

    def list_triage(self) -> list[FailureTriage]:
        out = []
        for record in self._table(Triage.TABLE).all(sort=[Triage.FINGERPRINT]):
            f = record["fields"]
            out.append(
                FailureTriage(
                    fingerprint=str(f.get(Triage.FINGERPRINT, "")),
                    status=TriageStatus(f.get(Triage.STATUS) or TriageStatus.NEW.value),
                    note=str(f.get(Triage.NOTE, "")),
                    clients=json.loads(f.get(Triage.CLIENTS) or "[]"),
                    category=str(f.get(Triage.CATEGORY, "")),
                    updated_at=parse_ts(f.get(Triage.UPDATED_AT)) or created_time(record),
                )
            )
        return out
