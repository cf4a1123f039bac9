"""What the operator views show first: client severity, the per-client page, a run's clients and events with
their answers (status, reason, hint, next step, error) before the details, the known metrics as named columns
and any other metric in words.

Read through the leadkit public API and the store protocol; every value is returned as plain text or a number
(times as UTC text), never as markup. Reads are bounded (capped lists, one window of days).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

import leadkit as lk
from leadkit import workspace_health

try:
    from dashboards.data import FAILED_STATUSES, fmt_time, frame, now_utc, text
except ModuleNotFoundError:  # served as a script by `panel serve dashboards/app.py`
    from data import FAILED_STATUSES, fmt_time, frame, now_utc, text  # type: ignore[no-redef]

NEEDS_ACTION = "needs action"
WAITING = "waiting"
FINE = "fine"
#: Sort order and colour of each severity (the worst first).
SEVERITIES: dict[str, tuple[int, str]] = {
    NEEDS_ACTION: (0, "#f8d7da"),
    WAITING: (1, "#fff3cd"),
    FINE: (2, "#d9f2d9"),
}
STATUS_COLOURS = {
    "Failed": "#f8d7da",
    "Stale": "#f8d7da",
    "Completed with Errors": "#fff3cd",
    "Running": "#dbe9f6",
    "Completed": "#d9f2d9",
}
CLIENT_DAYS = 30
RECENT_RUNS = 10

#: Metric names as column titles; a metric not listed here gets its name with the underscores spaced.
METRIC_NAMES: dict[str, str] = {
    "posts_harvested": "Posts harvested",
    "profiles_submitted": "Profiles submitted",
    "leads_waiting": "Leads waiting",
    "apify_cost_usd": "Apify cost (USD)",
    "batches": "Batches",
    "batches_failed": "Batches failed",
}


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", " ").capitalize())


def metric_value(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 4)


def metric_columns(rows: list[dict[str, float]]) -> list[str]:
    """The metric keys present in `rows`, the known ones first in their usual order."""
    keys = {k for r in rows for k in r}
    known = [k for k in METRIC_NAMES if k in keys]
    return known + sorted(keys - set(known))


def metrics_text(metrics: dict[str, float], *, skip: Sequence[str] = ()) -> str:
    """`metrics` as one line of words ("Posts harvested 3 · Apify cost (USD) 0.12"), the known ones first,
    leaving out the keys in `skip` (those with a column of their own)."""
    keys = [k for k in metric_columns([metrics]) if k not in skip]
    return " · ".join(f"{metric_name(k)} {metric_value(metrics[k])}" for k in keys)


# ------------------------------------------------------------------------------------------------ failure text
def reason_once(reason: str | None, failure: Any) -> str:
    """A client's Reason as what its stage did, on one line: a failed client's reason quotes the failure's
    message (the Error column shows its headline) and sometimes its hint (the Hint column): those are cut, so
    each column says one thing and no upstream body or markup reaches the Reason. What is left empty becomes
    "the <stage> stage failed"."""
    text_ = (reason or "").strip()
    if failure is None:
        return text_.splitlines()[0].strip() if text_ else ""
    for said in (failure.message or "", failure.hint or ""):
        said = said.strip()
        if said and said in text_:
            text_ = text_.replace(said, "")
    lines = text_.splitlines()
    text_ = (lines[0] if lines else "").strip().rstrip(" :;,.-")
    if not text_ or "<" in text_:
        stage = failure.stage or "client"
        return f"the {stage} stage failed"
    return text_


def headline(message: str) -> str:
    """A failure message as an operator reads it first: its first sentence, with the first text line of an HTML
    body it quotes (e.g. "404 Not Found"); the full message stays in the detail."""
    return lk.failure_headline(message)


# ------------------------------------------------------------------------------------------------ severity
@dataclass(frozen=True)
class Assessment:
    """A client's severity, why, when it is next due, and the one thing to do."""

    severity: str
    why: str
    next_due: str
    next_step: str


#: Credentials every client shares: a refusal of one is one banner above the clients, not a verdict on each.
SHARED_CREDENTIALS = ("apify", "airtable")


def failed_credentials(ws: Any) -> dict[str, Any]:
    """The latest failed check per credential name (from the newest 100 checks)."""
    latest: dict[str, Any] = {}
    for check in ws.store.list_auth_checks(limit=100):
        latest.setdefault(check.name, check)
    return {name: c for name, c in latest.items() if not c.ok}


def credential_banner(refused: dict[str, Any]) -> str:
    """One sentence per refused shared credential (which one, its answer, when it was checked, by which command,
    and the fix), or "" when none is refused. The clients below keep their own reasons."""
    lines = []
    for name in SHARED_CREDENTIALS:
        check = refused.get(name)
        if check is None:
            continue
        answer = f"HTTP {check.status}" if check.status else (check.category or "refused")
        lines.append(
            f"The {name} credential failed ({answer}) when `leadkit auth-check` checked it at "
            f"{fmt_time(check.checked_at)} UTC. {check.hint} Then check again: `leadkit auth-check`."
        )
    return "\n".join(lines)


def _tomorrow(now: datetime) -> datetime:
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def assess(info: dict[str, Any], refused: dict[str, Any], now: datetime, latest: Any = None) -> Assessment:
    """The severity of one client from `lk.client_health` and the failed credential checks: `needs action`
    (misconfigured, failing, its credentials refused), `waiting` (harvested by the next batch, or next due at a
    time), or `fine` (nothing to harvest by design: paused, lead scoring only, every lead done). `latest` is the
    client's latest attempt (`lk.latest_attempt`): a resumed older run may have completed after a newer one failed."""
    cid = info["client_id"]
    settings = info["client"]
    verdict = info.get("verdict") or {}
    runs = info.get("last_runs") or []
    failure = info.get("last_failure") or {}
    reason = text(verdict.get("reason"))
    harvests = settings["status"] == "Active" and int(settings["service_level"]) >= 2
    if info.get("lead_base_error"):
        err = info["lead_base_error"]
        return Assessment(NEEDS_ACTION, f"its leads cannot be read: {text(err.get('message'))}", "", info["next_step"])
    last_status = str(latest.status) if latest is not None else (runs[0]["status"] if runs else "")
    if last_status in FAILED_STATUSES:
        last = {"run_id": latest.run_id, "status": last_status, "reason": latest.reason} if latest else runs[0]
        why = f"its last run {last['run_id']} ended {last['status']}"
        if failure:
            why += f": [{failure.get('category')}] {headline(text(failure.get('message')))}"
        hint = text(failure.get("hint")) or text(last.get("reason"))
        step = f"{hint} Then re-run it: `leadkit rerun --failed --client {cid}`."
        return Assessment(NEEDS_ACTION, why, "after the fix", step)
    if last_status == "Running" and runs:
        return Assessment(WAITING, f"run {runs[0]['run_id']} is harvesting it now", "running now", info["next_step"])
    # a shared credential's refusal is the view's banner (`credential_banner`), not this client's verdict
    bad = [c for name, c in refused.items() if name not in SHARED_CREDENTIALS and cid in name]
    base = settings.get("base_id")
    bad += [c for name, c in refused.items() if base and base in name and c not in bad]
    if harvests and bad:
        names = ", ".join(c.name for c in bad)
        return Assessment(
            NEEDS_ACTION,
            f"credential refused ({names}): {bad[0].category or 'auth'}",
            "after the fix",
            f"{bad[0].hint} Then check again: `leadkit auth-check`.",
        )
    if harvests and settings["post_access"] != "yes":
        return Assessment(
            NEEDS_ACTION,
            reason,
            "after the fix",
            f"Set Post Access Enabled to Yes: `leadkit clients set {cid} --post-access yes`.",
        )
    if harvests and (int(settings["daily_target"]) <= 0 or int(settings["batch_size"]) <= 0):
        fix = []
        if int(settings["daily_target"]) <= 0:
            fix.append("--daily-target 20")
        if int(settings["batch_size"]) <= 0:
            fix.append("--batch-size 20")
        return Assessment(
            NEEDS_ACTION,
            reason,
            "after the fix",
            f"Set Posts Daily Target and Leads Batch Size above 0: `leadkit clients set {cid} {' '.join(fix)}`.",
        )
    if not harvests:
        return Assessment(FINE, reason, "not harvested", info["next_step"])
    if verdict.get("due"):
        return Assessment(WAITING, f"due: {reason}", "now (the next batch)", info["next_step"])
    if "target already met" in reason:
        return Assessment(WAITING, reason, fmt_time(_tomorrow(now)), info["next_step"])
    return Assessment(FINE, reason, "when leads are imported or come due", info["next_step"])


HEALTH_COLUMNS = [
    "Client",
    "Severity",
    "Why",
    "Next step",
    "Next due (UTC)",
    "Last run",
    "Leads by status",
]


def health_rows(ws: Any, now: datetime | None = None) -> pd.DataFrame:
    """Every client's severity, worst first (then by client ID)."""
    now = now or now_utc()
    refused = failed_credentials(ws)
    rows = []
    for info in workspace_health(ws, now=now):
        cid = info["client_id"]
        a = assess(info, refused, now, lk.latest_attempt(ws.store, cid))
        runs = info.get("last_runs") or []
        rows.append(
            {
                "Client": cid,
                "Severity": a.severity,
                "Why": a.why,
                "Next step": a.next_step,
                "Next due (UTC)": a.next_due,
                "Last run": f"{runs[0]['run_id']} {runs[0]['status']}" if runs else "never run",
                "Leads by status": ", ".join(f"{k} {v}" for k, v in (info.get("leads_by_status") or {}).items()),
            }
        )
    rows.sort(key=lambda r: (SEVERITIES[r["Severity"]][0], r["Client"]))
    return frame(rows, HEALTH_COLUMNS)


# ------------------------------------------------------------------------------------------------ client page
@dataclass
class ClientPage:
    client_id: str
    assessment: Assessment
    summary: dict[str, str]
    settings: pd.DataFrame
    leads: pd.DataFrame
    runs: pd.DataFrame
    failure: dict[str, str]
    daily: pd.DataFrame
    health: dict[str, Any] = field(default_factory=dict)


RECENT_RUN_COLUMNS = ["Run ID", "Status", "Reason", "Error", "Posts", "Started (UTC)", "Ended (UTC)"]
SETTING_NAMES = {
    "name": "Name",
    "status": "Status",
    "service_level": "Service Level",
    "post_access": "Post Access Enabled",
    "daily_target": "Posts Daily Target",
    "batch_size": "Leads Batch Size",
    "max_batches": "Max Post Batches Per Day",
    "stream": "Processing Stream",
    "base_id": "Airtable base",
}


def client_page(ws: Any, client_id: str, *, now: datetime | None = None, days: int = CLIENT_DAYS) -> ClientPage:
    """One client: severity and next step, settings, leads by status, recent runs, the last failure with its
    hint, and posts and failures per day over the last `days` days. MissingRecordError for an unknown client."""
    now = now or now_utc()
    info = lk.client_health(ws, client_id, now=now)
    cid = info["client_id"]
    a = assess(info, failed_credentials(ws), now, lk.latest_attempt(ws.store, cid))
    settings = info["client"]
    settings_rows = [
        {"Setting": label, "Value": text(settings.get(key))} for key, label in SETTING_NAMES.items() if key in settings
    ]
    leads = info.get("leads_by_status") or {}
    lead_rows = [{"Harvest status": k, "Leads": int(v)} for k, v in leads.items()]
    records = ws.store.list_client_runs(client_id=cid, limit=RECENT_RUNS)
    run_rows = [
        {
            "Run ID": r.run_id,
            "Status": str(r.status),
            "Reason": reason_once(r.reason, r.failure),
            "Error": headline(r.failure.message) if r.failure else "",
            "Posts": metric_value(r.metrics.get("posts_harvested", 0)),
            "Started (UTC)": fmt_time(r.started_at),
            "Ended (UTC)": fmt_time(r.ended_at),
        }
        for r in records
    ]
    failure = info.get("last_failure") or {}
    failure_text: dict[str, str] = {}
    if failure:
        failure_text = {
            "At (UTC)": fmt_time(datetime.fromisoformat(failure["at"])),
            "Run": text(failure.get("run_id")),
            "Stage": text(failure.get("stage")),
            "Category": text(failure.get("category")),
            "Error": headline(text(failure.get("message"))),
            "Hint": text(failure.get("hint")),
            "Fix": a.next_step if a.severity == NEEDS_ACTION else "",
            "Full message": text(failure.get("message")),
        }
    summary = {
        "Severity": a.severity,
        "Why": a.why,
        "Next step": a.next_step,
        "Next due (UTC)": a.next_due,
        "Leads": text(info.get("leads_total")),
    }
    return ClientPage(
        cid,
        a,
        summary,
        frame(settings_rows, ["Setting", "Value"]),
        frame(lead_rows, ["Harvest status", "Leads"]),
        frame(run_rows, RECENT_RUN_COLUMNS),
        failure_text,
        client_daily(ws, cid, now=now, days=days),
        info,
    )


def client_daily(ws: Any, client_id: str, *, now: datetime | None = None, days: int = CLIENT_DAYS) -> pd.DataFrame:
    """Per UTC day over the last `days` days (`lk.client_history`): posts, cost, runs, failures, time per run."""
    history = lk.client_history(ws, client_id, days=days, now=now or now_utc())
    return pd.DataFrame(history["daily"], columns=["day", "posts", "cost_usd", "runs", "failures", "seconds_per_run"])


# ------------------------------------------------------------------------------------------------ run drill-down
RUN_CLIENT_COLUMNS = ["Client", "Status", "Reason", "Hint", "Next step", "Error", "Category", "Attempts"]
#: The events table's columns, fixed whatever the run's metrics: the message first, then the event's metrics as
#: one line of words (a table's columns never change while it is on the page: see `tables.Table`).
EVENT_COLUMNS = ["At (UTC)", "Client", "Stage", "Kind", "Message", "Metrics"]
#: The metrics table's columns, fixed whatever the run: every known metric has its column, any other metric a
#: client reported is in "Other metrics" as words.
METRICS_COLUMNS = ["Client", *METRIC_NAMES.values(), "Other metrics", "Source", "Notebook"]


@dataclass(frozen=True)
class RunClients:
    run: Any
    summary: dict[str, str]
    clients: pd.DataFrame  # failed first
    metrics: pd.DataFrame
    failed: list[str]
    notebooks: dict[str, str]  # picker label -> notebook path (every attempt), failed clients first
    attempts: pd.DataFrame
    history: pd.DataFrame
    failures: pd.DataFrame


#: The first thing to do for a failure of each category, before re-running the client.
FIRST_STEP = {
    "config": "Check the setting or URL the error names (Apify: APIFY_API_URL; Airtable: AIRTABLE_ENDPOINT_URL and "
    "the base IDs; `leadkit doctor` checks them)",
    "auth": "Replace the refused token (`leadkit auth-check` names it)",
    "rate_limit": "Wait for the rate limit to pass",
    "upstream": "The service failed or timed out; it usually passes",
    "schema": "Add the missing field or select option the error names in the base",
    "missing_record": "Restore or re-create the record the error names",
    "dependency": "Install the missing package (`leadkit doctor` names it)",
    "data": "Correct the input the error names",
}


def _next_step(record: Any, run_id: str) -> str:
    status = str(record.status)
    if status in FAILED_STATUSES:
        category = record.failure.category if record.failure else ""
        first = FIRST_STEP.get(category, "Open the executed notebook at the failing cell")
        return (
            f"{first}, then re-run it: `leadkit rerun --failed --client {record.client_id}` "
            f"(or `leadkit batch --resume {run_id}`)."
        )
    if status == "Completed with Errors":
        return f"Some batches failed; the next batch retries them. Details: `leadkit show {run_id}`."
    if status == "Running":
        return "Running: wait for it to finish."
    return ""


def run_clients(ws: Any, run_text: str) -> RunClients:
    """A run's clients with the failed ones first, their metrics as named columns, every attempt, the run's
    status history and its failures (headline first, fingerprint in the detail)."""
    run = ws.records.get_run(lk.RunId.parse(run_text.strip()))
    records = ws.store.list_client_runs(run_id=run.run_id)
    order = {s: i for i, s in enumerate(["Failed", "Stale", "Completed with Errors", "Running"])}
    records.sort(key=lambda r: (order.get(str(r.status), 9), r.client_id))
    attempt_rows: list[dict[str, Any]] = []
    notebooks: dict[str, str] = {}
    counts: dict[str, int] = {}
    for r in records:
        tries = lk.list_attempts(ws, r)
        counts[r.client_id] = len(tries)
        for t in reversed(tries):
            label = r.client_id if t.current else f"{r.client_id} (attempt {t.number}: {t.status})"
            if t.notebook:
                notebooks[label] = t.notebook
        if len(tries) > 1:
            for t in tries:
                attempt_rows.append(
                    {
                        "Client": r.client_id,
                        "Attempt": t.number,
                        "Outcome": t.status,
                        "Why": t.why,
                        "Started (UTC)": fmt_time(t.started_at),
                        "Notebook": t.notebook or "",
                    }
                )
    clients = [
        {
            "Client": r.client_id,
            "Status": str(r.status),
            "Reason": reason_once(r.reason, r.failure),
            "Hint": r.failure.hint if r.failure else "",
            "Next step": _next_step(r, run.run_id),
            "Error": headline(r.failure.message) if r.failure else "",
            "Category": r.failure.category if r.failure else "",
            "Attempts": counts[r.client_id],
        }
        for r in records
    ]
    metrics = [
        {
            "Client": r.client_id,
            **{name: metric_value(r.metrics.get(k, 0)) for k, name in METRIC_NAMES.items()},
            "Other metrics": metrics_text(r.metrics, skip=list(METRIC_NAMES)),
            "Source": str(r.source),
            "Notebook": r.notebook or "",
        }
        for r in records
    ]
    failed = [r.client_id for r in records if str(r.status) in FAILED_STATUSES]
    history = [{"At (UTC)": fmt_time(h.at), "Run status": h.status} for h in lk.run_history(ws, run.run_id)]
    failures = [
        {
            "Client": f.client_id or "",
            "Stage": f.stage or "",
            "Category": f.category,
            "Error": headline(f.message),
            "Hint": f.hint,
            "At (UTC)": fmt_time(f.at),
            "Fingerprint": f.fingerprint,
            "Full message": f.message,
        }
        for f in ws.store.list_failures(since=run.started_at - timedelta(seconds=1))
        if f.run_id == run.run_id
    ]
    summary = {
        "Run ID": run.run_id,
        "Status": lk.run_status_label(ws, run),
        "Started (UTC)": fmt_time(run.started_at),
        "Ended (UTC)": fmt_time(run.ended_at) or "still running",
        "Clients": str(len(records)),
        "Failed": str(len(failed)),
    }
    return RunClients(
        run,
        summary,
        frame(clients, RUN_CLIENT_COLUMNS),
        frame(metrics, METRICS_COLUMNS),
        failed,
        notebooks,
        frame(attempt_rows, ["Client", "Attempt", "Outcome", "Why", "Started (UTC)", "Notebook"]),
        frame(history, ["At (UTC)", "Run status"]),
        frame(failures, ["Client", "Stage", "Category", "Error", "Hint", "At (UTC)", "Fingerprint", "Full message"]),
    )


def run_events(ws: Any, run_id: str, *, include_started: bool = False) -> tuple[pd.DataFrame, int]:
    """The run's events, what happened only (no `started` rows unless asked), each with its message first and its
    metrics in words (`EVENT_COLUMNS`); also how many `started` rows were left out."""
    events = ws.store.list_events(run_id=run_id)
    hidden = 0
    shown = []
    for e in events:
        if not include_started and str(e.kind) == "started" and not e.metrics:
            hidden += 1
            continue
        shown.append(e)
    rows = [
        {
            "At (UTC)": fmt_time(e.at),
            "Client": e.client_id,
            "Stage": e.stage,
            "Kind": str(e.kind),
            "Message": e.message,
            "Metrics": metrics_text(e.metrics),
        }
        for e in shown
    ]
    return frame(rows, EVENT_COLUMNS), hidden
