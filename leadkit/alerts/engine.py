"""The alert engine: settings, the dedupe window, delivery to every channel, and the record of each attempt.

Rules (in `leadkit.alerts.rules`) turn what happened into `Notice`s; `fresh` drops the ones already alerted in
the window (or switched off); `send` delivers one message for the notices left to every channel, records one
Alert row per notice and channel, and first re-sends what an earlier attempt failed to deliver on that channel.
Nothing here raises into the caller's work: a batch never fails because a channel is down.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from leadkit.alerts.channels import Channel, deliver, parse_channels
from leadkit.config import ALERT_KINDS, AlertSettings, load
from leadkit.errors import ConfigError
from leadkit.models import Alert, Lease, utcnow
from leadkit.store.base import AlertRecords, Store

log = logging.getLogger("leadkit.alerts")

#: Every kind of alert; each can be switched off in LEADKIT_ALERTS_OFF.
KINDS = ALERT_KINDS
#: The kind of a "Resolved:" note (it follows the switch of the kind it resolves).
RESOLVED = "resolved"
TEST = "test"
#: How long an undelivered message is offered again with the next alert on its channel.
RETRY_FOR = timedelta(days=1)


def alert_settings(home: Path | str | None = None, **overrides: object) -> AlertSettings:
    """Read the alert settings now from the environment, ./.env and the workspace's .env (`home`, default
    LEADKIT_HOME); a bad value is a ConfigError naming the setting (never a channel URL)."""
    return load(AlertSettings, home, **overrides)


def channels_of(settings: AlertSettings) -> list[Channel]:
    """The channels LEADKIT_ALERT_URLS names ([] when unset); ConfigError for one Apprise cannot use."""
    urls = settings.leadkit_alert_urls
    return parse_channels(urls.get_secret_value() if urls else "")


def records_of(store: Store) -> AlertRecords:
    """The store's alert records, or ConfigError when this backend keeps none."""
    if not isinstance(store, AlertRecords):
        raise ConfigError(f"the store {store.url} does not keep alerts", hint="Use the SQLite or Airtable store.")
    return store


@dataclass
class Notice:
    """Something to tell: `kind` and `key` (a fingerprint, client, check, stream or lease) dedupe it; `lines` are
    its part of the message; `always` skips the window (a regression, a resolved note)."""

    kind: str
    key: str
    lines: list[str]
    clients: list[str] = field(default_factory=list)
    run_id: str | None = None
    always: bool = False
    window: timedelta | None = None


def is_open(records: AlertRecords, kind: str, key: str, *, since: datetime | None = None) -> Alert | None:
    """The newest alert of (kind, key) that no later `Resolved:` note closed, or None."""
    last = records.list_alerts(kind=kind, key=key, since=since, limit=1)
    if not last:
        return None
    resolved = records.list_alerts(kind=RESOLVED, key=key, since=last[0].at, limit=1)
    return None if resolved else last[0]


def fresh(records: AlertRecords, notices: Sequence[Notice], settings: AlertSettings) -> list[Notice]:
    """The notices to send: kind switched on, not alerted for (kind, key) within the window since the last
    `Resolved:` note for that key, and claimed in the store (`claim`): of two processes that find the same notice
    at once, only one sends it."""
    now = utcnow()
    out = []
    for notice in notices:
        kind = notice.kind
        if kind in settings.off:
            continue
        if not notice.always:
            window = notice.window or settings.window
            if is_open(records, kind, notice.key, since=now - window) is not None:
                continue
            if isinstance(records, Store) and not claim(records, kind, notice.key, window, now=now):
                continue
        out.append(notice)
    return out


def claim_name(kind: str, key: str) -> str:
    """The store lease that claims alerts of (kind, key): `alert:<kind>:<16 hex digits of the key's SHA-256>`."""
    import hashlib

    return f"alert:{kind}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def claim(store: Store, kind: str, key: str, window: timedelta, *, now: datetime | None = None) -> bool:
    """Claim the right to alert (kind, key) for `window`, through the store's compare-and-swap on a lease named
    for them: True for the one caller whose swap lands. A claim older than the window, or followed by a
    `Resolved:` note for the key, is taken over (with the same compare-and-swap)."""
    import os
    import socket

    now = now or utcnow()
    name = claim_name(kind, key)
    for _ in range(3):
        held = store.get_lease(name)
        if held is not None and now - held.acquired_at < window:
            if not store.list_alerts(kind=RESOLVED, key=key, since=held.acquired_at, limit=1):
                return False
        mine = Lease(name, socket.gethostname(), os.getpid(), uuid.uuid4().hex, now, now, window.total_seconds())
        if store.swap_lease(name, held, mine):
            return True
    return False


def send(
    store: Store, subject: str, notices: Sequence[Notice], settings: AlertSettings, *, footer: Sequence[str] = ()
) -> list[Alert]:
    """Deliver one message (subject, each notice's lines, the footer) to every channel and record it; first
    re-send the messages that an earlier attempt failed to deliver on each channel. Returns the new rows."""
    if not notices:
        return []
    records = records_of(store)
    body_lines = [subject, ""]
    for notice in notices:
        body_lines.extend(notice.lines)
    body_lines.extend(footer)
    body = "\n".join(body_lines).strip() + "\n"
    message_id = uuid.uuid4().hex
    channels = channels_of(settings)
    rows: list[Alert] = []
    if not channels:
        rows = [_row(n, subject, body, "", False, None, message_id) for n in notices]
        log.info("alert recorded, no channel configured (LEADKIT_ALERT_URLS): %s", subject)
    for channel in channels:
        rows.extend(_retry_pending(records, channel))
        error = deliver(channel, subject, body)
        if error:
            log.warning("alert not delivered to %s: %s", channel.name, error)
        rows.extend(_row(n, subject, body, channel.name, error is None, error, message_id) for n in notices)
    records.add_alerts(rows)
    return rows


def _row(
    notice: Notice, subject: str, body: str, channel: str, delivered: bool, error: str | None, message_id: str
) -> Alert:
    return Alert(
        kind=notice.kind,
        key=notice.key,
        subject=subject,
        body=body,
        channel=channel,
        delivered=delivered,
        error=error,
        clients=list(notice.clients),
        run_id=notice.run_id,
        message_id=message_id,
    )


def pending(records: AlertRecords, channel: str) -> list[Alert]:
    """The newest row of each message of the last RETRY_FOR that no attempt delivered to `channel`."""
    newest: dict[str, Alert] = {}
    delivered: set[str] = set()
    for alert in records.list_alerts(since=utcnow() - RETRY_FOR, limit=500):
        if alert.channel != channel or alert.kind == TEST:
            continue
        if alert.delivered:
            delivered.add(alert.message_id)
        newest.setdefault((alert.message_id + "\0" + alert.kind + "\0" + alert.key), alert)
    return [a for a in newest.values() if a.message_id not in delivered and a.error is not None]


def _retry_pending(records: AlertRecords, channel: Channel) -> list[Alert]:
    rows: list[Alert] = []
    by_message: dict[str, list[Alert]] = {}
    for alert in pending(records, channel.name):
        by_message.setdefault(alert.message_id, []).append(alert)
    for message_id, alerts in list(by_message.items())[:10]:
        first = alerts[0]
        error = deliver(channel, first.subject, first.body)
        rows.extend(
            Alert(
                kind=a.kind,
                key=a.key,
                subject=a.subject,
                body=a.body,
                channel=channel.name,
                delivered=error is None,
                error=error,
                clients=a.clients,
                run_id=a.run_id,
                message_id=message_id,
            )
            for a in alerts
        )
        if error is not None:
            break  # the channel is still down: the rest waits for the next alert
    return rows


def test_channels(store: Store | None, settings: AlertSettings) -> list[Alert]:
    """Send a test message to each channel; record each delivery when a store is given. Returns the rows."""
    channels = channels_of(settings)
    if not channels:
        raise ConfigError(
            "no alert channel is configured",
            hint="Set LEADKIT_ALERT_URLS to one or more Apprise URLs, e.g. "
            "json://127.0.0.1:8025/alerts or mailto://user:pass@smtp.example.com?to=ops@example.com.",
        )
    subject = "leadkit test alert: this channel works"
    body = f"{subject}\n\nSent by `leadkit alerts test` at {utcnow():%Y-%m-%d %H:%M} UTC. Nothing is wrong.\n"
    message_id = uuid.uuid4().hex
    rows: list[Alert] = []
    for channel in channels:
        error = deliver(channel, subject, body)
        rows.append(Alert(TEST, channel.name, subject, body, channel.name, error is None, error, message_id=message_id))
    if store is not None:
        records_of(store).add_alerts(rows)
    return rows


@dataclass
class ChannelState:
    """One channel's delivery state: its last attempt, last test and the messages still undelivered."""

    channel: str
    last_at: datetime | None = None
    last_delivered: bool | None = None
    last_error: str | None = None
    last_test_at: datetime | None = None
    last_test_delivered: bool | None = None
    undelivered: int = 0

    @property
    def ok(self) -> bool:
        return self.last_delivered is not False

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "last_delivered": self.last_delivered,
            "last_error": self.last_error,
            "last_test_at": self.last_test_at.isoformat() if self.last_test_at else None,
            "last_test_delivered": self.last_test_delivered,
            "undelivered": self.undelivered,
        }


def channel_states(store: Store | None, settings: AlertSettings) -> list[ChannelState]:
    """The state of every configured channel (and of channels recorded in the last day but no longer set)."""
    states = {c.name: ChannelState(c.name) for c in channels_of(settings)}
    if store is None or not isinstance(store, AlertRecords):
        return list(states.values())
    for alert in store.list_alerts(since=utcnow() - RETRY_FOR, limit=1000):
        if not alert.channel:
            continue
        state = states.setdefault(alert.channel, ChannelState(alert.channel))
        if state.last_at is None:
            state.last_at, state.last_delivered, state.last_error = alert.at, alert.delivered, alert.error
        if alert.kind == TEST and state.last_test_at is None:
            state.last_test_at, state.last_test_delivered = alert.at, alert.delivered
    for state in states.values():
        state.undelivered = len({a.message_id for a in pending(store, state.channel)})
    return list(states.values())
