"""Bases for a try-out of the Airtable store on the local sandbox: a master base and one base per client, made
through the sandbox's meta API (`POST /v0/meta/bases`) as a new Airtable user makes them in Airtable's web app:
each with one placeholder table, so `leadkit airtable provision` has the tables and fields to add, exactly as on a
real account."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from leadkit.errors import ConfigError

__all__ = ["TryoutBases", "create_tryout_bases", "wait_until_up"]

#: Airtable's meta API creates a base only with at least one table; the web app starts one with a "Table 1" too.
PLACEHOLDER = [{"name": "Table 1", "fields": [{"name": "Name", "type": "singleLineText"}]}]


@dataclass(frozen=True)
class TryoutBases:
    """The IDs of the bases made: the master base and the client bases, in order."""

    master: str
    clients: list[str]


def wait_until_up(url: str, timeout_s: float = 30.0) -> None:
    """Return once something answers HTTP at `url` (any status); ConfigError naming it after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                raise ConfigError(f"{url} did not answer within {timeout_s:g} s ({exc})") from None
            time.sleep(0.05)


def _create_base(client: httpx.Client, name: str) -> str:
    answer = client.post("/v0/meta/bases", json={"name": name, "tables": PLACEHOLDER})
    if answer.status_code != 200:
        raise ConfigError(f"POST /v0/meta/bases for {name!r} answered {answer.status_code}: {answer.text[:200]}")
    base_id = answer.json().get("id")
    if not isinstance(base_id, str):
        raise ConfigError(f"POST /v0/meta/bases for {name!r} named no base ID: {answer.text[:200]}")
    return base_id


def create_tryout_bases(airtable_url: str, token: str, clients: int) -> TryoutBases:
    """Make a master base ("leadkit master") and `clients` client bases ("leadkit client 1", ...) through the
    meta API at `airtable_url` with `token` (which is given access to them). One request per base; a request
    that fails raises ConfigError with the answer, the bases made before it stay."""
    with httpx.Client(base_url=airtable_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as http:
        master = _create_base(http, "leadkit master")
        made = [_create_base(http, f"leadkit client {n}") for n in range(1, clients + 1)]
    return TryoutBases(master, made)
