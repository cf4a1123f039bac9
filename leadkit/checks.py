"""Auth checks: one honest request per configured credential, each stored as an AuthCheck record.

    airtable              the Airtable token (GET /v0/meta/whoami)
    airtable:<base id>    read access to the master base, then to each Active client's base
    apify                 the Apify token (GET /v2/users/me)

Each check is a single request with no retry, classified by `leadkit.http` before anything parses it: an HTML
page where JSON was expected is reported as a wrong URL, missing route or login page (`config`), never as an
expired token, unless the status itself says auth (401/403).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from leadkit.config import Settings, scrub
from leadkit.errors import HINTS, Category, ConfigError, LeadkitError, category_of, hint_of
from leadkit.models import AuthCheck, Client, utcnow

if TYPE_CHECKING:
    import httpx

    from leadkit.http import HttpClient
    from leadkit.workspace import Workspace

__all__ = ["check_credentials", "run_auth_checks"]

#: Auth checks want a prompt answer: a slow service is reported, not waited for.
CHECK_READ_TIMEOUT_S = 15.0

OK_HINT = "The credential works."


def run_auth_checks(ws: Workspace, *, store_results: bool = True) -> list[AuthCheck]:
    """Check every configured credential of the workspace's settings; store the results unless told not to."""
    from leadkit.workspace import harvesting_clients

    checks = check_credentials(ws.settings, clients=ws.store.list_clients, apify_needed=bool(harvesting_clients(ws)))
    if store_results:
        ws.store.add_auth_checks(checks)
        from leadkit.alerts import after_auth_checks

        after_auth_checks(ws.store, checks)
    return checks


def check_credentials(
    settings: Settings,
    *,
    clients: Callable[[], Sequence[Client]] | None = None,
    transport: httpx.BaseTransport | None = None,
    apify_needed: bool = True,
) -> list[AuthCheck]:
    """The checks for `settings`. A missing APIFY_TOKEN fails only when `apify_needed` (some client harvests posts;
    the demo's clients use its sandbox). `clients` lists the clients whose bases to check (called only once the master
    base answered); without it only the token and the master base are checked. Needs no workspace, so it works
    when the store itself cannot be opened (an expired token is exactly when it is needed)."""
    out: list[AuthCheck] = []
    airtable_token = _secret(settings, "airtable_api_key")
    master = settings.leadkit_store.removeprefix("airtable://").strip("/") if _is_airtable(settings) else ""
    if airtable_token or master:
        out.extend(_airtable_checks(settings, airtable_token, master, clients, transport))
    out.append(_apify_check(settings, transport, needed=apify_needed))
    return out


# ------------------------------------------------------------------------------------------------ helpers


def _is_airtable(settings: Settings) -> bool:
    return settings.leadkit_store.startswith("airtable://")


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    return value.get_secret_value().strip() if value is not None else ""


def _missing(name: str, setting: str, why: str) -> AuthCheck:
    return AuthCheck(
        name=name,
        ok=False,
        category=Category.CONFIG.value,
        status=None,
        latency_ms=0.0,
        hint=f"Set {setting} in the environment or .env ({why}).",
        detail=f"{setting} is not set",
    )


def _failed(name: str, exc: BaseException, latency_ms: float, hint: str | None = None) -> AuthCheck:
    status = exc.details.get("status") if isinstance(exc, LeadkitError) else None
    category = category_of(exc)
    chosen = hint_of(exc)
    if hint is not None and category is Category.AUTH:
        chosen = hint
    return AuthCheck(
        name=name,
        ok=False,
        category=category.value,
        status=status if isinstance(status, int) else None,
        latency_ms=latency_ms,
        hint=chosen,
        detail=scrub(str(exc) or type(exc).__name__),
    )


def _probe(name: str, call: Callable[[], Any], *, auth_hint: str | None = None, detail: str = "") -> AuthCheck:
    """Run one request and turn its outcome (answer or error) into an AuthCheck."""
    started = time.perf_counter()
    try:
        status, said = call()
    except LeadkitError as exc:
        return _failed(name, exc, (time.perf_counter() - started) * 1000, auth_hint)
    latency_ms = (time.perf_counter() - started) * 1000
    return AuthCheck(
        name=name,
        ok=True,
        category=None,
        status=status,
        latency_ms=latency_ms,
        hint=OK_HINT,
        checked_at=utcnow(),
        detail=said or detail,
    )


def _http(base_url: str, service: str, token: str, transport: httpx.BaseTransport | None) -> HttpClient:
    from leadkit.http import NO_RETRY, HttpClient, Timeouts

    return HttpClient(
        base_url,
        service=service,
        token=token,
        timeouts=Timeouts(connect=5, read=CHECK_READ_TIMEOUT_S),
        retry=NO_RETRY,
        transport=transport,
    )


def _airtable_checks(
    settings: Settings,
    token: str,
    master: str,
    clients: Callable[[], Sequence[Client]] | None,
    transport: httpx.BaseTransport | None,
) -> list[AuthCheck]:
    from leadkit.store.airtable import SCOPES_HINT
    from leadkit.store.schema import BASE_ID_RE, Clients, Leads

    if not token:
        return [_missing("airtable", "AIRTABLE_API_KEY", f"the store is {settings.leadkit_store}")]
    try:
        http = _http(settings.airtable_endpoint_url.rstrip("/"), "Airtable", token, transport)
    except ConfigError as exc:
        return [_failed("airtable", exc, 0.0)]

    def whoami() -> tuple[int, str]:
        resp = http.request_json("GET", "/v0/meta/whoami")
        user = resp.data.get("id") if isinstance(resp.data, dict) else None
        if not isinstance(user, str) or not user:
            raise ConfigError(
                f"Airtable answered {resp.status} for {resp.url} without a user id; check AIRTABLE_ENDPOINT_URL "
                "(the API root, e.g. https://api.airtable.com)",
                status=resp.status,
            )
        return resp.status, f"token of user {user}"

    def read_base(base_id: str, table: str) -> Callable[[], tuple[int, str]]:
        def call() -> tuple[int, str]:
            resp = http.request_json("GET", f"/v0/{base_id}/{quote(table, safe='')}", params={"maxRecords": 1})
            return resp.status, f"read access to table {table!r} of base {base_id}"

        return call

    out: list[AuthCheck] = []
    with http:
        out.append(_probe("airtable", whoami, auth_hint=SCOPES_HINT))
        if not master:
            return out
        if BASE_ID_RE.fullmatch(master) is None:
            out.append(
                _failed(
                    f"airtable:{master}",
                    ConfigError(
                        f"LEADKIT_STORE names {master!r}, which is not an Airtable base ID ('app' and 14 letters "
                        "and digits)"
                    ),
                    0.0,
                )
            )
            return out
        master_check = _probe(f"airtable:{master}", read_base(master, Clients.TABLE), auth_hint=SCOPES_HINT)
        out.append(master_check)
        if not master_check.ok or clients is None:
            return out
        try:
            listed = list(clients())
        except LeadkitError as exc:
            out.append(_failed(f"airtable:{master}:clients", exc, 0.0, SCOPES_HINT))
            return out
        seen = {master}
        for client in listed:
            if not client.active or not client.base_id or client.base_id in seen:
                continue
            seen.add(client.base_id)
            check = _probe(
                f"airtable:{client.base_id}",
                read_base(client.base_id, Leads.TABLE),
                auth_hint=SCOPES_HINT + f" (base of client {client.client_id})",
            )
            check.detail = f"{client.client_id}: {check.detail}"
            out.append(check)
    return out


def _apify_check(settings: Settings, transport: httpx.BaseTransport | None, *, needed: bool = True) -> AuthCheck:
    from leadkit.harvest.apify import ApifyClient
    from leadkit.http import NO_RETRY, Timeouts

    if not _secret(settings, "apify_token"):
        if not needed:
            return AuthCheck(
                name="apify",
                ok=True,
                category=None,
                status=None,
                latency_ms=0.0,
                hint="Set APIFY_TOKEN before a client harvests posts.",
                detail="APIFY_TOKEN is not set; not needed yet: no Active client harvests posts (the demo's use its "
                "sandbox)",
            )
        return _missing("apify", "APIFY_TOKEN", "harvesting posts needs an Apify API token")
    try:
        client = ApifyClient.from_settings(
            settings, retry=NO_RETRY, timeouts=Timeouts(connect=5, read=CHECK_READ_TIMEOUT_S), transport=transport
        )
    except ConfigError as exc:
        return _failed("apify", exc, 0.0)

    def whoami() -> tuple[int, str]:
        user = client.whoami()
        return 200, f"token of user {user.get('username') or user.get('id') or '(unnamed)'}"

    with client:
        return _probe(
            "apify",
            whoami,
            auth_hint=HINTS[Category.AUTH]
            + " Create or copy a token in Apify Console > Settings > API & Integrations.",
        )
