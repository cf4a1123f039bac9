"""What each view shows, read through the store protocol with paging in the database.

Every function returns plain text values (times as UTC text, numbers as numbers): the views show them as text,
never as markup. Nothing here loads every row of a table: lists are paged or capped, and counts, rates and each
client's latest run are the store's aggregate queries.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

import leadkit as lk

RUN_PAGE_SIZE = 25
LATEST_RUNS = 10
CHART_DAYS = 14
#: Cap of the chart's read of runs (a batch is one run, so 14 days of hourly batches are 336).
CHART_RUNS_CAP = 5000
#: The window of the success rate and the record-keeping stats.
WINDOW_DAYS = 7
AUTH_HISTORY = 100
FAILED_STATUSES = ("Failed", "Stale")

RUN_COLUMNS = ["Run ID", "Status", "Clients", "Failures", "Started (UTC)", "Ended (UTC)"]


def now_utc() -> datetime:
    return datetime.now(UTC)


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={int(v) if float(v).is_integer() else round(v, 2)}" for k, v in sorted(metrics.items()))


def text(value: Any) -> str:
    """Any record value as display text (lists joined, None empty, times in UTC)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return fmt_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set):
        return ", ".join(text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {text(v)}" for k, v in value.items())
    return str(value)


def parse_day(value: str, name: str) -> date | None:
    """A `YYYY-MM-DD` filter value, or None when empty."""
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise lk.LeadkitError(f"the {name} date {value!r} is not a date; use YYYY-MM-DD, e.g. 2025-11-28") from None


def run_filter(status: str = "", client_id: str = "", since: str = "", until: str = "") -> Any:
    """A RunFilter from the view's filter values; `until` is inclusive (the whole day)."""
    since_day = parse_day(since, "from")
    until_day = parse_day(until, "to")
    return lk.RunFilter(
        status=status or None,
        client_id=client_id or None,
        since=datetime(since_day.year, since_day.month, since_day.day, tzinfo=UTC) if since_day else None,
        until=(datetime(until_day.year, until_day.month, until_day.day, tzinfo=UTC) + timedelta(days=1))
        if until_day
        else None,
    )


def run_status_text(run: Any) -> str:
    """A run's status as every view shows it: a `batch --dry-run` is marked, as `leadkit runs` marks it."""
    return f"{run.status} (dry run)" if run.dry_run else str(run.status)


def _run_row(run: Any) -> dict[str, Any]:
    return {
        "Run ID": run.run_id,
        "Status": run_status_text(run),
        "Clients": int(run.clients_total),
        "Failures": int(run.clients_failed),
        "Started (UTC)": fmt_time(run.started_at),
        "Ended (UTC)": fmt_time(run.ended_at),
    }


def frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class RunsPage:
    rows: pd.DataFrame
    total: int
    page: int
    pages: int


def runs_page(ws: Any, filt: Any, page: int, size: int = RUN_PAGE_SIZE) -> RunsPage:
    """One page of runs, newest first (page numbers start at 1; a page past the end shows the last one)."""
    total = ws.store.count_runs(filt)
    pages = max(1, math.ceil(total / size))
    page = min(max(1, page), pages)
    runs = ws.store.list_runs(filt, limit=size, offset=(page - 1) * size)
    return RunsPage(frame([_run_row(r) for r in runs], RUN_COLUMNS), total, page, pages)


def latest_runs(ws: Any, limit: int = LATEST_RUNS) -> pd.DataFrame:
    return frame([_run_row(r) for r in ws.store.list_runs(limit=limit)], RUN_COLUMNS)


def client_ids(ws: Any) -> list[str]:
    return [c.client_id for c in ws.store.list_clients()]


# ------------------------------------------------------------------------------------------------ overview
def overview_numbers(
    ws: Any, *, failing: pd.DataFrame, auth: pd.DataFrame, now: datetime | None = None
) -> dict[str, str]:
    """Runs in the last 24 h and 7 days, the client success rate over every ClientRun of the 7 days but those of
    dry runs (counted by the store), and the counts of the failing clients and failing credentials already read (`failing_clients`,
    `auth_latest`)."""
    now = now or now_utc()
    day = ws.store.count_runs(lk.RunFilter(since=now - timedelta(days=1)))
    week = ws.store.count_runs(lk.RunFilter(since=now - timedelta(days=WINDOW_DAYS)))
    counts = lk.real_client_run_counts(ws.store, since=now - timedelta(days=WINDOW_DAYS))  # dry runs left out
    rate = f"{100 * counts.success_rate:.0f}%" if counts.success_rate is not None else "n/a"
    auth_bad = int((auth["OK"] == "no").sum()) if len(auth) else 0
    auth_state = "not checked yet" if not len(auth) else ("all OK" if auth_bad == 0 else f"{auth_bad} failing")
    return {
        "Runs, last 24 h": str(day),
        "Runs, last 7 days": str(week),
        "Client success rate (7 days)": rate,
        "Failing clients": str(len(failing)),
        "Auth checks": auth_state,
    }


def runs_by_day(ws: Any, days: int = CHART_DAYS, now: datetime | None = None) -> pd.DataFrame:
    """Runs started per day and status over the last `days` days (one capped query)."""
    now = now or now_utc()
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days - 1)
    runs = ws.store.list_runs(lk.RunFilter(since=start), limit=CHART_RUNS_CAP)
    statuses = [str(s) for s in lk.RunStatus]
    counts = Counter((r.started_at.astimezone(UTC).date(), str(r.status)) for r in runs)
    rows = []
    for i in range(days):
        d = (start + timedelta(days=i)).date()
        rows.append({"day": d.isoformat(), **{s: counts.get((d, s), 0) for s in statuses}})
    return pd.DataFrame(rows, columns=["day", *statuses])


FAILING_COLUMNS = ["Client", "Status", "Run ID", "Category", "Hint", "Error"]


def failing_clients(ws: Any) -> pd.DataFrame:
    """Clients whose latest ClientRun failed (or went stale): one query for every client's latest run."""
    rows = []
    clients = [c.client_id for c in ws.store.list_clients()]
    latest = ws.store.latest_client_runs(clients)
    for client_id in clients:
        rec = latest.get(client_id)
        if rec is not None and lk.counts_as_failed(rec):
            rows.append(
                {
                    "Client": client_id,
                    "Status": str(rec.status),
                    "Run ID": rec.run_id,
                    "Category": rec.failure.category if rec.failure else "",
                    "Hint": rec.failure.hint if rec.failure else (rec.reason or ""),
                    "Error": rec.failure.message if rec.failure else "",
                }
            )
    return frame(rows, FAILING_COLUMNS)


def stats_rows(ws: Any, now: datetime | None = None) -> pd.DataFrame:
    """The record-keeping metrics of `leadkit stats` over the last `WINDOW_DAYS` days, one row per metric, named in
    words ("Opens by source, batch", not `opens_by_source.batch`)."""
    stats = lk.record_stats(ws, since=(now or now_utc()) - timedelta(days=WINDOW_DAYS))
    rows: list[dict[str, Any]] = []

    def words(key: Any) -> str:
        return str(key).replace("_", " ")

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}, {words(key)}" if prefix else words(key).capitalize(), sub)
        else:
            rows.append({"Metric": prefix, "Value": text(value)})

    walk("", stats)
    return frame(rows, ["Metric", "Value"])


# ------------------------------------------------------------------------------------------------ auth
AUTH_COLUMNS = ["Credential", "OK", "Result", "Category", "HTTP", "Latency (ms)", "Hint", "Checked (UTC)"]


def _auth_row(check: Any) -> dict[str, Any]:
    return {
        "Credential": check.name,
        "OK": "yes" if check.ok else "no",
        "Result": "OK" if check.ok else "FAILED",
        "Category": check.category or "",
        "HTTP": "" if check.status is None else str(check.status),
        "Latency (ms)": round(float(check.latency_ms), 1),
        "Hint": "" if check.ok else check.hint,
        "Checked (UTC)": fmt_time(check.checked_at),
    }


def auth_history(ws: Any, limit: int = AUTH_HISTORY) -> pd.DataFrame:
    return frame([_auth_row(c) for c in ws.store.list_auth_checks(limit=limit)], AUTH_COLUMNS)


def auth_latest(ws: Any, limit: int = AUTH_HISTORY) -> pd.DataFrame:
    """The latest result per credential (from the newest `limit` checks)."""
    seen: dict[str, Any] = {}
    for check in ws.store.list_auth_checks(limit=limit):
        seen.setdefault(check.name, check)
    return frame([_auth_row(c) for _, c in sorted(seen.items())], AUTH_COLUMNS)


# ------------------------------------------------------------------------------------------------ run drill-down
RUN_CLIENT_COLUMNS = ["Client", "Status", "Source", "Metrics", "Category", "Hint", "Error", "Reason", "Notebook"]
EVENT_COLUMNS = ["At (UTC)", "Client", "Stage", "Kind", "Message", "Metrics"]


@dataclass(frozen=True)
class RunDetail:
    run: Any
    summary: dict[str, str]
    clients: pd.DataFrame
    events: pd.DataFrame
    notebooks: dict[str, str]


def run_detail(ws: Any, run_text: str) -> RunDetail:
    """A run with its clients, events and executed notebooks; MissingRecordError when there is none."""
    run = ws.records.get_run(run_text.strip())
    records = sorted(ws.store.list_client_runs(run_id=run.run_id), key=lambda r: r.client_id)
    clients = [
        {
            "Client": r.client_id,
            "Status": r.outcome,
            "Source": str(r.source),
            "Metrics": fmt_metrics(r.metrics),
            "Category": r.failure.category if r.failure else "",
            "Hint": r.failure.hint if r.failure else "",
            "Error": r.failure.message if r.failure else "",
            "Reason": r.reason or "",
            "Notebook": r.notebook or "",
        }
        for r in records
    ]
    events = [
        {
            "At (UTC)": fmt_time(e.at),
            "Client": e.client_id,
            "Stage": e.stage,
            "Kind": str(e.kind),
            "Message": e.message,
            "Metrics": fmt_metrics(e.metrics),
        }
        for e in ws.store.list_events(run_id=run.run_id)
    ]
    summary = {
        "Run ID": run.run_id,
        "Status": run_status_text(run),
        "Started (UTC)": fmt_time(run.started_at),
        "Ended (UTC)": fmt_time(run.ended_at) or "still running",
        "Clients": str(len(records)),
        "Failed": str(lk.clients_failed(records)),
    }
    notebooks = {r.client_id: r.notebook for r in records if r.notebook}
    return RunDetail(run, summary, frame(clients, RUN_CLIENT_COLUMNS), frame(events, EVENT_COLUMNS), notebooks)


# ------------------------------------------------------------------------------------------------ failures, health
FAILURE_COLUMNS = [
    "Category",
    "Count",
    "Clients",
    "First seen (UTC)",
    "Last seen (UTC)",
    "Resolved",
    "Hint",
    "Fingerprint",
]


def failure_groups(ws: Any, *, unresolved_only: bool) -> pd.DataFrame:
    rows = [
        {
            "Category": text(g.category),
            "Fingerprint": g.fingerprint,
            "Count": int(g.count),
            "First seen (UTC)": text(g.first_seen),
            "Last seen (UTC)": text(g.last_seen),
            "Clients": text(sorted(g.clients)),
            "Hint": g.hint,
            "Resolved": "yes" if g.resolved else "no",
        }
        for g in lk.group_failures(ws, unresolved_only=unresolved_only)
    ]
    return frame(rows, FAILURE_COLUMNS)


HEALTH_COLUMNS = [
    "Client",
    "Verdict",
    "Why",
    "Leads waiting",
    "Leads by status",
    "Last run",
    "Last failure",
    "Next step",
]


def _health_row(client_id: str, info: dict[str, Any]) -> dict[str, Any]:
    verdict = info.get("verdict") or {}
    runs = info.get("last_runs") or []
    failure = info.get("last_failure") or {}
    if info.get("lead_base_error"):
        label, why = "leads unreadable", text(info["lead_base_error"].get("message"))
    else:
        label, why = ("due" if verdict.get("due") else "not due"), text(verdict.get("reason"))
    return {
        "Client": client_id,
        "Verdict": label,
        "Why": why,
        "Leads waiting": text(verdict.get("leads_waiting")),
        "Leads by status": text(info.get("leads_by_status")),
        "Last run": f"{runs[0]['run_id']} {runs[0]['status']}" if runs else "never run",
        "Last failure": f"{failure.get('category')}: {failure.get('message')}" if failure else "",
        "Next step": text(info.get("next_step")),
    }


def health_rows(ws: Any) -> pd.DataFrame:
    """The `leadkit health` verdict for each client; a client whose health cannot be read (its base cannot be
    opened, say) shows that error in its own row and the other rows are still shown."""
    rows = []
    for client in ws.store.list_clients():
        try:
            info = lk.client_health(ws, client.client_id)
        except lk.LeadkitError as exc:
            info = {"lead_base_error": exc.to_dict(), "next_step": exc.hint}
        rows.append(_health_row(client.client_id, info))
    return frame(rows, HEALTH_COLUMNS)
