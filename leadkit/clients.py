"""Client settings as people write them, in a CSV or on the command line: one spec per setting of `Client`.

The specs are derived from the `Client` dataclass, so a setting added there (a spend cap, say) is importable from a
CSV and settable with `leadkit clients set` without touching this module; the known ones carry their accepted
values and bounds. Values match ignoring case (`Yes`, `yes`, `true` and `1` alike); an update changes only the
settings given.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadkit.errors import DataError
from leadkit.models import Client

if typing.TYPE_CHECKING:
    from leadkit.store.base import Store

__all__ = [
    "NEW_CLIENT_DEFAULTS",
    "ClientRow",
    "FieldChange",
    "Setting",
    "apply_settings",
    "save_clients",
    "client_settings",
    "field_changes",
    "read_clients_csv",
    "setting_for_column",
]

#: What a client created from the command line or a CSV gets for a setting not given (a client that harvests).
NEW_CLIENT_DEFAULTS: dict[str, Any] = {"service_level": 2, "post_access": True, "daily_target": 20}

#: Statuses a user sets (`Inactive` is what `clients remove --keep-records` leaves: hidden, records kept).
SETTABLE_STATUSES = ("Active", "Paused")
REMOVED_STATUS = "Inactive"

_TRUE = {"yes", "y", "true", "t", "1", "on"}
_FALSE = {"no", "n", "false", "f", "0", "off"}
_BASE_ID = re.compile(r"app[A-Za-z0-9]{14}")


@dataclass(frozen=True)
class Setting:
    """One client setting: its `Client` attribute, its CSV column (and `--option`), what it accepts."""

    field: str
    column: str
    help: str
    accepted: str
    parse: Callable[[str], Any]
    aliases: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--" + self.column.replace("_", "-")


def _int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        match = re.fullmatch(r"\s*(\d+)(?:\.0*)?\s*", text) or re.match(r"\s*(\d+)-", text)
        if match is None or int(match.group(1)) < minimum:
            raise ValueError
        return int(match.group(1))

    return parse


def _float(text: str) -> float:
    value = float(text.strip())
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError


def _status(text: str) -> str:
    for status in SETTABLE_STATUSES:
        if text.strip().lower() == status.lower():
            return status
    raise ValueError


def _base_id(text: str) -> str:
    if _BASE_ID.fullmatch(text.strip()) is None:
        raise ValueError
    return text.strip()


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError
    return text.strip()


_KNOWN: dict[str, tuple[str, str, str, Callable[[str], Any]]] = {
    # field: (column, help, accepted, parse)
    "name": ("name", "The client's name.", "any non-empty text", _text),
    "status": ("status", "Active or Paused (only Active clients are run).", "Active or Paused", _status),
    "service_level": (
        "service_level",
        "1 = lead scoring only; 2 or more adds post harvesting.",
        "a whole number from 1 (or the select's text, e.g. 2-Lead Scoring + Post Scoring)",
        _int(1),
    ),
    "post_access": (
        "post_access",
        "May Apify harvest posts for this client? yes or no.",
        "yes or no (also true/false, 1/0)",
        _bool,
    ),
    "daily_target": ("daily_target", "Posts Daily Target.", "a whole number from 0", _int(0)),
    "batch_size": ("batch_size", "Leads Batch Size for Post Collection.", "a whole number from 1", _int(1)),
    "max_batches": ("max_batches", "Max Post Batches Per Day Guardrail.", "a whole number from 1", _int(1)),
    "stream": ("stream", "Processing Stream.", "a whole number from 1", _int(1)),
    "base_id": (
        "base",
        "The client's own Airtable base ID (Airtable store).",
        "an Airtable base ID (app followed by 14 letters and digits), or blank",
        _base_id,
    ),
}


def _generic(field: dataclasses.Field[Any], hint: Any) -> tuple[str, str, str, Callable[[str], Any]]:
    """A spec for a setting this module does not know by name, from its type."""
    label = field.name.replace("_", " ")
    if hint is bool:
        return field.name, label, "yes or no", _bool
    if hint is int:
        return field.name, label, "a whole number from 0", _int(0)
    if hint is float:
        return field.name, label, "a number from 0", _float
    return field.name, label, "text", _text


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _schema_aliases() -> dict[str, str]:
    """Airtable field names (`Posts Daily Target`) as aliases of the settings they hold."""
    from leadkit.csvfiles import normalize_header
    from leadkit.store.schema import Clients

    out = {}
    for attr, value in vars(Clients).items():
        if attr.isupper() and attr != "TABLE" and isinstance(value, str):
            out[normalize_header(value)] = "name" if attr == "CLIENT_NAME" else attr.lower()
    return out


def client_settings() -> list[Setting]:
    """Every setting of a client but its ID, in the order of `Client`'s fields."""
    hints = typing.get_type_hints(Client)
    aliases = _schema_aliases()
    out = []
    for field in dataclasses.fields(Client):
        if field.name == "client_id":
            continue
        hint, optional = _unwrap_optional(hints[field.name])
        column, help_text, accepted, parse = _KNOWN.get(field.name) or _generic(field, hint)
        if optional and field.name != "name":
            parse = _blank_is_none(parse)
        names = tuple(sorted({a for a, f in aliases.items() if f == field.name} | {field.name} - {column}))
        out.append(Setting(field.name, column, help_text, accepted, parse, names))
    return out


def _blank_is_none(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_optional(text: str) -> Any:
        return None if not text.strip() or text.strip().lower() in ("none", "null", "-") else parse(text)

    return parse_optional


def setting_for_column(column: str) -> Setting | None:
    """The setting a (normalised) CSV column names, by its column name or an alias."""
    for setting in client_settings():
        if column == setting.column or column in setting.aliases:
            return setting
    return None


def parse_value(setting: Setting, text: str, *, where: str) -> Any:
    """The value of `setting` written as `text`, or a DataError naming `where` (the option, or the row and
    column), the value and what is accepted."""
    try:
        return setting.parse(text)
    except (ValueError, TypeError):
        raise DataError(f"{where} {text!r} is not accepted; use {setting.accepted}") from None


def apply_settings(client_id: str, current: Client | None, changes: Mapping[str, Any]) -> Client:
    """The client with `changes` (field -> value) applied: an existing client keeps every setting not given; a new
    one gets NEW_CLIENT_DEFAULTS, then the dataclass defaults, and must have a name."""
    if current is not None:
        return dataclasses.replace(current, **changes)
    if not changes.get("name"):
        raise DataError(f"client {client_id!r} does not exist yet: give its name (--name, or a name column)")
    return Client(client_id=client_id, **{**NEW_CLIENT_DEFAULTS, **changes})


def save_clients(store: Store, clients: typing.Sequence[Client]) -> None:
    """Write these clients (an import's added and updated ones): in requests of 10 on a store that batches
    (Airtable), else one by one. Each write carries the client's every setting, so after a failure part way the
    same import run again finishes it, creating nothing twice."""
    many = getattr(store, "save_clients", None)
    if many is not None:
        many(list(clients))
        return
    for client in clients:
        store.save_client(client)


@dataclass(frozen=True)
class FieldChange:
    """One setting an import changes: its CSV column, the value before (None for a new client's settings) and
    after, both as `clients --json` writes them (`post_access` yes/no, a blank setting None)."""

    column: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.column, "old": self.old, "new": self.new}


def _as_written(client: Client) -> dict[str, Any]:
    """Every setting of `client` by its CSV column, as `clients --json` writes it."""
    shown = client.to_dict()
    out = {}
    for setting in client_settings():
        out[setting.column] = shown.get(setting.field, getattr(client, setting.field))
    return out


def field_changes(before: Client | None, after: Client) -> list[FieldChange]:
    """The settings that differ between `before` and `after`, in the order of `Client`'s fields; for a new client
    (`before` None) every setting it gets, with old None."""
    new = _as_written(after)
    if before is None:
        return [FieldChange(column, None, value) for column, value in new.items()]
    old = _as_written(before)
    return [FieldChange(column, old[column], new[column]) for column in new if old[column] != new[column]]


@dataclass
class ClientRow:
    line: int
    client_id: str
    changes: dict[str, Any]


def read_clients_csv(path: Path) -> tuple[list[ClientRow], list[str], str | None]:
    """Rows of a clients CSV (`client_id` required; `name` required for new clients, checked by the caller), the
    errors (one line each: row, column, value, what is accepted) and a note on the encoding. Blank cells leave a
    setting as it is."""
    from leadkit.csvfiles import read_csv
    from leadkit.errors import InvalidClientId
    from leadkit.runids import validate_client_id

    table = read_csv(path, required=("client_id",), what="CSV with at least the columns client_id and name")
    columns: dict[str, Setting] = {}
    unknown = []
    for key, raw in table.headers.items():
        if key == "client_id":
            continue
        setting = setting_for_column(key)
        if setting is None:
            unknown.append(raw)
        else:
            columns[key] = setting
    if unknown:
        accepted = ", ".join(["client_id", *(s.column for s in client_settings())])
        raise DataError(f"{path}: column(s) {', '.join(unknown)} are not client settings; accepted: {accepted}")
    rows: list[ClientRow] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for line, values in table.rows:
        client_id = values.get("client_id", "")
        try:
            validate_client_id(client_id)
        except InvalidClientId as exc:
            errors.append(f"row {line}: client_id {client_id!r} is not accepted: {exc.message}")
            continue
        if client_id in seen:
            errors.append(f"row {line}: client_id {client_id!r} already given on row {seen[client_id]}")
            continue
        seen[client_id] = line
        changes: dict[str, Any] = {}
        for key, setting in columns.items():
            text = values.get(key, "")
            if not text:
                continue  # blank: leave it as it is
            try:
                changes[setting.field] = parse_value(setting, text, where=f"row {line}: {setting.column}")
            except DataError as exc:
                errors.append(exc.message)
        rows.append(ClientRow(line, client_id, changes))
    return rows, errors, table.note
