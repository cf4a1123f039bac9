"""The lead summaries the SQLite master store keeps as leads are written: Client health of the whole workspace
from one query equals each client's health read from its leads, and reads no lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadkit.health import client_health, workspace_health
from leadkit.models import Client, HarvestStatus, NewLead
from leadkit.store.sqlite import SQLiteLeadBase
from leadkit.workspace import Workspace

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def _client(cid: str, **changes: object) -> Client:
    values: dict[str, object] = dict(
        client_id=cid,
        name=cid,
        status="Active",
        service_level=2,
        post_access=True,
        daily_target=20,
        batch_size=5,
    )
    values.update(changes)
    return Client(**values)  # type: ignore[arg-type]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws")


def _fill(ws: Workspace) -> None:
    """Clients whose leads are in every state the due rule knows, at times around NOW."""
    states: list[dict[str, object]] = [
        {},  # blank: due
        {"harvest_status": "Pending"},
        {"harvest_status": "Done", "last_check_at": NOW - timedelta(days=8)},  # due (refresh after 7 days)
        {"harvest_status": "Done", "last_check_at": NOW - timedelta(days=2), "posts_found": 4},
        {"harvest_status": "Done", "last_check_at": NOW - timedelta(hours=1), "posts_found": 3},  # today
        {
            "harvest_status": "No Posts",
            "last_check_at": NOW - timedelta(days=3),
            "next_check_at": NOW + timedelta(hours=5),
        },
        {"harvest_status": "No Posts", "last_check_at": NOW - timedelta(days=20)},
        {"harvest_status": "Processing", "last_check_at": NOW - timedelta(minutes=10)},
        {"harvest_status": "Processing", "last_check_at": NOW - timedelta(hours=2)},
        {"harvest_status": "Done", "posts_actioned": 1, "last_check_at": NOW - timedelta(days=30)},
    ]
    for i in range(12):
        cid = f"Client-{i:02d}"
        ws.store.save_client(_client(cid, daily_target=3 if i % 4 == 0 else 20, post_access=i != 5))
        base = ws.store.lead_base(ws.store.get_client(cid))
        leads = [NewLead(f"https://www.linkedin.com/in/p{i}x{j}", f"P {j}") for j in range(len(states))]
        leads.append(NewLead("https://example.com/not-a-profile", "Bad URL"))
        base.import_leads(leads)
        shown = base.list_leads()
        picked = [s for k, s in enumerate(states) if (k + i) % 3 != 0 or i % 2]  # clients differ
        updates = {}
        for lead, state in zip(sorted(shown, key=lambda x: x.profile_url), picked, strict=False):
            fields = dict(state)
            if "harvest_status" in fields:
                fields["harvest_status"] = HarvestStatus(str(fields["harvest_status"]))
            updates[lead.lead_id] = fields
        base.update_leads(updates)
    ws.store.save_client(_client("No-Leads-Yet"))


@pytest.mark.parametrize("later", [timedelta(0), timedelta(hours=6), timedelta(days=9)])
def test_workspace_health_equals_each_clients_health_and_reads_no_lead(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, later: timedelta
) -> None:
    _fill(ws)
    now = NOW + later
    expected = {c.client_id: client_health(ws, c.client_id, now=now) for c in ws.store.list_clients()}
    reads: list[str] = []
    real = SQLiteLeadBase.list_leads

    def counted(self: SQLiteLeadBase, **kwargs: object) -> object:
        reads.append(self.client_id)
        return real(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SQLiteLeadBase, "list_leads", counted)
    got = {h["client_id"]: h for h in workspace_health(ws, now=now)}
    assert reads == ["No-Leads-Yet"]  # the one client with no summary is read from its (empty) base
    assert set(got) == set(expected)
    for cid, want in expected.items():
        have = got[cid]
        for key in ("verdict", "leads_by_status", "leads_total", "next_lead_due_at", "next_step"):
            assert have[key] == want[key], (cid, key, have[key], want[key])
    due = {cid for cid, h in got.items() if h["verdict"] and h["verdict"]["due"]}
    assert due and due != set(got)  # the fixture has both


def test_summary_follows_each_write_and_a_removed_client_has_none(ws: Workspace) -> None:
    ws.store.save_client(_client("Acme-Co"))
    base = ws.store.lead_base(ws.store.get_client("Acme-Co"))
    base.import_leads(
        [NewLead("https://www.linkedin.com/in/acme1", "A"), NewLead("https://www.linkedin.com/in/acme2", "B")]
    )
    assert dict(ws.store.lead_summaries()["Acme-Co"].by_status) == {"": 2}
    lead = base.list_leads()[0]
    base.update_leads({lead.lead_id: {"harvest_status": HarvestStatus.DONE, "last_check_at": NOW}})
    summary = ws.store.lead_summaries()["Acme-Co"]
    assert dict(summary.by_status) == {"": 1, "Done": 1} and summary.due_now == 1
    ws.store.remove_client("Acme-Co")
    assert "Acme-Co" not in ws.store.lead_summaries()
