"""What is alerted, and the texts: failed clients at a batch's end (and the resolved note when they complete),
credentials that turn bad (and good again), records swept Stale, leases taken over or lost, silence (no batch
finished for too long) and clients that stopped yielding posts.

Texts are plain and short: the first line is the subject (what and where), then the facts, then where to look.
Client names are only ever text here; no message carries a channel URL or a setting's secret.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from leadkit.alerts.engine import RESOLVED, AlertSettings, Notice, alert_settings, fresh, is_open, records_of, send
from leadkit.classify import classified, fingerprint
from leadkit.durations import format_duration
from leadkit.history import DRY_RUN_SLACK, counts_as_failed
from leadkit.models import Alert, AuthCheck, ClientRun, ClientRunStatus, Failure, Run, TriageStatus, utcnow
from leadkit.store.base import RunFilter
from leadkit.streams import lease_name, may_harvest

if TYPE_CHECKING:
    from leadkit.store.base import Store
    from leadkit.workspace import Workspace

log = logging.getLogger("leadkit.alerts")

T = TypeVar("T")

#: How far back an unresolved failure alert is looked for when a batch may have resolved it.
OPEN_FOR = timedelta(days=7)
#: Statuses of a failure group that keep it quiet until it changes (a new client, a new category).
QUIET = (TriageStatus.INVESTIGATING, TriageStatus.IGNORED)


def safely(what: str, call: Callable[[], T], default: T) -> T:
    """Run an alert rule; any error is logged and swallowed, so the work that called it never fails for it."""
    try:
        return call()
    except Exception as exc:
        log.error("alerts: %s failed: %s: %s", what, type(exc).__name__, exc)
        return default


def _footer(run_id: str | None, settings: AlertSettings) -> list[str]:
    """Where to look: the command that shows the run, and the dashboard's address when LEADKIT_DASHBOARD_URL
    says it (a link the reader can open; without it, no line pretends to be one)."""
    lines = [""]
    if run_id:
        lines.append(f"Look: leadkit show {run_id}")
    url = settings.leadkit_dashboard_url.strip().rstrip("/")
    if url:
        lines.append(f"Dashboard: {url}/")
    return lines


def _first_line(text: str, most: int = 300) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line if len(line) <= most else line[: most - 1] + "…"


def run_streams(store: Store, records: Sequence[ClientRun], default: int) -> list[int]:
    """The streams of the clients a run covered (its records' clients), or [default] when none is known."""
    streams = {c.stream for c in store.list_clients() if c.client_id in {r.client_id for r in records}}
    return sorted(streams) or [default]


def _streams_label(streams: Sequence[int]) -> str:
    return f"stream {streams[0]}" if len(streams) == 1 else f"streams {', '.join(str(s) for s in streams)}"


def _names(clients: Iterable[str], most: int = 8) -> str:
    clients = list(clients)
    shown = ", ".join(clients[:most])
    return shown + (f" and {len(clients) - most} more" if len(clients) > most else "")


# ------------------------------------------------------------------------------------------------ batch end


@dataclass
class _Group:
    failure: Failure
    clients: list[str]


def failed_groups(records: Sequence[ClientRun]) -> list[_Group]:
    """The clients whose final outcome in a run counts as failed (`history.counts_as_failed`: Failed, Completed
    with Errors, Interrupted; not Stale, which the sweep's own alert reports), grouped by the fingerprint of their
    failure (a client that a retry inside the batch recovered is Completed, so it is in no group)."""
    groups: dict[str, _Group] = {}
    for record in records:
        if not counts_as_failed(record) or record.status is ClientRunStatus.STALE:
            continue
        failure = record.failure
        if failure is None:
            reason = record.reason or "the client run failed without a recorded failure"
            failure = Failure("bug", fingerprint("bug", reason), reason, "Open the executed notebook.")
        failure = classified(failure)
        group = groups.setdefault(failure.fingerprint, _Group(failure, []))
        group.clients.append(record.client_id)
    for group in groups.values():
        group.clients.sort()
    return sorted(groups.values(), key=lambda g: (-len(g.clients), g.failure.fingerprint))


def batch_notices(store: Store, run: Run, records: Sequence[ClientRun]) -> list[Notice]:
    """One notice per failure group of the run, minus groups triaged quiet; a FIXED group that fails again is a
    regression (alerted even inside the window when it was marked FIXED after its last alert)."""
    alerts = records_of(store)
    triage = {t.fingerprint: t for t in alerts.list_triage()}
    notices = []
    for group in failed_groups(records):
        f = group.failure
        state = triage.get(f.fingerprint)
        regression = False
        if state is not None:
            changed = bool(set(group.clients) - set(state.clients)) or (state.category and state.category != f.category)
            if state.status in QUIET and not changed:
                continue
            if state.status is TriageStatus.FIXED:
                last = alerts.list_alerts(kind="batch_failed", key=f.fingerprint, limit=1)
                regression = not last or last[0].at < state.updated_at
        label = "REGRESSION (was marked FIXED) " if regression else ""
        lines = [
            f"{label}[{f.category}] {len(group.clients)} client(s): {_names(group.clients)}",
            f"  {_first_line(f.message) or f.fingerprint}",
            f"  hint: {f.hint}",
        ]
        if state is not None and state.note:
            lines.append(f"  note ({state.status.value}): {state.note}")
        notices.append(Notice("batch_failed", f.fingerprint, lines, group.clients, run.run_id, always=regression))
    return notices


def resolved_notices(store: Store, run: Run, records: Sequence[ClientRun]) -> list[Notice]:
    """A resolved notice for each open failure alert all of whose clients completed in this run."""
    alerts = records_of(store)
    completed = {r.client_id for r in records if r.status is ClientRunStatus.COMPLETED}
    if not completed:
        return []
    notices = []
    seen: set[str] = set()
    for alert in alerts.list_alerts(kind="batch_failed", since=utcnow() - OPEN_FOR, limit=500):
        if alert.key in seen:
            continue
        seen.add(alert.key)
        opened = is_open(alerts, "batch_failed", alert.key)
        if opened is None:
            continue
        clients = sorted(
            {c for a in alerts.list_alerts(kind="batch_failed", key=alert.key, since=opened.at) for c in a.clients}
            | set(opened.clients)
        )
        if clients and set(clients) <= completed:
            lines = [f"  {alert.key}: {_names(clients)} completed"]
            notices.append(Notice(RESOLVED, alert.key, lines, clients, run.run_id, always=True))
    return notices


def after_batch(
    ws: Workspace,
    run: Run,
    records: Sequence[ClientRun],
    *,
    swept: Sequence[ClientRun] = (),
    takeover_note: str | None = None,
    lease: str = "",
) -> list[Alert]:
    """Alert what a finished batch found: failed clients (one message), failures it resolved (one `Resolved:`
    note), records swept Stale and a lease taken over. Never raises."""

    def run_rules() -> list[Alert]:
        settings = alert_settings(ws.home)
        store = ws.store
        alerts = records_of(store)
        sent: list[Alert] = []
        failed = fresh(alerts, batch_notices(store, run, records), settings)
        if failed:
            n = sum(len(x.clients) for x in failed)
            streams = _streams_label(run_streams(store, records, run.stream))
            subject = f"leadkit: {n} of {len(records)} clients failed in run {run.run_id} ({streams})"
            sent += send(store, subject, failed, settings, footer=_footer(run.run_id, settings))
        if "batch_failed" not in settings.off:
            done = fresh(alerts, resolved_notices(store, run, records), settings)
            if done:
                clients = sorted({c for x in done for c in x.clients})
                subject = f"Resolved: {_names(clients)} completed in run {run.run_id}"
                sent += send(store, subject, done, settings, footer=_footer(run.run_id, settings))
        sent += sweep_alerts(ws, swept, settings=settings)
        if takeover_note:
            sent += lease_alert(ws, "lease_takeover", lease, takeover_note, run_id=run.run_id, settings=settings)
        return sent

    return safely("batch end", run_rules, [])


def sweep_alerts(ws: Workspace, swept: Sequence[ClientRun], *, settings: AlertSettings | None = None) -> list[Alert]:
    """One message for the records a sweep marked Stale (one notice per client). Never raises."""

    def run_rule() -> list[Alert]:
        if not swept:
            return []
        conf = settings or alert_settings(ws.home)
        notices = [
            Notice(
                "stale_swept",
                r.client_id,
                [f"  {r.client_id} in run {r.run_id}: {r.reason or 'no live process owned it'}"],
                [r.client_id],
                r.run_id,
            )
            for r in swept
        ]
        left = fresh(records_of(ws.store), notices, conf)
        if not left:
            return []
        subject = f"leadkit: {len(left)} client run(s) swept Stale on {socket.gethostname()}"
        return send(ws.store, subject, left, conf, footer=_footer(left[0].run_id, conf))

    return safely("sweep", run_rule, [])


def lease_alert(
    ws: Workspace,
    kind: str,
    lease: str,
    detail: str,
    *,
    run_id: str | None = None,
    settings: AlertSettings | None = None,
) -> list[Alert]:
    """Alert a lease taken over (`lease_takeover`) or lost (`lease_lost`). Never raises."""

    def run_rule() -> list[Alert]:
        conf = settings or alert_settings(ws.home)
        what = "taken over" if kind == "lease_takeover" else "lost"
        notice = Notice(kind, lease or "lease", [f"  {detail}"], [], run_id)
        left = fresh(records_of(ws.store), [notice], conf)
        return send(ws.store, f"leadkit: lease {lease} {what}", left, conf, footer=_footer(run_id, conf))

    return safely(f"lease {kind}", run_rule, [])


def lease_lost(ws: Workspace, lease: str, detail: str, *, run_id: str | None = None) -> list[Alert]:
    """Alert that a running batch lost its lease (another holder has it now). Never raises."""
    return lease_alert(ws, "lease_lost", lease, detail, run_id=run_id)


# ------------------------------------------------------------------------------------------------ credentials


def after_auth_checks(store: Store, checks: Sequence[AuthCheck]) -> list[Alert]:
    """Alert credentials that fail their check; a `Resolved:` note when one that was alerted passes again."""

    def run_rules() -> list[Alert]:
        settings = alert_settings()
        alerts = records_of(store)
        bad = [
            Notice(
                "credential_bad",
                c.name,
                [
                    f"  {c.name}: {c.category or 'failed'}" + (f" (HTTP {c.status})" if c.status else ""),
                    f"  hint: {c.hint}",
                ]
                + ([f"  {c.detail}"] if c.detail else []),
            )
            for c in checks
            if not c.ok
        ]
        good = [
            Notice(RESOLVED, c.name, [f"  {c.name} passed its check at {c.checked_at:%Y-%m-%d %H:%M} UTC"], always=True)
            for c in checks
            if c.ok and is_open(alerts, "credential_bad", c.name) is not None
        ]
        sent = []
        left = fresh(alerts, bad, settings)
        if left:
            names = ", ".join(n.key for n in left)
            sent += send(
                store, f"leadkit: credential check failed: {names}", left, settings, footer=_footer(None, settings)
            )
        left = fresh(alerts, good, settings) if "credential_bad" not in settings.off else []
        if left:
            names = ", ".join(n.key for n in left)
            sent += send(store, f"Resolved: credential {names} is good again", left, settings)
        return sent

    return safely("auth check", run_rules, [])


# ------------------------------------------------------------------------------------------------ watch


@dataclass
class Silence:
    """What `leadkit watch` found for one stream."""

    stream: int
    last_run: Run | None
    lease: Any
    cause: str
    since: datetime

    def lines(self, now: datetime, max_silence: timedelta) -> list[str]:
        first = (
            f"no batch finished for stream {self.stream} in {format_duration(max_silence)} "
            f"(checked {now:%Y-%m-%d %H:%M} UTC)"
        )
        out = [first, ""]
        if self.last_run is None:
            out.append("  last run: none")
        else:
            r = self.last_run
            ended = f"ended {r.ended_at:%Y-%m-%d %H:%M} UTC, {r.status.value}" if r.ended_at else "not ended"
            out.append(f"  last run: {r.run_id} (started {r.started_at:%Y-%m-%d %H:%M} UTC, {ended})")
        if self.lease is None:
            out.append("  lease: free")
        else:
            held = self.lease
            out.append(
                f"  lease: held by {held.host} process {held.pid} since {held.acquired_at:%Y-%m-%d %H:%M} UTC, "
                f"heartbeat {format_duration(max(now - held.heartbeat_at, timedelta(0)))} ago"
                + (f", run {held.run_id}" if held.run_id else "")
            )
        out.append(f"  likely cause: {self.cause}")
        return out


def _holder_alive(lease: Any, now: datetime) -> bool:
    import psutil

    fresh_beat = (now - lease.heartbeat_at).total_seconds() <= lease.ttl_s
    if lease.host == socket.gethostname():
        return fresh_beat and psutil.pid_exists(lease.pid)
    return fresh_beat


def covered_streams(store: Store, run: Run, client_streams: dict[str, int]) -> set[int]:
    """The streams a run covered: its own, and those of the clients it ran (a plain batch runs every stream's
    clients under the run's one stream number)."""
    streams = {run.stream}
    streams.update(
        client_streams[r.client_id] for r in store.list_client_runs(run_id=run.run_id) if r.client_id in client_streams
    )
    return streams


def find_silence(store: Store, stream: int, max_silence: timedelta, now: datetime | None = None) -> Silence | None:
    """The stream's silence when no batch of it finished within `max_silence`, else None. A dry run
    (`batch --dry-run`) is not a batch finishing: it is passed over."""
    now = now or utcnow()
    last_run = last_finished = None
    offset = 0
    client_streams = {c.client_id: c.stream for c in store.list_clients()}
    while last_finished is None and offset < 2000:
        page = store.list_runs(limit=200, offset=offset)
        for run in page:
            if run.dry_run:
                continue
            if run.stream != stream and stream not in covered_streams(store, run, client_streams):
                continue
            last_run = last_run or run
            if run.ended_at is not None:
                last_finished = run
                break
        if len(page) < 200:
            break
        offset += 200
    if last_finished is not None and last_finished.ended_at is not None and now - last_finished.ended_at < max_silence:
        return None
    lease = store.get_lease(lease_name(stream))
    if lease is not None and _holder_alive(lease, now):
        cause = (
            f"the lease is held by a live process ({lease.host} pid {lease.pid}) for "
            f"{format_duration(now - lease.acquired_at)}: a batch is stuck or far slower than usual"
        )
    elif lease is not None:
        cause = (
            "the lease is stale: its holder stopped without releasing it (crash, kill, machine restart); "
            "the next batch takes it over, so check that batches still start"
        )
    elif last_run is not None:
        cause = "no batch started since the last run: is the cron line or timer still there, and the machine up?"
    else:
        cause = "no run at all for this stream: no batch was ever scheduled (see README, Scheduling)"
    since = last_finished.ended_at if last_finished is not None and last_finished.ended_at else now - max_silence
    return Silence(stream, last_finished or last_run, lease, cause, since)


def silent_clients(store: Store, silent_after: timedelta, now: datetime | None = None) -> list[Notice]:
    """Clients that may harvest, ran in the last `silent_after` and gathered no posts in it although they had some
    before; not those whose recent runs failed with a failure that is already alerted. The ClientRuns of dry
    runs (`batch --dry-run`, which harvest nothing) are left out."""
    now = now or utcnow()
    cutoff = now - silent_after
    alerts = records_of(store)
    open_failed: set[str] = set()
    for alert in alerts.list_alerts(kind="batch_failed", since=now - OPEN_FOR, limit=500):
        if is_open(alerts, "batch_failed", alert.key) is not None:
            open_failed.update(alert.clients)
    # a recent ClientRun's run started at most a batch's length before it (a day is ample); older dry runs
    # gathered no posts, so they are never the "posts before" either
    dry_runs = {r.run_id for r in store.list_runs(RunFilter(since=cutoff - DRY_RUN_SLACK), limit=5000) if r.dry_run}
    notices = []
    for client in store.list_clients():
        if not may_harvest(client):
            continue
        runs = [r for r in store.list_client_runs(client_id=client.client_id, limit=200) if r.run_id not in dry_runs]
        recent = [r for r in runs if r.started_at >= cutoff]
        before = [r for r in runs if r.started_at < cutoff and r.metrics.get("posts_harvested", 0) > 0]
        if not recent or not before or any(r.metrics.get("posts_harvested", 0) > 0 for r in recent):
            continue
        if client.client_id in open_failed and any(r.status is ClientRunStatus.FAILED for r in recent):
            continue
        last = before[0]
        lines = [
            f"  {client.client_id}: {len(recent)} run(s) since {cutoff:%Y-%m-%d %H:%M} UTC, no posts",
            f"  last posts: {int(last.metrics.get('posts_harvested', 0))} in run {last.run_id} "
            f"({last.started_at:%Y-%m-%d %H:%M} UTC)",
            "  check the client's leads (all Done or No Posts?), its Apify runs and post access",
        ]
        notices.append(
            Notice(
                "silent_client", client.client_id, lines, [client.client_id], recent[0].run_id, window=timedelta(days=1)
            )
        )
    return notices


@dataclass
class WatchResult:
    silences: list[Silence]
    silent: list[Notice]
    alerts: list[Alert]
    text: list[str]


def watch(ws: Workspace, *, streams: Sequence[int] | None = None, now: datetime | None = None) -> WatchResult:
    """Check every stream (those of the Active clients, or `streams`) for silence and every harvesting client for
    posts that stopped; alert what is found (deduped by the window). Raises only for bad settings."""
    settings = alert_settings(ws.home)
    store = ws.store
    now = now or utcnow()
    chosen = sorted(set(streams or []) or {c.stream for c in store.list_clients() if c.active} or {1})
    silences = [s for s in (find_silence(store, n, settings.max_silence, now) for n in chosen) if s is not None]
    text: list[str] = []
    sent: list[Alert] = []
    records = records_of(store)
    for silence in silences:
        lines = silence.lines(now, settings.max_silence)
        text += [*lines, ""]
        last_id = silence.last_run.run_id if silence.last_run else None
        notice = Notice("silence", f"stream-{silence.stream}", lines[2:], [], last_id)
        left = fresh(records, [notice], settings)
        if left:
            sent += send(store, lines[0], left, settings, footer=_footer(None, settings))
    silent = silent_clients(store, settings.silent_after, now)
    if silent:
        subject = f"leadkit: {len(silent)} client(s) gathered no posts for {format_duration(settings.silent_after)}"
        text += [subject, *[line for n in silent for line in n.lines], ""]
        left = fresh(records, silent, settings)
        if left:
            sent += send(store, subject, left, settings, footer=_footer(None, settings))
    return WatchResult(silences, silent, sent, text)
