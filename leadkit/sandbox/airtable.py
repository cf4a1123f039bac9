"""An Airtable-compatible Web API (v0) held in memory, faithful to `api-contracts.md` section 1.1.

Records (list, listRecords, create, update, upsert, delete, single-record routes), the meta API
(whoami, bases, tables, fields), field types enforced on write (a text cell holds at most 100,000 characters),
Airtable's error bodies, and the rate limits: 5 requests per second per base and 50 per second per token across
its bases, each followed by a 30-second penalty.

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
import random
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadkit.sandbox.core import (
    ApiError,
    RateLimiter,
    Request,
    Response,
    ServiceApp,
    SharedState,
    json_response,
)
from leadkit.sandbox.formula import EvalContext, FormulaError, compile_formula, evaluate, matches, parse_datetime

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
)
_TEXT_TYPES = {"singleLineText", "multilineText", "richText", "url", "email", "phoneNumber"}
_NUMBER_TYPES = {"number", "percent", "currency"}
_COMPUTED_TYPES = {"formula", "createdTime"}
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
        if self.options:
            out["options"] = self.options
        return out


@dataclass
class RecordData:
    id: str
    created_time: str
    values: dict[str, Any]  # field id -> stored value (never an empty value)


@dataclass
class TableData:
    id: str
    name: str
    description: str | None
    fields: dict[str, FieldDef]  # field id -> definition, in creation order
    records: dict[str, RecordData] = field(default_factory=dict)

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

    # ------------------------------------------------------------------ in-process helpers

    def new_id(self, prefix: str) -> str:
        with self._id_lock:
            return prefix + "".join(self._rng.choice(_ALNUM) for _ in range(14))

    def create_base(self, name: str, tables_spec: list[dict[str, Any]], token: str | None = None) -> str:
        """Create a base with tables given as in `POST /v0/meta/bases`; returns its ID.

        `token`, if given, is granted the new base (tokens that may use every base need nothing).
        """
        return str(self._create_base({"name": name, "tables": tables_spec}, token)["id"])

    def grant(self, token: str, base_id: str) -> None:
        """Let `token` use `base_id` (adding the token if it is new)."""
        self.state.tokens.grant(token, base_id)

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
        return self._records_route(req, tbl, rest[1:])

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
            user = "usr" + hashlib.sha256(token.encode()).hexdigest()[:14]
            return json_response(200, {"id": user})
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

    def _create_base(self, spec: dict[str, Any], token: str | None) -> dict[str, Any]:
        name = spec.get("name")
        tables = spec.get("tables")
        if not isinstance(name, str) or not name.strip():
            raise _invalid_request("a base needs a non-empty 'name'")
        if not isinstance(tables, list) or not tables:
            raise _invalid_request("a base needs at least one table in 'tables'")
        with self._lock:
            base = BaseData(self.new_id("app"), name)
            for tspec in tables:
                self._create_table(base, tspec)
            self.bases[base.id] = base
            if token is not None:
                self.state.tokens.grant(token, base.id)
            return {"id": base.id, "tables": [t.schema() for t in base.tables.values()]}

    def _create_table(self, base: BaseData, spec: Any) -> TableData:
        if not isinstance(spec, dict):
            raise _invalid_request("a table must be an object with 'name' and 'fields'")
        name, fields = spec.get("name"), spec.get("fields")
        if not isinstance(name, str) or not name.strip():
            raise _invalid_request("a table needs a non-empty 'name'")
        if base.table(name) is not None:
            raise _err(422, "DUPLICATE_TABLE_NAME", f"Table name {name!r} is already used in this base")
        if not isinstance(fields, list) or not fields:
            raise _invalid_request(f"table {name!r} needs at least one field in 'fields'")
        tbl = TableData(self.new_id("tbl"), name, spec.get("description"), {})
        for fspec in fields:
            self._create_field(tbl, fspec)
        if tbl.fields[tbl.primary_field_id].type in _COMPUTED_TYPES - {"formula"}:
            raise _invalid_request(f"the primary field of table {name!r} cannot be of this type")
        base.tables[tbl.id] = tbl
        return tbl

    def _create_field(self, tbl: TableData, spec: Any) -> FieldDef:
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
        if tbl.field(name) is not None:
            raise _err(422, "DUPLICATE_OR_EMPTY_FIELD_NAME", f"Field name {name!r} is already used in this table")
        options = spec.get("options") or {}
        if not isinstance(options, dict):
            raise _invalid_request(f"'options' of field {name!r} must be an object")
        fdef = FieldDef(self.new_id("fld"), name, type_, self._field_options(tbl, name, type_, options))
        fdef.description = spec.get("description")
        tbl.fields[fdef.id] = fdef
        return fdef

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

    def _records_route(self, req: Request, tbl: TableData, rest: list[str]) -> Response:
        method = req.method
        if not rest:
            if method == "GET":
                return self._list(tbl, _query_list_params(req))
            if method == "POST":
                return self._create(tbl, _body_object(req))
            if method in ("PATCH", "PUT"):
                return self._update(tbl, _body_object(req), destructive=method == "PUT")
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
                resp = self._update(tbl, payload, destructive=method == "PUT", single=True)
                return resp
            if method == "DELETE":
                with self._lock:
                    self._record(tbl, record_id)
                    del tbl.records[record_id]
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

    def _values_with_computed(self, tbl: TableData, rec: RecordData) -> dict[str, Any]:
        values = dict(rec.values)
        for fdef in tbl.fields.values():
            if fdef.type == "createdTime":
                values[fdef.id] = rec.created_time
            elif fdef.type == "formula":
                node = compile_formula(fdef.options["formula"])
                result = evaluate(node, self._context(tbl, rec, values))
                values[fdef.id] = _formula_output(result)
        return values

    def _context(self, tbl: TableData, rec: RecordData, values: dict[str, Any] | None = None) -> EvalContext:
        values = values if values is not None else rec.values
        by_name: dict[str, Any] = {}
        for fdef in tbl.fields.values():
            value = values.get(fdef.id)
            if value is not None and fdef.type in ("date", "dateTime", "createdTime"):
                value = parse_datetime(value)
            by_name[fdef.name] = value
        return EvalContext(by_name, rec.id, parse_datetime(rec.created_time))

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

    def _create(self, tbl: TableData, body: dict[str, Any]) -> Response:
        typecast = bool(body.get("typecast"))
        by_id = bool(body.get("returnFieldsByFieldId"))
        single = "records" not in body
        items = [{"fields": body.get("fields", {})}] if single else _record_items(body)
        prepared = [self._prepare(tbl, _item_fields(item), typecast) for item in items]
        self._wait_for_held_writes()
        created = []
        with self._lock:
            for values in prepared:
                rec = RecordData(self.new_id("rec"), _now_iso(), values)
                tbl.records[rec.id] = rec
                created.append(rec)
            self._commit_choices(tbl, prepared)
        out = [self._record_json(tbl, rec, by_id) for rec in created]
        return json_response(200, out[0] if single else {"records": out})

    def _update(self, tbl: TableData, body: dict[str, Any], destructive: bool, single: bool = False) -> Response:
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
            for record_id, values in plan:
                if record_id is None:
                    rec = RecordData(self.new_id("rec"), _now_iso(), values)
                    tbl.records[rec.id] = rec
                    created_ids.append(rec.id)
                else:
                    rec = tbl.records[record_id]
                    merged = values if destructive else {**rec.values, **values}
                    rec.values = {k: v for k, v in merged.items() if not _is_empty(v)}
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
            out[fdef.id] = _convert(fdef, value, typecast)
        return out

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
            for record_id in ids:
                tbl.records.pop(record_id, None)
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
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
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


def _check_choice(fdef: FieldDef, name: str, typecast: bool) -> None:
    if typecast or any(c["name"] == name for c in fdef.options.get("choices", [])):
        return
    raise _err(
        422,
        "INVALID_MULTIPLE_CHOICE_OPTIONS",
        f'Insufficient permissions to create new select option ""{name}""',
    )
