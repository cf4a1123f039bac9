"""Demo data: fictional clients covering every eligibility verdict, with their leads."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from leadkit.models import Client, HarvestStatus, NewLead, utcnow
from leadkit.store.base import Store

DEMO_NAMES = [
    "Acme-Co",
    "Globex",
    "Initech",
    "Umbrella-Corp",
    "Hooli",
    "Stark-Industries",
    "Wayne-Enterprises",
    "Soylent",
]

# (label, client template): the first two are due; each other one is not, for one reason.
_SCENARIOS: list[tuple[str, Client]] = [
    ("due", Client("", "", service_level=2, post_access=True, daily_target=40, batch_size=5, max_batches=2)),
    ("due", Client("", "", service_level=3, post_access=True, daily_target=30, batch_size=4, max_batches=2)),
    ("paused", Client("", "", status="Paused", service_level=2, post_access=True, daily_target=20, batch_size=5)),
    ("level-1", Client("", "", service_level=1, post_access=True, daily_target=20, batch_size=5)),
    ("no-post-access", Client("", "", service_level=2, post_access=False, daily_target=20, batch_size=5)),
    ("no-target", Client("", "", service_level=2, post_access=True, daily_target=0, batch_size=5)),
    ("no-lead-waiting", Client("", "", service_level=2, post_access=True, daily_target=20, batch_size=5)),
    ("target-met", Client("", "", service_level=2, post_access=True, daily_target=3, batch_size=5)),
]


def client_names(count: int, names: list[str] | None = None) -> list[str]:
    pool = list(names or DEMO_NAMES)
    out = []
    for i in range(count):
        base = pool[i % len(pool)]
        out.append(base if i < len(pool) else f"{base}-{i // len(pool) + 1}")
    return out


def seed(
    store: Store,
    count: int = 8,
    *,
    names: list[str] | None = None,
    leads_per_client: int = 8,
    base_ids: list[str] | None = None,
) -> list[Client]:
    """Create `count` demo clients (cycling through the scenarios) and their leads; returns the clients.
    `base_ids` gives each client its own Airtable base (in order)."""
    clients = []
    now = utcnow()
    for i, client_id in enumerate(client_names(count, names)):
        label, template = _SCENARIOS[i % len(_SCENARIOS)]
        client = replace(
            template,
            client_id=client_id,
            name=client_id.replace("-", " "),
            base_id=base_ids[i] if base_ids else None,
        )
        store.save_client(client)
        clients.append(client)
        base = store.lead_base(client)
        slug = client_id.lower()
        base.import_leads(
            [
                NewLead(
                    profile_url=f"https://www.linkedin.com/in/{slug}-lead-{n:02d}/",
                    name=f"Lead {n} of {client.name}",
                    company=f"{client.name} Prospect {n}",
                )
                for n in range(1, leads_per_client + 1)
            ]
        )
        leads = base.list_leads()
        if label == "no-lead-waiting":
            base.update_leads(
                {
                    lead.lead_id: {
                        "harvest_status": HarvestStatus.DONE,
                        "posts_found": 1,
                        "last_check_at": now - timedelta(days=2),
                    }
                    for lead in leads
                }
            )
        elif label == "target-met":
            base.update_leads(
                {
                    lead.lead_id: {"harvest_status": HarvestStatus.DONE, "posts_found": 2, "last_check_at": now}
                    for lead in leads[:2]
                }
            )
    return clients
