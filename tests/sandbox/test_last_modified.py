"""LAST_MODIFIED_TIME() and the "last modified time" field: each record keeps when each field was last written."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pyairtable
import pytest

from leadkit_sandbox.formula import EvalContext, FormulaError, compile_formula, evaluate
from leadkit_sandbox.server import Sandbox

T1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


def _ctx(**modified: datetime) -> EvalContext:
    return EvalContext({"Name": "x", "Score": 1}, "rec1", T1, modified_times=modified)


def test_formula_returns_the_latest_write_overall_or_of_named_fields() -> None:
    ctx = _ctx(Name=T2, Score=T1)
    assert evaluate(compile_formula("LAST_MODIFIED_TIME()"), ctx) == T2
    assert evaluate(compile_formula("LAST_MODIFIED_TIME({Score})"), ctx) == T1
    assert evaluate(compile_formula("LAST_MODIFIED_TIME({Score}, {Name})"), ctx) == T2
    assert evaluate(compile_formula("IS_AFTER(LAST_MODIFIED_TIME(), '2026-01-01T12:00:00.000Z')"), ctx) is True
    assert evaluate(compile_formula("DATETIME_DIFF(LAST_MODIFIED_TIME(), CREATED_TIME(), 'hours')"), ctx) == 24
    # Never written: blank, and a date function of a blank is an error (no match), not a date.
    assert evaluate(compile_formula("LAST_MODIFIED_TIME()"), _ctx()) is None
    assert evaluate(compile_formula("IS_AFTER(LAST_MODIFIED_TIME(), '2000-01-01')"), _ctx()) is None


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("LAST_MODIFIED_TIME('Name')", "only field references"),
        ("LAST_MODIFIED_TIME({Name} & 'x')", "Expected ','"),
        ("LAST_MODIFIED_TIME({Name}", "Expected ','"),
        ("LAST_MODIFIED_TIME({Nope})", "Unknown field names: Nope"),
    ],
)
def test_formula_arguments_must_be_known_field_references(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        compile_formula(formula, ["Name", "Score"])


TRACKED_FIELDS: list[dict[str, Any]] = [
    {"name": "Name", "type": "singleLineText"},
    {"name": "Score", "type": "number"},
    {"name": "Notes", "type": "multilineText"},
    {"name": "Changed", "type": "lastModifiedTime"},
    {"name": "Score Changed", "type": "lastModifiedTime", "options": {"referencedFieldIds": ["Score"]}},
]


@pytest.fixture
def tracked(sandbox: Sandbox, api: pyairtable.Api) -> pyairtable.Table:
    base = sandbox.airtable.create_base("Globex-Tracking", [{"name": "Leads", "fields": TRACKED_FIELDS}])
    return api.table(base, "Leads")


def _ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


def _tick() -> None:
    """Let the sandbox's millisecond clock move on."""
    time.sleep(0.01)


def test_filter_finds_only_records_changed_since_a_time(tracked: pyairtable.Table) -> None:
    a, b = tracked.batch_create([{"Name": "a", "Score": 1}, {"Name": "b", "Score": 2}])
    cutoff = max(a["createdTime"], b["createdTime"])
    _tick()
    tracked.update(b["id"], {"Name": "b2"})
    after = f"IS_AFTER(LAST_MODIFIED_TIME(), '{cutoff}')"
    assert _ids(tracked.all(formula=after)) == {b["id"]}
    # Only Name changed on b: the Score's own time is still its creation time.
    assert tracked.all(formula=f"IS_AFTER(LAST_MODIFIED_TIME({{Score}}), '{cutoff}')") == []
    diff = "DATETIME_DIFF(LAST_MODIFIED_TIME(), CREATED_TIME(), 'milliseconds') > 0"
    assert _ids(tracked.all(formula=diff)) == {b["id"]}
    assert _ids(tracked.all(formula="LAST_MODIFIED_TIME() = CREATED_TIME()")) == {a["id"]}


def test_upsert_and_destructive_update_count_as_changes(tracked: pyairtable.Table) -> None:
    a, b, c = tracked.batch_create([{"Name": "a", "Notes": "n"}, {"Name": "b"}, {"Name": "c"}])
    cutoff = max(r["createdTime"] for r in (a, b, c))
    _tick()
    tracked.batch_upsert([{"fields": {"Name": "a", "Score": 5}}], key_fields=["Name"])
    tracked.update(b["id"], {"Name": "b"}, replace=True)
    changed = tracked.all(formula=f"IS_AFTER(LAST_MODIFIED_TIME(), '{cutoff}')")
    assert _ids(changed) == {a["id"], b["id"]}
    # The PUT wrote Name and cleared nothing else on b; on a, the upsert wrote Name and Score, not Notes.
    notes_changed = tracked.all(formula=f"IS_AFTER(LAST_MODIFIED_TIME({{Notes}}), '{cutoff}')")
    assert notes_changed == []
    _tick()
    tracked.update(a["id"], {"Name": "a"}, replace=True)  # clears Notes and Score
    notes_changed = tracked.all(formula=f"IS_AFTER(LAST_MODIFIED_TIME({{Notes}}), '{cutoff}')")
    assert _ids(notes_changed) == {a["id"]}


def test_record_created_blank_has_no_last_modified_time(tracked: pyairtable.Table) -> None:
    blank = tracked.create({})
    assert "Changed" not in blank["fields"]
    assert tracked.all(formula="IS_AFTER(LAST_MODIFIED_TIME(), '2000-01-01')") == []
    assert _ids(tracked.all(formula="LAST_MODIFIED_TIME() = BLANK()")) == {blank["id"]}


def test_last_modified_time_field_reads_the_times_and_is_read_only(tracked: pyairtable.Table) -> None:
    rec = tracked.create({"Name": "a", "Score": 1})
    assert rec["fields"]["Changed"] == rec["createdTime"]
    assert rec["fields"]["Score Changed"] == rec["createdTime"]
    _tick()
    later = tracked.update(rec["id"], {"Name": "a2"})
    assert later["fields"]["Changed"] > rec["createdTime"]
    assert later["fields"]["Score Changed"] == rec["createdTime"]
    newest = tracked.all(sort=["-Changed"])[0]
    assert newest["id"] == rec["id"]
    with pytest.raises(Exception, match="computed"):
        tracked.update(rec["id"], {"Changed": "2026-01-01T00:00:00.000Z"})


def test_last_modified_time_field_schema_and_bad_references(
    tracked: pyairtable.Table, http: httpx.Client, sandbox: Sandbox
) -> None:
    fields = {f.name: f for f in tracked.schema().fields}
    score_id = fields["Score"].id
    assert fields["Score Changed"].type == "lastModifiedTime"
    options = http.get(f"/v0/meta/bases/{tracked.base.id}/tables").json()["tables"][0]["fields"][4]["options"]
    assert options["referencedFieldIds"] == [score_id]
    assert options["result"]["type"] == "dateTime"
    bad = http.post(
        f"/v0/meta/bases/{tracked.base.id}/tables/Leads/fields",
        json={"name": "Bad", "type": "lastModifiedTime", "options": {"referencedFieldIds": ["Nope"]}},
    )
    assert bad.status_code == 422
    assert "Nope" in bad.json()["error"]["message"]
