"""Alerts: tell the operator once, with the fix, and notice when nothing happens at all.

Rules (`rules`) turn a batch's end, an auth check, a sweep, a lease change and the absence of batches or posts
into notices; the engine (`engine`) keeps one alert per (kind, key) per window, delivers through Apprise
channels (`channels`) and records every attempt; `triage` holds the operator's status of failure groups.
Hooks in the batch, the sweep, the lease and auth-check call the `after_*`/`lease_*` functions, which never raise.
"""

from __future__ import annotations

from leadkit.alerts.engine import KINDS, AlertSettings, alert_settings, test_channels
from leadkit.alerts.rules import after_auth_checks, after_batch, lease_alert, lease_lost, sweep_alerts, watch
from leadkit.alerts.triage import set_triage

__all__ = [
    "KINDS",
    "AlertSettings",
    "after_auth_checks",
    "after_batch",
    "alert_settings",
    "lease_alert",
    "lease_lost",
    "set_triage",
    "sweep_alerts",
    "test_channels",
    "watch",
]
