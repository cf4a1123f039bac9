"""Schema check and provisioning of Airtable bases through the meta API.

`check_schema` compares a base with the spec in `schema.py` and lists every missing table, field and select
option (and fields of another type) with what to do about it; `provision` creates the missing tables and
fields. Airtable's meta API cannot add options to an existing select field, so those stay in the check's list
with the manual fix (the diagnosis wires the check into `leadkit doctor`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pyairtable import Api

from leadkit.errors import ConfigError
from leadkit.store.airtable.api import validate_base_id
from leadkit.store.schema import BaseKind, FieldType, TableSpec, tables_for

ProblemKind = Literal["missing_table", "missing_field", "missing_option", "wrong_type"]

#: Field types Airtable reports that leadkit can read as the type it wants.
_COMPATIBLE: dict[FieldType, set[str]] = {
    FieldType.TEXT: {"singleLineText", "multilineText", "email", "url", "phoneNumber", "richText"},
    FieldType.LONG_TEXT: {"multilineText", "richText", "singleLineText"},
    FieldType.NUMBER: {"number", "currency", "percent", "count", "autoNumber"},
    FieldType.SELECT: {"singleSelect"},
    FieldType.DATETIME: {"dateTime", "date", "createdTime", "lastModifiedTime"},
    FieldType.CHECKBOX: {"checkbox"},
}


@dataclass(frozen=True)
class SchemaProblem:
    kind: ProblemKind
    base_id: str
    table: str
    field: str = ""
    option: str = ""
    detail: str = ""
    fix: str = ""

    def describe(self) -> str:
        if self.kind == "missing_table":
            what = f"table {self.table!r} is missing"
        elif self.kind == "missing_field":
            what = f"table {self.table!r} has no field {self.field!r}"
        elif self.kind == "missing_option":
            what = f"field {self.field!r} of table {self.table!r} has no select option {self.option!r}"
        else:
            what = f"field {self.field!r} of table {self.table!r} {self.detail}"
        return f"{what} ({self.fix})"

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "base_id": self.base_id,
            "table": self.table,
            "field": self.field,
            "option": self.option,
            "fix": self.fix,
        }


def _validated(base_id: str) -> str:
    return validate_base_id(base_id, what="base")


def _tables(api: Api, base_id: str) -> list[dict[str, Any]]:
    data = api.get(api.build_url("meta/bases", base_id, "tables"))
    if not isinstance(data, dict) or not isinstance(data.get("tables"), list):
        raise ConfigError(
            f"the meta API answered for base {base_id} without a list of tables",
            hint="Check AIRTABLE_ENDPOINT_URL: it should be the API root, e.g. https://api.airtable.com.",
        )
    return list(data["tables"])


def _choices(field: dict[str, Any]) -> set[str]:
    options = field.get("options") or {}
    return {str(c.get("name")) for c in options.get("choices") or [] if isinstance(c, dict)}


def _table_problems(base_id: str, spec: TableSpec, table: dict[str, Any] | None) -> list[SchemaProblem]:
    provision = f"run `leadkit airtable provision --base {base_id}`"
    if table is None:
        return [SchemaProblem("missing_table", base_id, spec.name, fix=provision)]
    have = {str(f.get("name")): f for f in table.get("fields") or []}
    problems: list[SchemaProblem] = []
    for field in spec.fields:
        existing = have.get(field.name)
        if existing is None:
            if field.optional:  # read as blank, written only when set: a base without it still works
                continue
            problems.append(SchemaProblem("missing_field", base_id, spec.name, field.name, fix=provision))
            continue
        kind = str(existing.get("type", ""))
        if kind not in _COMPATIBLE[field.type]:
            problems.append(
                SchemaProblem(
                    "wrong_type",
                    base_id,
                    spec.name,
                    field.name,
                    detail=f"is {kind}, leadkit writes {field.type.value}",
                    fix=f"change the field's type to {field.type.value} in Airtable",
                )
            )
            continue
        if field.type is FieldType.SELECT:
            present = _choices(existing)
            for option in field.choices:
                if option not in present:
                    problems.append(
                        SchemaProblem(
                            "missing_option",
                            base_id,
                            spec.name,
                            field.name,
                            option,
                            fix=f"add the option {option!r} to the field in Airtable (the API cannot add options)",
                        )
                    )
    return problems


def check_schema(api: Api, base_id: str, kind: BaseKind) -> list[SchemaProblem]:
    """Every table, field and select option of the `kind` spec that base `base_id` lacks (empty: all there)."""
    base_id = _validated(base_id)
    by_name = {str(t.get("name")): t for t in _tables(api, base_id)}
    problems: list[SchemaProblem] = []
    for spec in tables_for(kind):
        problems.extend(_table_problems(base_id, spec, by_name.get(spec.name)))
    return problems


def provision(api: Api, base_id: str, kind: BaseKind) -> list[str]:
    """Create the missing tables and fields of the `kind` spec in base `base_id`; what was created, in order.

    Existing tables and fields are never changed. Select options missing from an existing field are left to
    `check_schema`'s list (the meta API cannot add them).
    """
    base_id = _validated(base_id)
    by_name = {str(t.get("name")): t for t in _tables(api, base_id)}
    created: list[str] = []
    for spec in tables_for(kind):
        table = by_name.get(spec.name)
        if table is None:
            api.post(
                api.build_url("meta/bases", base_id, "tables"),
                json={"name": spec.name, "fields": [f.meta() for f in spec.fields]},
            )
            created.append(f"table {spec.name!r} with {len(spec.fields)} fields")
            continue
        have = {str(f.get("name")) for f in table.get("fields") or []}
        for field in spec.fields:
            if field.name in have:
                continue
            api.post(api.build_url("meta/bases", base_id, "tables", str(table["id"]), "fields"), json=field.meta())
            created.append(f"field {field.name!r} in table {spec.name!r}")
    return created
