"""The Airtable behaviours pyairtable's own integration suite needs: links, lookups, error cells, comments, base
collaborators, and the remaining field types, each as Airtable has it."""

from __future__ import annotations

from typing import Any

import httpx
import pyairtable
import pytest
from requests import HTTPError

from leadkit_sandbox.airtable import user_of
from leadkit_sandbox.server import Sandbox

from .conftest import TOKEN

COMPANIES, PEOPLE = "tblCompanies00001", "tblPeople00000001"


@pytest.fixture
def crm(sandbox: Sandbox) -> dict[str, Any]:
    """A base with People and Companies, People linking to Companies (and to itself), and what reads links (made in
    process: the Web API cannot create count, lookup, rollup or autoNumber fields)."""
    link = "multipleRecordLinks"
    base = sandbox.airtable.create_base(
        "Initech-CRM",
        [
            {"id": COMPANIES, "name": "Companies", "fields": [{"name": "Name", "type": "singleLineText"}]},
            {
                "id": PEOPLE,
                "name": "People",
                "fields": [
                    {"name": "Name", "type": "singleLineText"},
                    {"name": "Int", "type": "formula", "options": {"formula": "1 + 2"}},
                    {"name": "Broken", "type": "formula", "options": {"formula": "ERROR()"}},
                    {"name": "NaN", "type": "formula", "options": {"formula": "SQRT(-1)"}},
                    {"name": "No", "type": "autoNumber"},
                    {"name": "Owner", "type": "singleCollaborator"},
                    {"name": "Files", "type": "multipleAttachments"},
                    {"name": "Stars", "type": "rating", "options": {"max": 5}},
                    {"name": "Code", "type": "barcode"},
                    {"name": "Took", "type": "duration"},
                    {"name": "By", "type": "createdBy"},
                    {"name": "Changed By", "type": "lastModifiedBy"},
                    {"name": "Employer", "type": link, "options": {"linkedTableId": COMPANIES}},
                    {"name": "Buddy", "type": link, "options": {"linkedTableId": PEOPLE}},
                    {"name": "Buddies", "type": "count", "options": {"recordLinkFieldId": "Buddy"}},
                    {
                        "name": "Buddy Int",
                        "type": "multipleLookupValues",
                        "options": {"recordLinkFieldId": "Buddy", "fieldIdInLinkedTable": "Int"},
                    },
                    {
                        "name": "Buddy Broken",
                        "type": "multipleLookupValues",
                        "options": {"recordLinkFieldId": "Buddy", "fieldIdInLinkedTable": "Broken"},
                    },
                    {
                        "name": "Buddy Sum",
                        "type": "rollup",
                        "options": {
                            "recordLinkFieldId": "Buddy",
                            "fieldIdInLinkedTable": "Int",
                            "formula": "SUM(values)",
                        },
                    },
                ],
            },
        ],
    )
    return {"base": base}


@pytest.fixture
def people(api: pyairtable.Api, crm: dict[str, Any]) -> pyairtable.Table:
    return api.table(crm["base"], "People")


@pytest.fixture
def companies(api: pyairtable.Api, crm: dict[str, Any]) -> pyairtable.Table:
    return api.table(crm["base"], "Companies")


def test_formula_error_and_nan_cells_read_as_airtable_writes_them(people: pyairtable.Table) -> None:
    rec = people.create({"Name": "Ann"})
    assert rec["fields"]["Int"] == 3
    assert rec["fields"]["Broken"] == {"error": "#ERROR!"}
    assert rec["fields"]["NaN"] == {"specialValue": "NaN"}
    # An error cell read by a filter is an error there too: no match, and ISERROR sees it.
    assert people.all(formula="{Broken} = ''") == []
    assert [r["id"] for r in people.all(formula="ISERROR({Broken})")] == [rec["id"]]


def test_links_keep_their_twin_in_step_and_refuse_missing_records(
    people: pyairtable.Table, companies: pyairtable.Table
) -> None:
    acme = companies.create({"Name": "Acme-Co"})
    ann = people.create({"Name": "Ann", "Employer": [acme["id"]]})
    assert companies.get(acme["id"])["fields"]["People"] == [ann["id"]]  # the twin, named after the table
    people.update(ann["id"], {"Employer": []})
    assert "People" not in companies.get(acme["id"])["fields"]
    people.update(ann["id"], {"Employer": [acme["id"]]})
    people.delete(ann["id"])
    assert "People" not in companies.get(acme["id"])["fields"]
    with pytest.raises(HTTPError, match="ROW_DOES_NOT_EXIST"):
        people.create({"Name": "Bob", "Employer": ["recNoSuchRecord00"]})
    assert people.all() == []


def test_count_lookup_and_rollup_read_through_a_link(people: pyairtable.Table) -> None:
    ann = people.create({"Name": "Ann"})
    assert ann["fields"]["Buddies"] == 0
    people.update(ann["id"], {"Buddy": [ann["id"]]})
    fields = people.get(ann["id"])["fields"]
    assert fields["Buddies"] == 1
    assert fields["Buddy Int"] == [3]
    assert fields["Buddy Broken"] == [{"error": "#ERROR!"}]
    assert fields["Buddy Sum"] == 3


def test_collaborators_attachments_and_other_types(people: pyairtable.Table, sandbox: Sandbox) -> None:
    me = user_of(TOKEN)
    first = people.create(
        {
            "Name": "Ann",
            "Owner": {"email": me["email"]},
            "Files": [
                {"url": "https://files.example/report.pdf"},
                {"url": "https://files.example/x", "filename": "a.png"},
            ],
            "Stars": 4,
            "Code": {"text": "4006381333931"},
            "Took": 90,
        }
    )
    fields = first["fields"]
    assert fields["Owner"] == me
    assert [(f["filename"], f.get("type")) for f in fields["Files"]] == [
        ("report.pdf", "application/pdf"),
        ("a.png", "image/png"),
    ]
    assert all(f["id"].startswith("att") and "size" not in f for f in fields["Files"])
    assert (fields["Stars"], fields["Code"], fields["Took"]) == (4, {"text": "4006381333931"}, 90)
    assert fields["By"] == me and fields["Changed By"] == me
    second = people.create({})
    assert second["fields"]["No"] == fields["No"] + 1
    assert "Changed By" not in second["fields"]  # nothing written yet
    for bad in ({"Owner": {"email": "nobody@sandbox.example"}}, {"Stars": 6}, {"Code": "123"}, {"No": 5}):
        with pytest.raises(HTTPError, match="422"):
            people.create({"Name": "x", **bad})


def test_record_comments(people: pyairtable.Table) -> None:
    rec = people.create({"Name": "Ann"})
    me = user_of(TOKEN)["id"]
    people.add_comment(rec["id"], f"Ping @[{me}]")
    people.add_comment(rec["id"], "Second")
    comments = people.comments(rec["id"])
    assert [c.text for c in comments] == ["Second", f"Ping @[{me}]"]  # newest first
    ping = comments[1]
    assert ping.author.id == me and ping.mentioned[me].id == me
    ping.text = "Never mind"
    ping.save()
    assert not ping.mentioned and ping.last_updated_time is not None
    ping.delete()
    assert [c.text for c in people.comments(rec["id"])] == ["Second"]
    with pytest.raises(HTTPError, match="404"):
        people.comments("recNoSuchRecord00")


def test_base_collaborators(api: pyairtable.Api, sandbox: Sandbox) -> None:
    base_id = sandbox.airtable.create_base(
        "Umbrella", [{"name": "T", "fields": [{"name": "A", "type": "singleLineText"}]}], token=TOKEN
    )
    info = api.base(base_id).collaborators()
    assert (info.id, info.name) == (base_id, "Umbrella")
    assert [c.user_id for c in info.individual_collaborators.via_base] == [user_of(TOKEN)["id"]]


def test_fixed_ids_only_in_process(sandbox: Sandbox, http: httpx.Client) -> None:
    spec = [
        {
            "id": "tblFixedTable0001",
            "name": "T",
            "fields": [{"id": "fldFixedField0001", "name": "A", "type": "singleLineText"}],
        }
    ]
    assert sandbox.airtable.create_base("Fixed", spec, base_id="appFixedBase00001") == "appFixedBase00001"
    table = http.get("/v0/meta/bases/appFixedBase00001/tables").json()["tables"][0]
    assert (table["id"], table["fields"][0]["id"]) == ("tblFixedTable0001", "fldFixedField0001")
    made = http.post("/v0/meta/bases", json={"name": "Over HTTP", "tables": spec}).json()
    assert made["id"] != "appFixedBase00001" and made["tables"][0]["id"] != "tblFixedTable0001"


def test_record_comments_come_in_pages_of_at_most_100(people: pyairtable.Table, http: httpx.Client) -> None:
    rec = people.create({"Name": "Ann"})
    for n in range(3):
        people.add_comment(rec["id"], f"note {n}")
    url = f"/v0/{people.base.id}/People/{rec['id']}/comments"
    first = http.get(url, params={"pageSize": 2}).json()
    assert [c["text"] for c in first["comments"]] == ["note 2", "note 1"]
    second = http.get(url, params={"pageSize": 2, "offset": first["offset"]}).json()
    assert [c["text"] for c in second["comments"]] == ["note 0"] and second["offset"] is None
    assert http.get(url, params={"pageSize": 101}).status_code == 422
    assert len(people.comments(rec["id"])) == 3


def test_web_api_creates_links_but_not_interface_only_fields(http: httpx.Client, crm: dict[str, Any]) -> None:
    url = f"/v0/meta/bases/{crm['base']}/tables/{PEOPLE}/fields"
    made = http.post(url, json={"name": "Past", "type": "multipleRecordLinks", "options": {"linkedTableId": COMPANIES}})
    assert made.status_code == 200, made.text
    twin = made.json()["options"]["inverseLinkFieldId"]
    companies = http.get(f"/v0/meta/bases/{crm['base']}/tables").json()["tables"][0]
    assert {f["id"]: f["name"] for f in companies["fields"]}[twin] == "People 2"  # "People" is Employer's twin
    by_name = http.post(
        url, json={"name": "X", "type": "multipleRecordLinks", "options": {"linkedTableId": "Companies"}}
    )
    assert by_name.status_code == 422  # a table ID, not a name
    for type_, options in [
        ("count", {"recordLinkFieldId": "Buddy"}),
        ("multipleLookupValues", {"recordLinkFieldId": "Buddy", "fieldIdInLinkedTable": "Int"}),
        ("rollup", {"recordLinkFieldId": "Buddy", "fieldIdInLinkedTable": "Int"}),
        ("autoNumber", {}),
        ("button", {"label": "Go"}),
    ]:
        refused = http.post(url, json={"name": f"New {type_}", "type": type_, "options": options})
        assert refused.status_code == 422 and refused.json()["error"]["type"] == "UNSUPPORTED_FIELD_TYPE_FOR_CREATE"
    people = http.get(f"/v0/meta/bases/{crm['base']}/tables").json()["tables"][1]
    rollup = next(f for f in people["fields"] if f["name"] == "Buddy Sum")
    assert "formula" not in rollup["options"]  # Airtable's metadata does not say how a rollup aggregates
