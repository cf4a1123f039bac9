"""The formula evaluator alone, and filterByFormula through pyairtable's own formula builders."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pyairtable
import pytest
from pyairtable import formulas as F
from requests import HTTPError

from leadkit_sandbox.formula import EvalContext, FormulaError, compile_formula, evaluate, is_truthy, matches

NOW = datetime(2025, 9, 25, 20, 18, 45, tzinfo=UTC)
FIELDS: dict[str, Any] = {
    "Name": "O'Brien",
    "Path": "C:\\runs\\a",
    "Braces": "{x}",
    "Score": 5,
    "Cost": 2.5,
    "Text Num": "7",
    "Done": True,
    "Empty": None,
    "When": datetime(2025, 9, 20, 8, 0, tzinfo=UTC),
    "Tags": ["a", "b"],
    "x}y": "odd name",
}


def ev(text: str, fields: dict[str, Any] | None = None) -> Any:
    ctx = EvalContext(FIELDS if fields is None else fields, "recAAAAAAAAAAAAAA", NOW, NOW)
    return evaluate(compile_formula(text), ctx)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("{Name}='O\\'Brien'", True),
        ('{Name}="O\'Brien"', True),
        ("{Name}='o\\'brien'", False),  # comparisons are case-sensitive
        ("{Path}='C:\\\\runs\\\\a'", True),
        ("{Braces}='{x}'", True),
        ("{x\\}y}='odd name'", True),
        ("{Score}=5", True),
        ("{Score}!=5", False),
        ("{Score}>4.5", True),
        ("{Score}<=5", True),
        ("{Score}>=6", False),
        ("{Cost}<3", True),
        ("{Text Num}=7", True),  # a numeric string compares as a number
        ("{Score}='5'", True),
        ("{Done}=TRUE()", True),
        ("{Done}", True),
        ("{Empty}=BLANK()", True),
        ("{Empty}=''", True),
        ("{Empty}=0", True),  # a blank cell equals 0, as in Airtable
        ("{Empty}=FALSE()", True),
        ("NOT({Empty})", True),
        ("{Name}&'-'&{Score}", "O'Brien-5"),
        ("{Score}*2+1", 11),
        ("-{Score}", -5),
        ("({Score}+1)/4", 1.5),
        ("AND({Score}=5, {Done}, NOT({Empty}))", True),
        ("OR({Score}=1, {Name}='x')", False),
        ("IF({Score}>3, 'big', 'small')", "big"),
        ("IF({Score}>9, 'big')", None),
        ("FIND('Bri', {Name})", 3),
        ("FIND('zzz', {Name})", 0),
        ("SEARCH('bri', {Name})", 3),
        ("LOWER({Name})", "o'brien"),
        ("UPPER({Name})", "O'BRIEN"),
        ("LEN({Name})", 7),
        ("TRIM('  a ')", "a"),
        ("CONCATENATE({Name}, '!')", "O'Brien!"),
        ("{Tags}='a, b'", True),
        ("TRUE()", True),
        ("FALSE()", False),
        ("RECORD_ID()='recAAAAAAAAAAAAAA'", True),
        ("IS_AFTER({When}, DATETIME_PARSE('2025-09-01'))", True),
        ("IS_BEFORE({When}, DATETIME_PARSE('2025-09-01'))", False),
        ("IS_AFTER(NOW(), {When})", True),
        ("IS_AFTER({When}, DATEADD(NOW(), -7, 'days'))", True),
        ("IS_AFTER({When}, DATEADD(NOW(), -3, 'days'))", False),
        ("DATETIME_DIFF(NOW(), {When}, 'days')", 5),
        ("DATETIME_DIFF(NOW(), {When}, 'hours')", 132),
        ("DATETIME_PARSE('25/09/2025', 'DD/MM/YYYY')=DATETIME_PARSE('2025-09-25')", True),
        ("DATETIME_FORMAT(DATEADD({When}, 1, 'months'), 'YYYY-MM-DD')", "2025-10-20"),
        ("IS_SAME({When}, '2025-09-20', 'day')", True),
        ("{When}=DATETIME_PARSE('2025-09-20T08:00:00.000Z')", True),
        ("IS_AFTER({Empty}, NOW())", None),  # an error: the record does not match
        ("1/0", None),
        ("ISERROR(1/0)", True),
        ("ROUND(2.345, 2)", 2.35),
        ("VALUE('$1,234')", 1234),
    ],
)
def test_evaluates(formula: str, expected: Any) -> None:
    assert ev(formula) == expected


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("FOO({Name})", "Unknown function names: FOO"),
        ("ENCODE_URL_COMPONENT({Name})", "Unknown function names: ENCODE_URL_COMPONENT"),
        ("REGEX_MATCH({Name}, 'x')", "REGEX_MATCH"),
        ("{Name}='unterminated", "Unterminated string"),
        ("{Name", "Unterminated field reference"),
        ("{Name}=", "ends too early"),
        ("({Name}='x'", "Expected ')'"),
        ("{Name}='x')", "Unexpected"),
        ("", "empty"),
        ("{Name} # 1", "Unexpected character"),
        ("IF(1)", "IF() at character 1 got 1 arguments"),
    ],
)
def test_rejects(formula: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_formula(formula)


def test_unknown_field_rejected_when_fields_known() -> None:
    with pytest.raises(FormulaError, match="Unknown field names: Nmae"):
        compile_formula("{Nmae}='x'", ["Name"])
    compile_formula("{Name}='x'", ["Name"])


def test_field_name_without_braces() -> None:
    """Airtable reads a one-word name without braces as that field (pyairtable's own suite filters this way)."""
    node = compile_formula("Name != 'x' & '' ", ["Name"])
    assert evaluate(node, EvalContext({"Name": "y"})) is True
    assert evaluate(compile_formula("AND(Name, Score > 1)", ["Name", "Score"]), EvalContext({"Name": "a", "Score": 2}))
    with pytest.raises(FormulaError, match="Unknown field names: Nmae"):
        compile_formula("Nmae = 'x'", ["Name"])


@pytest.mark.parametrize("value", [0, 0.0, False, "", None, [], float("nan")])
def test_falsy_results(value: Any) -> None:
    assert not is_truthy(value)


def test_matches_treats_errors_as_no_match() -> None:
    ctx = EvalContext({"N": "abc"})
    assert not matches(compile_formula("{N}*2"), ctx)
    assert matches(compile_formula("{N}&'x'"), ctx)


@pytest.mark.parametrize(
    "value",
    ["O'Brien", 'say "hi"', "back\\slash", "both \\' and '\\", "{braces}", "}{", "new\nline", "Acme-Co & sons"],
)
def test_pyairtable_quoted_values_round_trip(value: str) -> None:
    fields = {"Client ID": value}
    assert ev(str(F.match({"Client ID": value})), fields) is True
    assert ev(F.to_formula_str(F.EQ(F.Field("Client ID"), value)), fields) is True
    assert ev(F.field_name("Client ID") + " = " + F.quoted(value), fields) is True
    assert ev(str(F.match({"Client ID": value + "x"})), fields) is False


def test_pyairtable_field_name_with_brace() -> None:
    assert ev(str(F.match({"a}b": "v"})), {"a}b": "v"}) is True


def test_pyairtable_builders() -> None:
    fields = {"Score": 5, "When": datetime(2025, 9, 20, tzinfo=UTC), "Done": True, "Name": "Ada"}
    assert ev(str(F.match({"Score": (">=", 5), "Done": True}, match_any=False)), fields) is True
    assert ev(str(F.match({"When": datetime(2025, 9, 20, tzinfo=UTC)})), fields) is True
    assert ev(str(F.IS_AFTER(F.Field("When"), date(2025, 9, 1))), fields) is True
    assert ev(str(F.Field("Name").eq("Ada") & ~F.Field("Score").gt(9)), fields) is True
    assert ev(str(F.OR(F.Field("Score").lt(1), F.FIND("d", F.Field("Name")))), fields) is True


# ------------------------------------------------------------------------- through the HTTP API


@pytest.fixture
def tricky_table(table: pyairtable.Table) -> pyairtable.Table:
    table.batch_create(
        [
            {"Client ID": "O'Brien", "Score": 1},
            {"Client ID": "back\\slash", "Score": 2},
            {"Client ID": "{braces}", "Score": 3},
            {"Client ID": 'say "hi"', "Score": 4},
            {"Client ID": "plain", "Score": 5, "Last Run": "2025-09-20T08:00:00.000Z"},
        ]
    )
    return table


@pytest.mark.parametrize("value", ["O'Brien", "back\\slash", "{braces}", 'say "hi"', "plain"])
def test_filter_by_formula_matches_literally(tricky_table: pyairtable.Table, value: str) -> None:
    recs = tricky_table.all(formula=F.match({"Client ID": value}))
    assert [r["fields"]["Client ID"] for r in recs] == [value]


def test_filter_by_formula_dates_and_numbers(tricky_table: pyairtable.Table) -> None:
    recs = tricky_table.all(formula=F.IS_AFTER(F.Field("Last Run"), datetime(2025, 9, 1, tzinfo=UTC)))
    assert [r["fields"]["Client ID"] for r in recs] == ["plain"]
    recs = tricky_table.all(formula=F.AND(F.GT(F.Field("Score"), 1), F.LT(F.Field("Score"), 4)), sort=["-Score"])
    assert [r["fields"]["Score"] for r in recs] == [3, 2]
    recs = tricky_table.all(formula="RECORD_ID()!=''", max_records=2)
    assert len(recs) == 2


def test_unsupported_function_is_422_not_a_match(tricky_table: pyairtable.Table) -> None:
    with pytest.raises(HTTPError) as info:
        tricky_table.all(formula="REGEX_MATCH({Client ID}, 'O.*')")
    assert info.value.response.status_code == 422
    error = info.value.response.json()["error"]
    assert error["type"] == "INVALID_FILTER_BY_FORMULA"
    assert "REGEX_MATCH" in error["message"]


def test_unknown_field_in_formula_is_422(http: httpx.Client, base_id: str) -> None:
    resp = http.get(f"/v0/{base_id}/Leads", params={"filterByFormula": "{Nmae}='x'"})
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "INVALID_FILTER_BY_FORMULA"
    assert "Nmae" in resp.json()["error"]["message"]
