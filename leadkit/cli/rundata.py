"""The data of one run as `show`, `batch --json`, `resume --json` and `diagnose --json` print it."""

from __future__ import annotations

from typing import Any

from leadkit.errors import NotFound
from leadkit.history import FAILED_OUTCOMES, list_attempts, run_history
from leadkit.runids import RunId


def run_dict(ws: Any, run_id: str) -> dict[str, Any]:
    """One run as `show --json` prints it: the run, its clients (with their Apify run IDs and attempts) and its
    status history; `run_id` may name one client of the run (`<run id>-<client id>`)."""
    parsed = RunId.parse(run_id)
    run = ws.records.get_run(parsed)
    out = run.to_dict()
    del out["clients_total"], out["clients_failed"]
    records = sorted(ws.store.list_client_runs(run_id=run.run_id), key=lambda r: r.client_id)
    if parsed.client_id is not None:
        records = [r for r in records if r.client_id == parsed.client_id]
        if not records:
            raise NotFound(
                f"run {run.run_id} has no client {parsed.client_id!r}",
                hint=f"`leadkit show {run.run_id}` lists the clients of the run.",
            )
    out["clients"] = [r.to_dict() for r in records]
    from leadkit.harvest.harvester import apify_run_ids  # the harvester's imports (httpx, Apify) cost 1 s: not at start

    for client in out["clients"]:
        events = ws.store.list_events(run_id=run.run_id, client_id=client["client_id"])
        client["apify_run_ids"] = apify_run_ids([e.message for e in events if e.stage == "harvest"])
    _add_history(ws, run.run_id, out)
    return out


def _add_history(ws: Any, run_id: str, out: dict[str, Any]) -> None:
    """The run's status history and each client's attempts (see `leadkit.history`)."""
    out["status_history"] = [{"at": c.at.isoformat(), "status": c.status} for c in run_history(ws, run_id)]
    records = {r.client_id: r for r in ws.store.list_client_runs(run_id=run_id)}
    for client in out["clients"]:
        client["attempts"] = [a.to_dict() for a in list_attempts(ws, records[client["client_id"]])]


def failure_text(client: dict[str, Any]) -> str:
    """The failure column of `show`: the failure's category and message, else, for an outcome that counts as
    failed (a Stale or interrupted client has no failure record), its reason; at most 80 characters."""
    if client["failure"]:
        text = f"{client['failure']['category']}: {client['failure']['message']}"
    elif client["outcome"] in FAILED_OUTCOMES:
        text = client.get("reason") or ""
    else:
        text = ""
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= 80 else first[:79] + "…"


def targets_text(metrics: dict[str, float]) -> str:
    """A client run's harvest targets as `submitted: with posts/empty/not covered` (blank when none)."""
    submitted = int(metrics.get("targets_submitted", 0))
    if not submitted:
        return ""
    parts = (int(metrics.get(k, 0)) for k in ("targets_with_posts", "targets_empty", "targets_not_covered"))
    return f"{submitted}: " + "/".join(map(str, parts))
