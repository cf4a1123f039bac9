"""Leads files as people have them: a CSV exported from a CRM, Sales Navigator or a spreadsheet, read into the
leads of one or more clients.

Headers are matched after normalising (`LinkedIn URL` -> `linkedin_url`): the profile URL under any of
`PROFILE_HEADERS`, the name under `NAME_HEADERS` or as `First Name` + `Last Name`, the company under
`COMPANY_HEADERS`; only the profile URL is required. A `client_id` column (or `client`) names each row's client,
so one file can hold the leads of several clients. Reading is all or nothing: a file without a profile URL
column, or naming a client that does not exist, is refused as a whole; a row whose URL is not a person's LinkedIn
profile is reported with the reason and skipped (the rest are leads).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from leadkit.csvfiles import CsvTable, read_csv
from leadkit.errors import DataError
from leadkit.models import NewLead

__all__ = ["LeadsFile", "read_leads_csv"]

PROFILE_HEADERS = (
    "profile_url",
    "linkedin_url",
    "linkedin_profile_url",
    "linkedin_profile",
    "person_linkedin_url",
    "linkedin",
    "profile",
    "url",
)
NAME_HEADERS = ("name", "full_name", "lead_name", "contact_name")
FIRST_HEADERS = ("first_name", "firstname", "given_name")
LAST_HEADERS = ("last_name", "lastname", "surname", "family_name")
COMPANY_HEADERS = ("company", "company_name", "organization", "organisation", "employer", "account", "account_name")
CLIENT_HEADERS = ("client_id", "client")
ACCEPTED = (
    "a profile URL column (profile_url, LinkedIn URL, Profile URL, url); optional: name (or First Name and "
    "Last Name), company (or Company Name, Organization), client_id"
)


@dataclass
class LeadsFile:
    """The leads of a file by client, the rows skipped (line, URL, why) and how it was read."""

    leads: dict[str, list[NewLead]] = field(default_factory=dict)
    skipped: list[dict[str, object]] = field(default_factory=list)
    encoding: str = "utf-8"
    note: str | None = None
    #: the file's header for each field it was read from, e.g. {"profile_url": "LinkedIn URL"}
    columns: dict[str, str] = field(default_factory=dict)


def _first(table: CsvTable, names: Collection[str]) -> str | None:
    return next((n for n in names if n in table.headers), None)


def read_leads_csv(
    path: Path,
    *,
    client_id: str | None,
    known_clients: Collection[str],
    url_problem: Callable[[str], str | None],
) -> LeadsFile:
    """Read `path` into leads by client. `client_id`: the client of rows without a client_id column (or with an
    empty one); `known_clients`: the workspace's clients; `url_problem`: why a URL is not a lead (None: it is).
    DataError, naming the file, the lines and what is accepted, when the file cannot be read as a whole."""
    table = read_csv(path, what=f"CSV with {ACCEPTED}")
    url_col = _first(table, PROFILE_HEADERS)
    if url_col is None:
        raise DataError(
            f"{path} has no profile URL column (found: {', '.join(table.headers.values()) or 'none'}); "
            f"accepted: {ACCEPTED}",
            hint="Rename the column holding the linkedin.com/in/... addresses to `profile_url` (or `LinkedIn URL`).",
        )
    name_col = _first(table, NAME_HEADERS)
    first_col, last_col = _first(table, FIRST_HEADERS), _first(table, LAST_HEADERS)
    company_col = _first(table, COMPANY_HEADERS)
    client_col = _first(table, CLIENT_HEADERS)
    out = LeadsFile(encoding=table.encoding, note=table.note)
    out.columns = {"profile_url": table.headers[url_col]}
    if name_col:
        out.columns["name"] = table.headers[name_col]
    elif first_col or last_col:
        out.columns["name"] = " + ".join(table.headers[c] for c in (first_col, last_col) if c)
    if company_col:
        out.columns["company"] = table.headers[company_col]
    if client_col:
        out.columns["client_id"] = table.headers[client_col]
    if client_col is None and client_id is None:
        raise DataError(
            f"{path} has no client_id column and no CLIENT_ID was given: whose leads are they?",
            hint="Give the client (`leadkit leads import CLIENT_ID FILE`) or add a client_id column to the file.",
        )
    unknown: list[str] = []
    rows: list[tuple[int, str, dict[str, str]]] = []
    for line, row in table.rows:
        owner = (row.get(client_col, "") if client_col else "") or client_id or ""
        if not owner:
            unknown.append(f"line {line}: the client_id is empty and no CLIENT_ID was given")
        elif client_id is not None and owner != client_id:
            unknown.append(f"line {line}: client_id {owner!r} is not the CLIENT_ID given ({client_id})")
        elif owner not in known_clients:
            unknown.append(f"line {line}: no client {owner!r}")
        rows.append((line, owner, row))
    if unknown:
        shown = "; ".join(unknown[:10]) + (f"; and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise DataError(
            f"{path}: {len(unknown)} row(s) name no known client ({shown}); nothing was imported",
            hint=f"Known clients: {', '.join(sorted(known_clients)) or '(none)'}; add one with `leadkit clients add`.",
        )
    for line, owner, row in rows:
        url = row.get(url_col, "")
        problem = url_problem(url)
        if problem is not None:
            out.skipped.append({"line": line, "client_id": owner, "profile_url": url, "reason": problem})
            continue
        if name_col:
            name = row.get(name_col, "")
        else:
            name = " ".join(p for p in (row.get(first_col or "", ""), row.get(last_col or "", "")) if p)
        company = row.get(company_col, "") if company_col else ""
        out.leads.setdefault(owner, []).append(NewLead(url, name, company))
    return out
