"""An Airtable-compatible Web API (v0) held in memory, faithful to `api-contracts.md` section 1.1.

Records (list, listRecords, create, update, upsert, delete, single-record routes), record comments, the meta API
(whoami, bases, base collaborators, tables, fields), field types enforced on write (a text cell holds at most
100,000 characters), computed fields (formula, created/last modified time and by, autoNumber, button, and count,
lookup and rollup read through links, whose twin field in the linked table is kept in step), Airtable's error
bodies, and the rate limits: 5 requests per second per base and 50 per second per token across its bases, each
followed by a 30-second penalty. Each record keeps when each of its fields was last written, for
`LAST_MODIFIED_TIME()` and "last modified time" fields. A formula cell that fails reads `{"error": "#ERROR!"}`,
and NaN or an infinity reads `{"specialValue": ...}`. Attachments are never downloaded: a cell keeps the URL it was
given and its file name, with no size or thumbnails.

Concurrency is Airtable's, not kinder: requests are served at the same time, each one applied all or nothing, and
nothing is atomic across requests. A write reads the table, plans its change, then applies it; another request may
apply in between, so two upserts on the same merge values can both create a record (after which an upsert
matching both fails with Airtable's 422). `hold_writes` makes the next writes plan before any applies, so a test
can make that interleaving happen every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import mimetypes
import random
import re
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadkit_sandbox.core import (
    ApiError,
    RateLimiter,
    Request,
    Response,
    ServiceApp,
    SharedState,
    json_response,
)
from leadkit_sandbox.formula import (
    CELL_ERROR,
    EvalContext,
    FormulaError,
    compile_formula,
    evaluate_cell,
    matches,
    parse_datetime,
)

MAX_RECORDS_PER_REQUEST = 10
MAX_PAGE_SIZE = 100
MAX_MERGE_FIELDS = 3
MAX_CELL_CHARS = 100_000
TOKEN_RATE_LIMIT = 50

_ALNUM = string.ascii_letters + string.digits

FIELD_TYPES = (
    "singleLineText",
    "multilineText",
    "richText",
    "number",
    "percent",
    "currency",
    "checkbox",
    "singleSelect",
    "multipleSelects",
    "dateTime",
    "date",
    "url",
    "email",
    "phoneNumber",
    "formula",
    "createdTime",
    "lastModifiedTime",
    "multipleAttachments",
    "singleCollaborator",
    "multipleCollaborators",
    "multipleRecordLinks",
    "duration",
    "rating",
    "barcode",
    "autoNumber",
    "button",
    "count",
    "multipleLookupValues",
    "rollup",
    "createdBy",
    "lastModifiedBy",
)
_TEXT_TYPES = {"singleLineText", "multilineText", "richText", "url", "email", "phoneNumber"}
_NUMBER_TYPES = {"number", "percent", "currency"}
_COMPUTED_TYPES = {
    "formula",
    "createdTime",
    "lastModifiedTime",
    "autoNumber",
    "button",
    "count",
    "multipleLookupValues",
    "rollup",
    "createdBy",
    "lastModifiedBy",
}
#: Read through a link field: they need the linked table's records.
_THROUGH_LINK_TYPES = {"count", "multipleLookupValues", "rollup"}
#: Made only in Airtable's interface: the Web API's create-field refuses them (the sandbox makes them in process).
_UI_ONLY_TYPES = {"autoNumber", "button", "count", "multipleLookupValues", "rollup"}
#: How deep a lookup may read through links (a lookup of a lookup ...) before it gives up with #ERROR!.
_MAX_LOOKUP_DEPTH = 3
_DATE_TYPES = {"date", "dateTime", "createdTime", "lastModifiedTime"}
_COLORS = ("blueLight2", "cyanLight2", "tealLight2", "greenLight2", "yellowLight2", "orangeLight2", "redLight2")

PERMISSIONS_MESSAGE = (
    "Invalid permissions, or the requested model was not found. Check that both your user and your token "
    "have the required permissions, and that the model names and/or ids are correct."
)


def _err(status: int, type_: str, message: str | None = None, headers: dict[str, str] | None = None) -> ApiError:
    body: dict[str, Any] = {"type": type_}
    if message is not None:
        body["message"] = message
    return ApiError(status, {"error": body}, headers)


def _not_found_route() -> ApiError:
    return ApiError(404, {"error": "NOT_FOUND"})


def _invalid_request(message: str) -> ApiError:
    return _err(422, "INVALID_REQUEST_UNKNOWN", f"Invalid request: {message}")


def user_of(token: str) -> dict[str, str]:
    """The (fictional) Airtable user behind a token, as a collaborator cell shows it."""
    user_id = "usr" + hashlib.sha256(token.encode()).hexdigest()[:14]
    return {"id": user_id, "email": f"{user_id.lower()}@sandbox.example", "name": f"Sandbox User {user_id[3:8]}"}


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass
class FieldDef:
    id: str
    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "type": self.type}
        if self.description:
            out["description"] = self.description
        options = dict(self.options)
        if self.type == "rollup":
            options.pop("formula", None)  # Airtable's metadata does not say how a rollup aggregates
        if options:
            out["options"] = options
        return out


@dataclass
class RecordData:
    id: str
    created_time: str
    values: dict[str, Any]  # field id -> stored value (never an empty value)
    #: field id -> when a create, update or upsert last wrote that field (ISO 8601, milliseconds, UTC)
    modified: dict[str, str] = field(default_factory=dict)
    created_by: dict[str, str] | None = None
    modified_by: dict[str, str] | None = None

    def touch(self, field_ids: Iterable[str], when: str) -> None:
        """Record that a write set (or cleared) these fields at `when`."""
        for fid in field_ids:
            self.modified[fid] = when

    def last_modified(self, field_ids: Iterable[str] | None = None) -> str | None:
        """The latest write to any field (or to one of `field_ids`); None if no field was ever written."""
        wanted = None if field_ids is None else set(field_ids)
        times = [t for fid, t in self.modified.items() if wanted is None or fid in wanted]
        return max(times) if times else None


@dataclass
class TableData:
    id: str
    name: str
    description: str | None
    fields: dict[str, FieldDef]  # field id -> definition, in creation order
    records: dict[str, RecordData] = field(default_factory=dict)
    #: record id -> its comments, oldest first (as the comments API returns them)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    next_number: int = 1  # the next autoNumber

    @property
    def primary_field_id(self) -> str:
        return next(iter(self.fields))

    def field(self, id_or_name: str) -> FieldDef | None:
        if id_or_name in self.fields:
            return self.fields[id_or_name]
        for f in self.fields.values():
            if f.name == id_or_name:
                return f
        return None

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "primaryFieldId": self.primary_field_id,
            "fields": [f.schema() for f in self.fields.values()],
            "views": [{"id": "viw" + self.id[3:], "name": "Grid view", "type": "grid"}],
        }
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class BaseData:
    id: str
    name: str
    tables: dict[str, TableData] = field(default_factory=dict)
    created_time: str = field(default_factory=lambda: _now_iso())
    #: token -> when it was granted the base (the base's individual collaborators)
    collaborators: dict[str, str] = field(default_factory=dict)

    def table(self, id_or_name: str) -> TableData | None:
        if id_or_name in self.tables:
            return self.tables[id_or_name]
        for t in self.tables.values():
            if t.name == id_or_name:
                return t
        return None


class AirtableApp(ServiceApp):
    """The Airtable Web API over in-memory bases. Requests run concurrently; a short lock guards only the
    in-memory structures while a request reads its rows or applies its change (see the module docstring)."""

    service = "airtable"

    def __init__(
        self,
        state: SharedState,
        rate_limit: float = 5,
        penalty_s: float = 30,
        seed: int = 0,
        token_rate_limit: float | None = None,
    ) -> None:
        self.state = state
        self.limiter = RateLimiter(rate_limit, penalty_s)
        #: Per token across bases; by default Airtable's 50/s when the per-base limit is on, off when it is off.
        self.token_limiter = RateLimiter(
            (TOKEN_RATE_LIMIT if rate_limit > 0 else 0) if token_rate_limit is None else token_rate_limit, penalty_s
        )
        #: Held only while a request copies rows or applies a planned change, never across the request.
        self._lock = threading.RLock()
        self._id_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._hold: threading.Barrier | None = None
        self._hold_left = 0
        self.bases: dict[str, BaseData] = {}
        # The rows of recent listings, by query, so a later page does not filter and sort the table again.
        self._listings: dict[tuple[Any, ...], list[RecordData]] = {}
        self._base_of_table: dict[str, BaseData] = {}

    # ------------------------------------------------------------------ in-process helpers

    def new_id(self, prefix: str) -> str:
        with self._id_lock:
            return prefix + "".join(self._rng.choice(_ALNUM) for _ in range(14))

    def create_base(
        self, name: str, tables_spec: list[dict[str, Any]], token: str | None = None, base_id: str | None = None
    ) -> str:
        """Create a base with tables given as in `POST /v0/meta/bases`; returns its ID.

        `token`, if given, is granted the new base (tokens that may use every base need nothing). In process only,
        the base may be given its ID (`base_id`) and each table and field an `"id"` in its spec, so that a suite
        written against fixed IDs of a real base can run here; the HTTP meta API always makes new IDs. Field types
        that only Airtable's interface makes (autoNumber, button, count, lookup, rollup) are made here too; a
        rollup's `options.formula` (default `ARRAYJOIN(values)`) says how it aggregates.
        """
        spec = {"name": name, "tables": tables_spec}
        return str(self._create_base(spec, token, in_process=True, base_id=base_id)["id"])

    def grant(self, token: str, base_id: str) -> None:
        """Let `token` use `base_id` (adding the token if it is new); its user becomes a base collaborator."""
        self.state.tokens.grant(token, base_id)
        with self._lock:
            base = self.bases.get(base_id)
            if base is not None:
                base.collaborators.setdefault(token, _now_iso())

    def set_rate_limit(self, rate: float, penalty_s: float) -> None:
        self.limiter.configure(rate, penalty_s)

    def set_token_rate_limit(self, rate: float, penalty_s: float | None = None) -> None:
        """Requests per second per token across its bases (0: off); resets the windows."""
        self.token_limiter.configure(rate, self.token_limiter.penalty_s if penalty_s is None else penalty_s)

    def hold_writes(self, parties: int, timeout_s: float = 10.0) -> None:
        """Make the next `parties` record writes (creates, updates, upserts) each read the table and plan their
        change, then wait until all of them have planned before any applies: the interleaving Airtable allows
        when writes arrive together. A write that waits longer than `timeout_s` goes on alone."""
        if parties < 2:
            raise ValueError(f"hold_writes needs at least 2 parties, got {parties}")
        with self._lock:
            self._hold = threading.Barrier(parties, timeout=timeout_s)
            self._hold_left = parties

    def _wait_for_held_writes(self) -> None:
        with self._lock:
            barrier = self._hold
            if barrier is None:
                return
            self._hold_left -= 1
            if self._hold_left <= 0:
                self._hold = None
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    def records(self, base_id: str, table: str) -> list[dict[str, Any]]:
        """Every record of a table as the API would list it (for test assertions)."""
        with self._lock:
            tbl = self._table(base_id, table)
            return [self._record_json(tbl, r, by_id=False) for r in tbl.records.values()]

    # ------------------------------------------------------------------ ServiceApp

    def error_body(self, status: int, mode: str) -> dict[str, Any]:
        bodies: dict[int, tuple[str, str]] = {
            400: ("INVALID_REQUEST_UNKNOWN", "Invalid request: parameter validation failed. Check your request data."),
            401: ("AUTHENTICATION_REQUIRED", "Authentication required"),
            403: ("INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", PERMISSIONS_MESSAGE),
            404: ("MODEL_ID_NOT_FOUND", "Record not found"),
            408: ("REQUEST_TIMEOUT", "The request timed out."),
            413: ("REQUEST_TOO_LARGE", "Request body is too large."),
            422: ("INVALID_REQUEST_UNKNOWN", "Invalid request."),
            429: ("RATE_LIMIT_REACHED", "Rate limit exceeded. Please try again later"),
            500: ("SERVER_ERROR", "Server error"),
            502: ("BAD_GATEWAY", "Bad gateway"),
            503: ("SERVICE_UNAVAILABLE", "Service unavailable"),
        }
        type_, message = bodies.get(status, ("SERVER_ERROR", f"Error {status}"))
        return {"error": {"type": type_, "message": message}}

    def base_of(self, req: Request) -> str | None:
        segs = req.segments()
        if len(segs) >= 2 and segs[0] == "v0":
            if segs[1] == "meta":
                return segs[3] if len(segs) >= 4 and segs[2] == "bases" else None
            return segs[1]
        return None

    def handle(self, req: Request) -> Response:
        segs = req.segments()
        if not segs or segs[0] != "v0" or len(segs) < 2:
            raise _not_found_route()
        token = req.bearer_token()
        if not self.state.tokens.known(token):
            raise _err(401, "AUTHENTICATION_REQUIRED", "Authentication required")
        assert token is not None
        if segs[1] == "meta":
            return self._meta(req, token, segs[2:])
        base_id = segs[1]
        self._check_base(token, base_id)
        rest = segs[2:]
        if not rest:
            raise _not_found_route()
        with self._lock:
            tbl = self._table(base_id, rest[0])
        return self._records_route(req, tbl, rest[1:], user_of(token))

    # ------------------------------------------------------------------ auth, limits, lookups

    def _check_base(self, token: str, base_id: str) -> None:
        with self._lock:
            exists = base_id in self.bases
        if not exists or not self.state.tokens.allows(token, base_id):
            raise _err(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", PERMISSIONS_MESSAGE)
        wait = self.token_limiter.check(f"token:{token}") or self.limiter.check(base_id)
        if wait:
            raise _err(
                429,
                "RATE_LIMIT_REACHED",
                "Rate limit exceeded. Please try again later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def _table(self, base_id: str, id_or_name: str) -> TableData:
        base = self.bases.get(base_id)
        tbl = base.table(id_or_name) if base else None
        if tbl is None:
            raise _err(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", PERMISSIONS_MESSAGE)
        return tbl

    # ------------------------------------------------------------------ meta API

    def _meta(self, req: Request, token: str, segs: list[str]) -> Response:
        method = req.method
        if segs == ["whoami"] and method == "GET":
            return json_response(200, {"id": user_of(token)["id"]})
        if segs == ["bases"]:
            if method == "GET":
                with self._lock:
                    bases = [
                        {"id": b.id, "name": b.name, "permissionLevel": "create"}
                        for b in self.bases.values()
                        if self.state.tokens.allows(token, b.id)
                    ]
                return json_response(200, {"bases": bases})
            if method == "POST":
                return json_response(200, self._create_base(_body_object(req), token))
        if len(segs) == 2 and segs[0] == "bases" and method == "GET":
            self._check_base(token, segs[1])
            return json_response(200, self._base_collaborators(segs[1], token))
        if len(segs) >= 3 and segs[0] == "bases" and segs[2] == "tables":
            base_id = segs[1]
            self._check_base(token, base_id)
            with self._lock:
                base = self.bases[base_id]
                if len(segs) == 3 and method == "GET":
                    return json_response(200, {"tables": [t.schema() for t in base.tables.values()]})
                if len(segs) == 3 and method == "POST":
                    return json_response(200, self._create_table(base, _body_object(req)).schema())
                if len(segs) == 5 and segs[4] == "fields" and method == "POST":
                    tbl = self._table(base_id, segs[3])
                    return json_response(200, self._create_field(tbl, _body_object(req)).schema())
        raise _not_found_route()

    def _base_collaborators(self, base_id: str, token: str) -> dict[str, Any]:
        """`GET /v0/meta/bases/{baseId}`: the base and who may use it (its creator and the tokens granted it)."""
        with self._lock:
            base = self.bases[base_id]
            people = []
            for who, since in base.collaborators.items():
                user = user_of(who)
                people.append(
                    {
                        "userId": user["id"],
                        "email": user["email"],
                        "permissionLevel": "create",
                        "createdTime": since,
                        "grantedByUserId": user_of(token)["id"],
                    }
                )
            return {
                "id": base.id,
                "name": base.name,
                "createdTime": base.created_time,
                "permissionLevel": "create",
                "workspaceId": "wsp" + hashlib.sha256(b"sandbox workspace").hexdigest()[:14],
                "interfaces": {},
                "groupCollaborators": {"baseCollaborators": [], "workspaceCollaborators": []},
                "individualCollaborators": {"baseCollaborators": people, "workspaceCollaborators": []},
                "inviteLinks": {"baseInviteLinks": [], "workspaceInviteLinks": []},
            }

    def _fixed_id(self, spec: dict[str, Any], prefix: str, in_process: bool) -> str:
        wanted = spec.get("id") if in_process else None
        if wanted is None:
            return self.new_id(prefix)
        if not isinstance(wanted, str) or not wanted.startswith(prefix) or len(wanted) != 17:
            raise _invalid_request(f"a fixed ID must be {prefix!r} and 14 more characters, got {wanted!r}")
        return wanted

    def _create_base(
        self, spec: dict[str, Any], token: str | None, in_process: bool = False, base_id: str | None = None
    ) -> dict[str, Any]:
        name = spec.get("name")
        tables = spec.get("tables")
        if not isinstance(name, str) or not name.strip():
            raise _invalid_request("a base needs a non-empty 'name'")
        if not isinstance(tables, list) or not tables:
            raise _invalid_request("a base needs at least one table in 'tables'")
        with self._lock:
            base = BaseData(self._fixed_id({"id": base_id}, "app", base_id is not None), name)
            if base.id in self.bases:
                raise _invalid_request(f"base {base.id} exists already")
            for tspec in tables:
                self._create_table(base, tspec, in_process)
            self.bases[base.id] = base
            if token is not None:
                self.state.tokens.grant(token, base.id)
                base.collaborators[token] = base.created_time
            return {"id": base.id, "tables": [t.schema() for t in base.tables.values()]}

    def _create_table(self, base: BaseData, spec: Any, in_process: bool = False) -> TableData:
        if not isinstance(spec, dict):
            raise _invalid_request("a table must be an object with 'name' and 'fields'")
        name, fields = spec.get("name"), spec.get("fields")
        if not isinstance(name, str) or not name.strip():
            raise _invalid_request("a table needs a non-empty 'name'")
        if base.table(name) is not None:
            raise _err(422, "DUPLICATE_TABLE_NAME", f"Table name {name!r} is already used in this base")
        if not isinstance(fields, list) or not fields:
            raise _invalid_request(f"table {name!r} needs at least one field in 'fields'")
        tbl = TableData(self._fixed_id(spec, "tbl", in_process), name, spec.get("description"), {})
        self._base_of_table[tbl.id] = base
        for fspec in fields:
            self._create_field(tbl, fspec, in_process)
        if tbl.fields[tbl.primary_field_id].type in _COMPUTED_TYPES - {"formula"}:
            raise _invalid_request(f"the primary field of table {name!r} cannot be of this type")
        base.tables[tbl.id] = tbl
        return tbl

    def _create_field(self, tbl: TableData, spec: Any, in_process: bool = False) -> FieldDef:
        if not isinstance(spec, dict):
            raise _invalid_request("a field must be an object with 'name' and 'type'")
        name, type_ = spec.get("name"), spec.get("type")
        if not isinstance(name, str) or not name.strip():
            raise _invalid_request("a field needs a non-empty 'name'")
        if type_ not in FIELD_TYPES:
            raise _err(
                422,
                "UNSUPPORTED_FIELD_TYPE",
                f"Field type {type_!r} of field {name!r} is not supported by the sandbox; "
                f"accepted: {', '.join(FIELD_TYPES)}",
            )
        if type_ in _UI_ONLY_TYPES and not in_process:
            raise _err(
                422,
                "UNSUPPORTED_FIELD_TYPE_FOR_CREATE",
                f"Field {name!r}: creating {type_} fields is not supported by the Web API; "
                "they are made in Airtable's interface",
            )
        if tbl.field(name) is not None:
            raise _err(422, "DUPLICATE_OR_EMPTY_FIELD_NAME", f"Field name {name!r} is already used in this table")
        options = spec.get("options") or {}
        if not isinstance(options, dict):
            raise _invalid_request(f"'options' of field {name!r} must be an object")
        fid = self._fixed_id(spec, "fld", in_process)
        fdef = FieldDef(fid, name, type_, self._field_options(tbl, name, type_, options))
        fdef.description = spec.get("description")
        tbl.fields[fdef.id] = fdef
        if type_ == "multipleRecordLinks":
            self._add_inverse_link(tbl, fdef)
        return fdef

    def _add_inverse_link(self, tbl: TableData, fdef: FieldDef) -> None:
        """Airtable gives a link to another table its twin there, named after this table, kept in step."""
        other = self._linked_table(tbl, fdef)
        if other is tbl:
            return
        name, n = tbl.name, 1
        while other.field(name) is not None:
            n += 1
            name = f"{tbl.name} {n}"
        twin = FieldDef(
            self.new_id("fld"),
            name,
            "multipleRecordLinks",
            {"linkedTableId": tbl.id, "isReversed": False, "prefersSingleRecordLink": False},
        )
        twin.options["inverseLinkFieldId"] = fdef.id
        fdef.options["inverseLinkFieldId"] = twin.id
        other.fields[twin.id] = twin

    def _linked_table(self, tbl: TableData, fdef: FieldDef) -> TableData:
        if fdef.options.get("linkedTableId") == tbl.id:
            return tbl  # a link to its own table (also while that table is being created)
        base = self._base_of_table[tbl.id]
        other = base.tables.get(fdef.options.get("linkedTableId", ""))
        if other is None:
            raise _invalid_request(f"field {fdef.name!r} links to a table that does not exist")
        return other

    def _field_options(self, tbl: TableData, name: str, type_: str, options: dict[str, Any]) -> dict[str, Any]:
        if type_ in _NUMBER_TYPES:
            precision = options.get("precision", 0)
            if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 8:
                raise _invalid_request(f"'precision' of field {name!r} must be an integer from 0 to 8")
            out: dict[str, Any] = {"precision": precision}
            if type_ == "currency":
                out["symbol"] = options.get("symbol", "$")
            return out
        if type_ in ("singleSelect", "multipleSelects"):
            choices = options.get("choices", [])
            if not isinstance(choices, list):
                raise _invalid_request(f"'choices' of field {name!r} must be a list")
            out_choices = []
            for i, choice in enumerate(choices):
                cname = choice.get("name") if isinstance(choice, dict) else None
                if not isinstance(cname, str) or not cname:
                    raise _invalid_request(f"choice {i} of field {name!r} needs a 'name'")
                out_choices.append(
                    {"id": self.new_id("sel"), "name": cname, "color": choice.get("color", _COLORS[i % len(_COLORS)])}
                )
            return {"choices": out_choices}
        if type_ == "checkbox":
            return {"color": options.get("color", "greenBright"), "icon": options.get("icon", "check")}
        if type_ == "date":
            return {"dateFormat": options.get("dateFormat", {"name": "iso", "format": "YYYY-MM-DD"})}
        if type_ == "dateTime":
            return {
                "timeZone": options.get("timeZone", "utc"),
                "dateFormat": options.get("dateFormat", {"name": "iso", "format": "YYYY-MM-DD"}),
                "timeFormat": options.get("timeFormat", {"name": "24hour", "format": "HH:mm"}),
            }
        if type_ == "multipleRecordLinks":
            linked = options.get("linkedTableId")
            target = tbl if linked == tbl.id else self._base_of_table[tbl.id].tables.get(str(linked))
            if target is None:
                raise _invalid_request(
                    f"link field {name!r} needs 'options.linkedTableId', the ID of a table of this base"
                )
            return {
                "linkedTableId": target.id,
                "isReversed": False,
                "prefersSingleRecordLink": bool(options.get("prefersSingleRecordLink", False)),
            }
        if type_ in _THROUGH_LINK_TYPES:
            link = tbl.field(str(options.get("recordLinkFieldId", "")))
            if link is None or link.type != "multipleRecordLinks":
                raise _invalid_request(f"field {name!r} needs 'options.recordLinkFieldId', a link field of the table")
            out = {"isValid": True, "recordLinkFieldId": link.id}
            if type_ == "count":
                return out
            other = self._linked_table(tbl, link)
            looked = other.field(str(options.get("fieldIdInLinkedTable", "")))
            if looked is None:
                raise _invalid_request(
                    f"field {name!r} needs 'options.fieldIdInLinkedTable', a field of {other.name!r}"
                )
            out["fieldIdInLinkedTable"] = looked.id
            if type_ == "rollup":
                formula = options.get("formula", "ARRAYJOIN(values)")
                try:
                    compile_formula(str(formula), ["values"])
                except FormulaError as exc:
                    raise _err(422, "INVALID_FORMULA", f"Invalid rollup formula for field {name!r}: {exc}") from None
                out["formula"] = formula
            return out
        if type_ == "rating":
            top = options.get("max", 5)
            if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 10:
                raise _invalid_request(f"'max' of rating field {name!r} must be an integer from 1 to 10")
            return {"max": top, "icon": options.get("icon", "star"), "color": options.get("color", "yellowBright")}
        if type_ == "duration":
            return {"durationFormat": options.get("durationFormat", "h:mm")}
        if type_ == "button":
            return {"label": str(options.get("label", "Open")), "url": options.get("url")}
        if type_ == "lastModifiedTime":
            watched = options.get("referencedFieldIds", [])
            if not isinstance(watched, list):
                raise _invalid_request(f"'referencedFieldIds' of field {name!r} must be a list of field IDs or names")
            ids = []
            for ref in watched:
                watched_field = tbl.field(ref) if isinstance(ref, str) else None
                if watched_field is None or watched_field.type in _COMPUTED_TYPES:
                    raise _invalid_request(
                        f"field {name!r} watches {ref!r}, which is not an editable field of the table"
                    )
                ids.append(watched_field.id)
            return {
                "isValid": True,
                "referencedFieldIds": ids,
                "result": {"type": "dateTime", "options": self._field_options(tbl, name, "dateTime", {})},
            }
        if type_ == "formula":
            text = options.get("formula")
            if not isinstance(text, str) or not text.strip():
                raise _invalid_request(f"formula field {name!r} needs 'options.formula'")
            try:
                compile_formula(text, [f.name for f in tbl.fields.values()])
            except FormulaError as exc:
                raise _err(422, "INVALID_FORMULA", f"Invalid formula for field {name!r}: {exc}") from None
            return {"formula": text, "isValid": True, "referencedFieldIds": []}
        return {}

    # ------------------------------------------------------------------ record routes

    def _records_route(self, req: Request, tbl: TableData, rest: list[str], user: dict[str, str]) -> Response:
        method = req.method
        if len(rest) >= 2 and rest[1] == "comments":
            return self._comments_route(req, tbl, rest[0], rest[2:], user)
        if not rest:
            if method == "GET":
                return self._list(tbl, _query_list_params(req))
            if method == "POST":
                return self._create(tbl, _body_object(req), user)
            if method in ("PATCH", "PUT"):
                return self._update(tbl, _body_object(req), user, destructive=method == "PUT")
            if method == "DELETE":
                return self._delete(tbl, req.query.get("records[]", []) + req.query.get("records", []))
        elif len(rest) == 1:
            if rest[0] == "listRecords" and method == "POST":
                return self._list(tbl, _body_list_params(_body_object(req, allow_empty=True)))
            record_id = rest[0]
            if method == "GET":
                by_id = _truthy_param(req.param("returnFieldsByFieldId"))
                return json_response(200, self._record_json(tbl, self._record(tbl, record_id), by_id))
            if method in ("PATCH", "PUT"):
                body = _body_object(req)
                item = {"id": record_id, "fields": body.get("fields", {})}
                payload = {"records": [item], **{k: v for k, v in body.items() if k != "fields"}}
                resp = self._update(tbl, payload, user, destructive=method == "PUT", single=True)
                return resp
            if method == "DELETE":
                with self._lock:
                    self._record(tbl, record_id)
                    self._remove_records(tbl, [record_id])
                return json_response(200, {"id": record_id, "deleted": True})
        raise _not_found_route()

    def _record(self, tbl: TableData, record_id: str) -> RecordData:
        rec = tbl.records.get(record_id)
        if rec is None:
            raise _err(404, "MODEL_ID_NOT_FOUND", "Record not found")
        return rec

    def _record_json(
        self, tbl: TableData, rec: RecordData, by_id: bool, only: list[FieldDef] | None = None
    ) -> dict[str, Any]:
        values = self._values_with_computed(tbl, rec)
        fields: dict[str, Any] = {}
        for fdef in only if only is not None else tbl.fields.values():
            value = values.get(fdef.id)
            if not _is_empty(value):
                fields[fdef.id if by_id else fdef.name] = value
        return {"id": rec.id, "createdTime": rec.created_time, "fields": fields}

    def _values_with_computed(self, tbl: TableData, rec: RecordData, depth: int = 0) -> dict[str, Any]:
        """Every cell of a record as the API returns it, computed fields (in field order) included."""
        values = dict(rec.values)
        for fdef in tbl.fields.values():
            t = fdef.type
            if t == "createdTime":
                values[fdef.id] = rec.created_time
            elif t == "lastModifiedTime":
                watched = fdef.options.get("referencedFieldIds") or None
                values[fdef.id] = rec.last_modified(watched)
            elif t == "createdBy":
                values[fdef.id] = rec.created_by
            elif t == "lastModifiedBy":
                values[fdef.id] = rec.modified_by
            elif t == "button":
                values[fdef.id] = self._button(tbl, rec, fdef, values)
            elif t == "formula":
                node = compile_formula(fdef.options["formula"])
                result = evaluate_cell(node, self._context(tbl, rec, values))
                values[fdef.id] = _formula_output(result)
            elif t in _THROUGH_LINK_TYPES:
                values[fdef.id] = self._through_link(tbl, rec, fdef, depth)
        return values

    def _button(self, tbl: TableData, rec: RecordData, fdef: FieldDef, values: dict[str, Any]) -> dict[str, Any]:
        url = fdef.options.get("url")
        if isinstance(url, str) and url:
            url = _formula_output(evaluate_cell(compile_formula(url), self._context(tbl, rec, values)))
        return {"label": fdef.options.get("label", "Open"), "url": url if isinstance(url, str) else None}

    def _through_link(self, tbl: TableData, rec: RecordData, fdef: FieldDef, depth: int) -> Any:
        """A count, lookup or rollup: read the linked records' cells (their computed ones too)."""
        link = tbl.fields.get(fdef.options["recordLinkFieldId"])
        linked_ids = list(rec.values.get(link.id) or []) if link else []
        if fdef.type == "count":
            return len(linked_ids)
        if link is None or depth >= _MAX_LOOKUP_DEPTH:
            return _formula_output(CELL_ERROR)
        other = self._linked_table(tbl, link)
        looked: list[Any] = []
        for other_id in linked_ids:
            target = other.records.get(other_id)
            if target is None:
                continue
            cell = self._values_with_computed(other, target, depth + 1).get(fdef.options["fieldIdInLinkedTable"])
            if isinstance(cell, list):
                looked.extend(cell)
            elif not _is_empty(cell):
                looked.append(cell)
        if fdef.type == "multipleLookupValues":
            return looked
        node = compile_formula(fdef.options["formula"], ["values"])
        inputs = [_cell_input(v) for v in looked]
        return _formula_output(evaluate_cell(node, EvalContext({"values": inputs}, rec.id)))

    def _context(self, tbl: TableData, rec: RecordData, values: dict[str, Any] | None = None) -> EvalContext:
        values = values if values is not None else rec.values
        by_name: dict[str, Any] = {}
        for fdef in tbl.fields.values():
            value = values.get(fdef.id)
            if value is not None and fdef.type in _DATE_TYPES:
                value = parse_datetime(value)
            by_name[fdef.name] = _cell_input(value)
        modified: dict[str, datetime] = {}
        for fid, when in rec.modified.items():
            written = tbl.fields.get(fid)
            stamp = parse_datetime(when)
            if written is not None and stamp is not None:
                modified[written.name] = stamp
        return EvalContext(by_name, rec.id, parse_datetime(rec.created_time), modified_times=modified)

    # ------------------------------------------------------------------ list

    def _list(self, tbl: TableData, params: dict[str, Any]) -> Response:
        page_size = _int_param(params.get("pageSize"), "pageSize", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE) or MAX_PAGE_SIZE
        max_records = _int_param(params.get("maxRecords"), "maxRecords", None, 1, None)
        by_id = _truthy_param(params.get("returnFieldsByFieldId"))
        only: list[FieldDef] | None = None
        if params.get("fields") is not None:
            only = [self._known_field(tbl, name) for name in params["fields"]]
        query = (tbl.id, repr(params.get("filterByFormula")), repr(params.get("sort")), max_records)
        with self._lock:
            earlier = self._listings.get(query) if params.get("offset") else None
        if earlier is not None:  # a later page: the rows the first page found
            return self._page(tbl, earlier, params, page_size, by_id, only)
        with self._lock:
            rows = list(tbl.records.values())
        cache: dict[str, dict[str, Any]] = {}

        def values_of(rec: RecordData) -> dict[str, Any]:
            if rec.id not in cache:
                cache[rec.id] = self._values_with_computed(tbl, rec)
            return cache[rec.id]

        formula = params.get("filterByFormula")
        if formula:
            try:
                node = compile_formula(formula, [f.name for f in tbl.fields.values()])
            except FormulaError as exc:
                raise _err(
                    422,
                    "INVALID_FILTER_BY_FORMULA",
                    f"The formula for filtering records is invalid: {exc}. Please check your formula text.",
                ) from None
            rows = [r for r in rows if matches(node, self._context(tbl, r, values_of(r)))]
        for sort in reversed(params.get("sort") or []):
            fid = self._known_field(tbl, sort["field"]).id

            def sort_key(rec: RecordData, fid: str = fid) -> tuple[int, Any]:
                return _sort_key(values_of(rec).get(fid))

            rows.sort(key=sort_key, reverse=sort["direction"] == "desc")
        if max_records is not None:
            rows = rows[:max_records]
        with self._lock:
            self._listings[query] = rows
            while len(self._listings) > 64:
                self._listings.pop(next(iter(self._listings)))
        return self._page(tbl, rows, params, page_size, by_id, only)

    def _page(
        self,
        tbl: TableData,
        rows: list[RecordData],
        params: dict[str, Any],
        page_size: int,
        by_id: bool,
        only: list[FieldDef] | None,
    ) -> Response:
        start = _offset_index(params.get("offset"), len(rows))
        page = [r for r in rows[start : start + page_size] if tbl.records.get(r.id) is r]  # deleted since: gone
        body: dict[str, Any] = {"records": [self._record_json(tbl, r, by_id, only) for r in page]}
        end = start + len(page)
        if end < len(rows):
            body["offset"] = f"itr{tbl.id[3:]}/{rows[end].id}/{end}"
        return json_response(200, body)

    def _known_field(self, tbl: TableData, name: Any) -> FieldDef:
        fdef = tbl.field(name) if isinstance(name, str) else None
        if fdef is None:
            raise _err(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
        return fdef

    # ------------------------------------------------------------------ writes

    def _create(self, tbl: TableData, body: dict[str, Any], user: dict[str, str]) -> Response:
        typecast = bool(body.get("typecast"))
        by_id = bool(body.get("returnFieldsByFieldId"))
        single = "records" not in body
        items = [{"fields": body.get("fields", {})}] if single else _record_items(body)
        prepared = [self._prepare(tbl, _item_fields(item), typecast) for item in items]
        self._wait_for_held_writes()
        created = []
        with self._lock:
            self._check_links(tbl, prepared)
            for values in prepared:
                rec = self._new_record(tbl, values, user)
                created.append(rec)
            self._commit_choices(tbl, prepared)
        out = [self._record_json(tbl, rec, by_id) for rec in created]
        return json_response(200, out[0] if single else {"records": out})

    def _update(
        self, tbl: TableData, body: dict[str, Any], user: dict[str, str], destructive: bool, single: bool = False
    ) -> Response:
        typecast = bool(body.get("typecast"))
        by_id = bool(body.get("returnFieldsByFieldId"))
        items = _record_items(body)
        upsert = body.get("performUpsert")
        merge_on: list[FieldDef] | None = None
        existing: dict[tuple[Any, ...], list[str]] = {}
        if upsert is not None:
            merge_on = self._merge_fields(tbl, upsert)
            with self._lock:
                snapshot = list(tbl.records.values())
            for rec in snapshot:  # one pass per request, not one per record in it
                existing.setdefault(self._merge_key(merge_on, rec.values, None), []).append(rec.id)
        # Plan every change before applying any, so a failing request changes nothing.
        plan: list[tuple[str | None, dict[str, Any]]] = []
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(items):
            values = self._prepare(tbl, _item_fields(item), typecast)
            record_id = item.get("id")
            if record_id is not None:
                if not isinstance(record_id, str):
                    raise _err(422, "INVALID_RECORDS", f"records[{index}].id must be a record ID string")
                with self._lock:
                    self._record(tbl, record_id)
            elif merge_on is None:
                raise _err(422, "INVALID_RECORDS", f"records[{index}] needs an 'id' (or use performUpsert)")
            else:
                key = self._merge_key(merge_on, values, index)
                if key in seen_keys:
                    raise _err(
                        422,
                        "INVALID_RECORDS",
                        f"records[{index}] has the same values in fieldsToMergeOn as an earlier record of this request",
                    )
                seen_keys.add(key)
                found = existing.get(key, [])
                if len(found) > 1:
                    names = ", ".join(f.name for f in merge_on)
                    raise _err(
                        422,
                        "INVALID_VALUE_FOR_COLUMN",
                        f"Cannot update records: {len(found)} records match the fieldsToMergeOn values "
                        f"({names}) of records[{index}]; an upsert needs at most one match.",
                    )
                record_id = found[0] if found else None
            plan.append((record_id, values))
        # The matches above were read before this point: another request may apply in between (not atomic
        # across requests, as on Airtable); the change itself is applied all or nothing.
        self._wait_for_held_writes()
        created_ids, updated_ids, applied = [], [], []
        with self._lock:
            for record_id, _ in plan:
                if record_id is not None:
                    self._record(tbl, record_id)  # deleted meanwhile: the request fails, nothing changes
            self._check_links(tbl, [v for _, v in plan])
            for record_id, values in plan:
                now = _now_iso()
                if record_id is None:
                    rec = self._new_record(tbl, values, user)
                    created_ids.append(rec.id)
                else:
                    rec = tbl.records[record_id]
                    merged = values if destructive else {**rec.values, **values}
                    cleared = set(rec.values) - set(merged) if destructive else set()
                    before = rec.values
                    rec.values = {k: v for k, v in merged.items() if not _is_empty(v)}
                    rec.touch([*values, *cleared], now)
                    rec.modified_by = user
                    self._sync_links(tbl, rec, before)
                    updated_ids.append(rec.id)
                applied.append(rec)
            self._commit_choices(tbl, [v for _, v in plan])
        out = [self._record_json(tbl, rec, by_id) for rec in applied]
        if single:
            return json_response(200, out[0])
        result: dict[str, Any] = {"records": out}
        if merge_on is not None:
            result["createdRecords"] = created_ids
            result["updatedRecords"] = updated_ids
        return json_response(200, result)

    def _new_record(self, tbl: TableData, values: dict[str, Any], user: dict[str, str]) -> RecordData:
        """Add a record (under the lock): its autoNumber, who made it, when each field was written."""
        now = _now_iso()
        rec = RecordData(self.new_id("rec"), now, {k: v for k, v in values.items() if not _is_empty(v)})
        rec.touch(rec.values, now)
        rec.created_by = user
        if rec.values:
            rec.modified_by = user
        for fdef in tbl.fields.values():
            if fdef.type == "autoNumber":
                rec.values[fdef.id] = tbl.next_number
        tbl.next_number += 1
        tbl.records[rec.id] = rec
        self._sync_links(tbl, rec, {})
        return rec

    def _check_links(self, tbl: TableData, prepared: Iterable[dict[str, Any]]) -> None:
        """A link to a record that does not exist (in the linked table) fails the whole request."""
        for values in prepared:
            for fid, value in values.items():
                fdef = tbl.fields[fid]
                if fdef.type != "multipleRecordLinks" or not value:
                    continue
                other = self._linked_table(tbl, fdef)
                for record_id in value:
                    if record_id not in other.records:
                        raise _err(
                            422,
                            "ROW_DOES_NOT_EXIST",
                            f'Record ID "{record_id}" does not exist in table "{other.name}" (field "{fdef.name}")',
                        )

    def _sync_links(self, tbl: TableData, rec: RecordData, before: dict[str, Any]) -> None:
        """Keep each link's twin in the linked table in step with what `rec` links to now (under the lock)."""
        for fdef in tbl.fields.values():
            twin_id = fdef.options.get("inverseLinkFieldId") if fdef.type == "multipleRecordLinks" else None
            if twin_id is None:
                continue
            old, new = set(before.get(fdef.id) or []), list(rec.values.get(fdef.id) or [])
            other = self._linked_table(tbl, fdef)
            for other_id in new:
                target = other.records.get(other_id)
                linked = list(target.values.get(twin_id) or []) if target else []
                if target is not None and rec.id not in linked:
                    target.values[twin_id] = [*linked, rec.id]
            for other_id in old - set(new):
                target = other.records.get(other_id)
                if target is not None:
                    kept = [i for i in target.values.get(twin_id) or [] if i != rec.id]
                    if kept:
                        target.values[twin_id] = kept
                    else:
                        target.values.pop(twin_id, None)

    def _remove_records(self, tbl: TableData, ids: list[str]) -> None:
        """Delete records (under the lock), and take them out of every link that pointed at them."""
        gone = set(ids)
        for record_id in ids:
            tbl.records.pop(record_id, None)
            tbl.comments.pop(record_id, None)
        base = self._base_of_table.get(tbl.id)
        for table in base.tables.values() if base else []:
            links = [f.id for f in table.fields.values() if f.type == "multipleRecordLinks"]
            links = [fid for fid in links if table.fields[fid].options.get("linkedTableId") == tbl.id]
            for rec in table.records.values() if links else []:
                for fid in links:
                    if gone & set(rec.values.get(fid) or []):
                        kept = [i for i in rec.values[fid] if i not in gone]
                        if kept:
                            rec.values[fid] = kept
                        else:
                            del rec.values[fid]

    # ------------------------------------------------------------------ record comments

    def _comments_route(
        self, req: Request, tbl: TableData, record_id: str, rest: list[str], user: dict[str, str]
    ) -> Response:
        with self._lock:
            self._record(tbl, record_id)
            comments = tbl.comments.setdefault(record_id, [])
            if not rest and req.method == "GET":  # newest first, in pages of at most 100
                newest_first = [dict(c) for c in reversed(comments)]
                size = _int_param(req.param("pageSize"), "pageSize", MAX_PAGE_SIZE, 1, MAX_PAGE_SIZE) or MAX_PAGE_SIZE
                offset = req.param("offset")
                start = int(offset[3:]) if isinstance(offset, str) and re.fullmatch(r"cmt\d+", offset) else 0
                if offset and not start:
                    raise _err(422, "INVALID_OFFSET_VALUE", "The offset is not valid")
                end = start + size
                more = f"cmt{end}" if end < len(newest_first) else None
                return json_response(200, {"comments": newest_first[start:end], "offset": more})
            if not rest and req.method == "POST":
                text = _comment_text(_body_object(req))
                now = _now_iso()
                comment: dict[str, Any] = {
                    "id": self.new_id("com"),
                    "author": dict(user),
                    "text": text,
                    "createdTime": now,
                    "lastUpdatedTime": None,
                    "mentioned": self._mentions(text),
                }
                comments.append(comment)
                return json_response(200, comment)
            if len(rest) == 1:
                found = next((c for c in comments if c["id"] == rest[0]), None)
                if found is None:
                    raise _err(404, "MODEL_ID_NOT_FOUND", "Comment not found")
                if req.method == "PATCH":
                    if found["author"]["id"] != user["id"]:
                        raise _err(403, "INVALID_PERMISSIONS", "Only the author may change a comment")
                    found["text"] = _comment_text(_body_object(req))
                    found["lastUpdatedTime"] = _now_iso()
                    found["mentioned"] = self._mentions(found["text"])
                    return json_response(200, found)
                if req.method == "DELETE":
                    if found["author"]["id"] != user["id"]:
                        raise _err(403, "INVALID_PERMISSIONS", "Only the author may delete a comment")
                    comments.remove(found)
                    return json_response(200, {"id": found["id"], "deleted": True})
        raise _not_found_route()

    def _mentions(self, text: str) -> dict[str, Any]:
        """Users a comment mentions as `@[usr...]`: those behind the sandbox's tokens."""
        users = {u["id"]: u for u in (user_of(t) for t in self.state.tokens.tokens())}
        out: dict[str, Any] = {}
        for user_id in re.findall(r"@\[(usr[A-Za-z0-9]{14})\]", text):
            user = users.get(user_id)
            if user is not None:
                out[user_id] = {"type": "user", "id": user_id, "displayName": user["name"], "email": user["email"]}
        return out

    def _merge_fields(self, tbl: TableData, upsert: Any) -> list[FieldDef]:
        names = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_MERGE_FIELDS:
            raise _invalid_request(
                f"performUpsert.fieldsToMergeOn must be a list of 1 to {MAX_MERGE_FIELDS} field names or IDs"
            )
        fdefs = [self._known_field(tbl, n) for n in names]
        for fdef in fdefs:
            if fdef.type in _COMPUTED_TYPES:
                raise _invalid_request(f"field {fdef.name!r} is computed and cannot be used in fieldsToMergeOn")
        return fdefs

    @staticmethod
    def _merge_key(merge_on: list[FieldDef], values: dict[str, Any], index: int | None) -> tuple[Any, ...]:
        key = []
        for fdef in merge_on:
            value = values.get(fdef.id)
            if index is not None and fdef.id not in values:
                raise _err(
                    422,
                    "INVALID_RECORDS",
                    f'records[{index}] is missing the fieldsToMergeOn field "{fdef.name}"',
                )
            key.append(repr(value) if isinstance(value, list) else value)
        return tuple(key)

    def _prepare(self, tbl: TableData, fields: dict[str, Any], typecast: bool) -> dict[str, Any]:
        """Validate and convert one record's fields to stored values keyed by field ID."""
        out: dict[str, Any] = {}
        for key, value in fields.items():
            fdef = self._known_field(tbl, key)
            converted = _convert(fdef, value, typecast)
            if fdef.type in ("singleCollaborator", "multipleCollaborators") and converted is not None:
                converted = self._collaborators(fdef, converted)
            out[fdef.id] = converted
        return out

    def _collaborators(self, fdef: FieldDef, value: Any) -> Any:
        """Collaborator cells name a user of the base by id or email: here, the users behind the tokens."""
        users = [user_of(t) for t in self.state.tokens.tokens()]
        resolved = []
        for ref in value if isinstance(value, list) else [value]:
            user = next((u for u in users if ref.get("id") == u["id"] or ref.get("email") == u["email"]), None)
            if user is None:
                raise _cannot_accept(fdef, ref)
            resolved.append(dict(user))
        return resolved if isinstance(value, list) else resolved[0]

    @staticmethod
    def _commit_choices(tbl: TableData, prepared: Iterable[dict[str, Any]]) -> None:
        """Add the select options a typecast write introduced (only once the request succeeded)."""
        for values in prepared:
            for fid, value in values.items():
                fdef = tbl.fields[fid]
                if fdef.type not in ("singleSelect", "multipleSelects") or value is None:
                    continue
                known = {c["name"] for c in fdef.options["choices"]}
                for name in value if isinstance(value, list) else [value]:
                    if name not in known:
                        n = len(fdef.options["choices"])
                        choice_id = "sel" + hashlib.sha256(f"{fid}/{name}".encode()).hexdigest()[:14]
                        fdef.options["choices"].append(
                            {"id": choice_id, "name": name, "color": _COLORS[n % len(_COLORS)]}
                        )
                        known.add(name)

    def _delete(self, tbl: TableData, ids: list[str]) -> Response:
        if not 1 <= len(ids) <= MAX_RECORDS_PER_REQUEST:
            raise _err(
                422,
                "INVALID_RECORDS",
                f"Give 1 to {MAX_RECORDS_PER_REQUEST} record IDs in records[] (got {len(ids)})",
            )
        with self._lock:
            for record_id in ids:
                self._record(tbl, record_id)
            self._remove_records(tbl, ids)
        return json_response(200, {"records": [{"id": i, "deleted": True} for i in ids]})


# ---------------------------------------------------------------------------------- request parsing


def _body_object(req: Request, allow_empty: bool = False) -> dict[str, Any]:
    body = req.json(default={}) if allow_empty else req.json()
    if not isinstance(body, dict):
        raise _invalid_request("the request body must be a JSON object")
    return body


def _record_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("records")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_RECORDS_PER_REQUEST:
        count = len(items) if isinstance(items, list) else "no list"
        raise _err(
            422,
            "INVALID_RECORDS",
            f"'records' must be a list of 1 to {MAX_RECORDS_PER_REQUEST} records (got {count})",
        )
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _err(422, "INVALID_RECORDS", f"records[{index}] must be an object")
    return items


def _comment_text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _invalid_request("a comment needs a non-empty 'text'")
    return text


def _item_fields(item: dict[str, Any]) -> dict[str, Any]:
    fields = item.get("fields", {})
    if not isinstance(fields, dict):
        raise _err(422, "INVALID_RECORDS", "'fields' must be an object of field name to value")
    return fields


def _query_list_params(req: Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("pageSize", "maxRecords", "offset", "filterByFormula", "returnFieldsByFieldId", "view"):
        value = req.param(name)
        if value is not None:
            params[name] = value
    fields = req.query.get("fields[]", []) + req.query.get("fields", [])
    if fields:
        params["fields"] = fields
    sorts: dict[int, dict[str, str]] = {}
    for key, values in req.query.items():
        if key.startswith("sort["):
            parts = key[5:].rstrip("]").split("][")
            if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in ("field", "direction"):
                raise _invalid_request(f"unknown sort parameter {key!r}; expected sort[N][field|direction]")
            sorts.setdefault(int(parts[0]), {})[parts[1]] = values[0]
    if sorts:
        params["sort"] = [sorts[i] for i in sorted(sorts)]
    return _validate_sort(params)


def _body_list_params(body: dict[str, Any]) -> dict[str, Any]:
    known = {
        "pageSize",
        "maxRecords",
        "offset",
        "filterByFormula",
        "returnFieldsByFieldId",
        "view",
        "fields",
        "sort",
        "cellFormat",
        "timeZone",
        "userLocale",
        "recordMetadata",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise _invalid_request(f"unknown listRecords parameters {unknown}")
    params = dict(body)
    if params.get("fields") is not None and not isinstance(params["fields"], list):
        raise _invalid_request("'fields' must be a list of field names")
    return _validate_sort(params)


def _validate_sort(params: dict[str, Any]) -> dict[str, Any]:
    sorts = params.get("sort")
    if sorts is None:
        return params
    if not isinstance(sorts, list):
        raise _invalid_request("'sort' must be a list of {field, direction}")
    out = []
    for sort in sorts:
        if not isinstance(sort, dict) or "field" not in sort:
            raise _invalid_request("each sort needs a 'field'")
        direction = sort.get("direction", "asc")
        if direction not in ("asc", "desc"):
            raise _invalid_request(f"sort direction {direction!r}; accepted: 'asc', 'desc'")
        out.append({"field": sort["field"], "direction": direction})
    params["sort"] = out
    return params


def _int_param(value: Any, name: str, default: int | None, low: int, high: int | None) -> int | None:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _invalid_request(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise _invalid_request(f"{name} must be an integer {bound}, got {number}")
    return number


def _truthy_param(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


def _offset_index(offset: Any, total: int) -> int:
    if offset is None or offset == "":
        return 0
    try:
        index = int(str(offset).rsplit("/", 1)[1])
    except (IndexError, ValueError):
        index = -1
    if not str(offset).startswith("itr") or not 0 <= index <= total:
        raise _err(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "The offset is not valid or has expired")
    return index


# ------------------------------------------------------------------------------------ value handling


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value is False or value == []


def _sort_key(value: Any) -> tuple[int, Any]:
    if _is_empty(value):
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, str(value).lower() if not isinstance(value, list) else ", ".join(map(str, value)).lower())


def _formula_output(value: Any) -> Any:
    """A formula's result as the API returns the cell: an error is `{"error": "#ERROR!"}`, NaN and the
    infinities are `{"specialValue": ...}` (both as Airtable's JSON cell format has them)."""
    if value is CELL_ERROR:
        return {"error": "#ERROR!"}
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, float) and math.isnan(value):
        return {"specialValue": "NaN"}
    if isinstance(value, float) and math.isinf(value):
        return {"specialValue": "Infinity" if value > 0 else "-Infinity"}
    return value


def _cell_input(value: Any) -> Any:
    """A cell as a formula reads it: an error cell stays an error, a special value becomes that number."""
    if isinstance(value, dict) and set(value) == {"error"}:
        return CELL_ERROR
    if isinstance(value, dict) and set(value) == {"specialValue"}:
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(value["specialValue"], "nan"))
    if isinstance(value, list):
        return [_cell_input(v) for v in value]
    return value


def _cannot_accept(fdef: FieldDef, value: Any) -> ApiError:
    return _err(
        422,
        "INVALID_VALUE_FOR_COLUMN",
        f'Field "{fdef.name}" cannot accept the provided value: {value!r} is not valid for a {fdef.type} field',
    )


def _convert(fdef: FieldDef, value: Any, typecast: bool) -> Any:
    """The stored form of `value` for a field, or a 422 in Airtable's words."""
    if fdef.type in _COMPUTED_TYPES:
        raise _err(
            422,
            "INVALID_VALUE_FOR_COLUMN",
            f'Field "{fdef.name}" cannot accept a value because the field is computed',
        )
    if value is None:
        return None
    t = fdef.type
    if t in _TEXT_TYPES:
        if isinstance(value, str):
            if len(value) > MAX_CELL_CHARS:
                raise _err(
                    422,
                    "INVALID_VALUE_FOR_COLUMN",
                    f'Field "{fdef.name}" cannot accept the provided value: it is {len(value)} characters long, '
                    f"more than the {MAX_CELL_CHARS} a cell can hold",
                )
            return value
        if typecast and isinstance(value, int | float | bool):
            return str(value)
        raise _cannot_accept(fdef, value)
    if t in _NUMBER_TYPES:
        number: float | int
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = value
        elif typecast and isinstance(value, str):
            try:
                number = float(value.strip().replace(",", ""))
            except ValueError:
                return None  # Airtable's typecast leaves an unparseable number blank
        else:
            raise _cannot_accept(fdef, value)
        if math.isnan(number) or math.isinf(number):
            raise _cannot_accept(fdef, value)
        precision = fdef.options.get("precision", 0)
        rounded = round(float(number), precision)
        return int(rounded) if precision == 0 or rounded.is_integer() else rounded
    if t == "checkbox":
        if isinstance(value, bool):
            return value
        if typecast:
            if isinstance(value, str):
                return value.strip().lower() in ("true", "1", "yes", "checked", "x")
            return bool(value)
        raise _cannot_accept(fdef, value)
    if t == "singleSelect":
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            value = value["name"]
        if not isinstance(value, str):
            if not typecast:
                raise _cannot_accept(fdef, value)
            value = str(value)
        if value == "":
            return None
        _check_choice(fdef, value, typecast)
        return value
    if t == "multipleSelects":
        if isinstance(value, str) and typecast:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _cannot_accept(fdef, value)
        for name in value:
            _check_choice(fdef, name, typecast)
        return list(dict.fromkeys(value))
    if t in ("duration", "rating"):
        if isinstance(value, str) and typecast:
            try:
                value = float(value.strip())
            except ValueError:
                return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _cannot_accept(fdef, value)
        if t == "rating":
            if value != int(value) or not 0 <= value <= fdef.options.get("max", 5):
                raise _cannot_accept(fdef, value)
            return int(value) or None
        return int(value) if float(value).is_integer() else value
    if t == "barcode":
        if not isinstance(value, dict) or not isinstance(value.get("text"), str) or set(value) - {"text", "type"}:
            raise _cannot_accept(fdef, value)
        return dict(value) if value["text"] else None
    if t == "multipleRecordLinks":
        if isinstance(value, str):
            value = [value]
        ids = [v.get("id") if isinstance(v, dict) else v for v in value] if isinstance(value, list) else None
        if ids is None or not all(isinstance(i, str) and i.startswith("rec") for i in ids):
            raise _cannot_accept(fdef, value)
        if fdef.options.get("prefersSingleRecordLink") and len(ids) > 1:
            raise _cannot_accept(fdef, value)
        return list(dict.fromkeys(ids))
    if t in ("singleCollaborator", "multipleCollaborators"):
        refs = value if t == "multipleCollaborators" else [value]
        if not isinstance(refs, list) or not all(isinstance(r, dict) and ("id" in r or "email" in r) for r in refs):
            raise _cannot_accept(fdef, value)
        return refs if t == "multipleCollaborators" else refs[0]
    if t == "multipleAttachments":
        if not isinstance(value, list) or not all(isinstance(a, dict) and isinstance(a.get("url"), str) for a in value):
            raise _cannot_accept(fdef, value)
        return [_attachment(a) for a in value]
    if t in ("dateTime", "date"):
        if not isinstance(value, str):
            raise _cannot_accept(fdef, value)
        if value == "":
            return None
        parsed = parse_datetime(value)
        if parsed is None:
            raise _cannot_accept(fdef, value)
        if t == "date":
            return parsed.strftime("%Y-%m-%d") if "T" in value or " " in value else value.strip()[:10]
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"
    raise _cannot_accept(fdef, value)


def _attachment(given: dict[str, Any]) -> dict[str, Any]:
    """An attachment cell as Airtable first returns it: an id, the URL and a file name (the name from the URL's
    path when none is given). The sandbox downloads nothing, so size, dimensions and thumbnails never appear."""
    url = given["url"]
    filename = given.get("filename") or url.split("?", 1)[0].rstrip("/").rpartition("/")[2] or "file"
    attachment_id = given.get("id") or "att" + hashlib.sha256(f"{url}/{filename}".encode()).hexdigest()[:14]
    out = {"id": attachment_id, "url": url, "filename": filename}
    guessed = mimetypes.guess_type(filename)[0]
    if guessed:
        out["type"] = guessed
    return out


def _check_choice(fdef: FieldDef, name: str, typecast: bool) -> None:
    if typecast or any(c["name"] == name for c in fdef.options.get("choices", [])):
        return
    raise _err(
        422,
        "INVALID_MULTIPLE_CHOICE_OPTIONS",
        f'Insufficient permissions to create new select option ""{name}""',
    )
