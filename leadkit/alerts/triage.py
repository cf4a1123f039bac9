"""Triage of failure groups: the operator's status (NEW, INVESTIGATING, FIXED, IGNORED) and note, by fingerprint.

INVESTIGATING and IGNORED keep a group quiet until it changes (a new client, a new category); FIXED makes its
next failure a regression. `resolved` in the failure report keeps its own meaning (a later attempt completed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from leadkit.alerts.engine import records_of
from leadkit.errors import DataError
from leadkit.models import FailureTriage, TriageStatus, utcnow

if TYPE_CHECKING:
    from leadkit.workspace import Workspace


def parse_status(text: str) -> TriageStatus:
    """The status named by `text` (any case), or DataError naming it and what is accepted."""
    try:
        return TriageStatus(text.strip().upper())
    except ValueError:
        accepted = ", ".join(s.value for s in TriageStatus)
        raise DataError(f"status {text!r} is not one of {accepted}") from None


def set_triage(ws: Workspace, prefix: str, status: str | TriageStatus, note: str | None = None) -> FailureTriage:
    """Set the status (and note, when given) of the one failure group whose fingerprint starts with `prefix`.

    Raises DataError, changing nothing, when no group or several groups match, or the status is unknown."""
    from leadkit.diagnosis import group_failures

    chosen = status if isinstance(status, TriageStatus) else parse_status(status)
    wanted = prefix.strip()
    if not wanted:
        raise DataError("the fingerprint prefix is empty; pass the start of a fingerprint from `leadkit failures`")
    groups = group_failures(ws)
    exact = [g for g in groups if g.fingerprint == wanted]
    matches = exact or [g for g in groups if g.fingerprint.startswith(wanted)]
    if not matches:
        raise DataError(f"no failure group's fingerprint starts with {wanted!r}; see `leadkit failures`")
    if len(matches) > 1:
        shown = "; ".join(g.fingerprint for g in matches[:5])
        raise DataError(f"{len(matches)} failure groups start with {wanted!r} ({shown}); give more of the fingerprint")
    group = matches[0]
    records = records_of(ws.store)
    old = {t.fingerprint: t for t in records.list_triage()}.get(group.fingerprint)
    triage = FailureTriage(
        fingerprint=group.fingerprint,
        status=chosen,
        note=note if note is not None else (old.note if old else ""),
        clients=list(group.clients),
        category=group.category,
        updated_at=utcnow(),
    )
    records.save_triage(triage)
    return triage
