"""Alerts: tell the operator once, with the fix, and notice when nothing happens at all.

Rules (`rules`) turn a batch's end, an auth check, a sweep, a lease change and the absence of batches or posts
into notices; the engine (`engine`) keeps one alert per (kind, key) per window, delivers through Apprise
channels (`channels`) and records every attempt; `triage` holds the operator's status of failure groups.
Hooks in the batch, the sweep, the lease and auth-check call the `after_*`/`lease_*` functions, which never raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leadkit.alerts.engine import KINDS, AlertSettings, ChannelState, alert_settings, records_of, test_channels
from leadkit.alerts.rules import after_auth_checks, after_batch, lease_alert, lease_lost, sweep_alerts, watch
from leadkit.alerts.triage import set_triage
from leadkit.errors import LeadkitError
from leadkit.models import Alert, utcnow

if TYPE_CHECKING:
    from leadkit.workspace import Workspace


def list_alerts(ws: Workspace, *, limit: int = 200) -> list[Alert]:
    """The latest alerts, newest first (one row per message and channel)."""
    return records_of(ws.store).list_alerts(limit=limit)


def channel_states(ws: Workspace) -> list[ChannelState]:
    """Each configured channel's last delivery, last test and undelivered messages."""
    from leadkit.alerts.engine import channel_states as states

    return states(ws.store, alert_settings(ws.home))


def alert_summary(ws: Workspace) -> dict[str, str]:
    """The alert state in a few numbers for the overview: messages in the last day, channels failing, and
    messages of the last day recorded with no channel (nobody was told)."""
    from datetime import timedelta

    recent = records_of(ws.store).list_alerts(since=utcnow() - timedelta(days=1), limit=1000)
    sent = {a.message_id for a in recent if a.kind != "test"}
    try:
        states = channel_states(ws)
    except LeadkitError as exc:
        return {"Alerts (24h)": str(len(sent)), "Alert channels": f"setting error: {exc.message}"}
    failing = [s.channel for s in states if not s.ok]
    unsent = {a.message_id for a in recent if not a.channel and a.kind != "test"}
    summary = {
        "Alerts (24h)": str(len(sent)),
        "Alert channels": f"{len(states) - len(failing)} ok, {len(failing)} failing" if states else "none set",
    }
    if unsent:
        summary["Alerts sent nowhere (24h)"] = f"{len(unsent)} (no channel was set)"
    return summary


__all__ = [
    "KINDS",
    "AlertSettings",
    "ChannelState",
    "after_auth_checks",
    "after_batch",
    "alert_settings",
    "alert_summary",
    "channel_states",
    "list_alerts",
    "lease_alert",
    "lease_lost",
    "set_triage",
    "sweep_alerts",
    "test_channels",
    "watch",
]
