"""The Airtable sandbox driven by pyairtable itself (and raw httpx where pyairtable hides the wire)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pyairtable
import pytest
from pyairtable import formulas as F
from requests import HTTPError

from leadkit_sandbox.server import Sandbox


def error_of(exc: HTTPError) -> dict:
    assert exc.response is not None
    return exc.response.json()["error"]


# ---------------------------------------------------------------------------------------- records


def test_create_and_get_round_trip(table: pyairtable.Table) -> None:
    rec = table.create({"Name": "Ada", "Score": 3, "Status": "New", "Active": True, "Notes": ""})
    assert rec["id"].startswith("rec") and len(rec["id"]) == 17
    assert rec["createdTime"].endswith("Z")
    # Empty fields are omitted, as Airtable does.
    assert rec["fields"] == {"Name": "Ada", "Score": 3, "Status": "New", "Active": True}
    assert table.get(rec["id"]) == rec


def test_batch_create_pages_and_max_records(table: pyairtable.Table) -> None:
    table.batch_create([{"Name": f"lead-{i:03d}", "Score": i} for i in range(235)])
    pages = list(table.iterate(page_size=100))
    assert [len(p) for p in pages] == [100, 100, 35]
    names = [r["fields"]["Name"] for page in pages for r in page]
    assert names == [f"lead-{i:03d}" for i in range(235)]
    assert len(table.all(max_records=150, page_size=40)) == 150
    assert len(table.all(max_records=7)) == 7


def test_list_fields_and_sort(table: pyairtable.Table) -> None:
    table.batch_create(
        [
            {"Name": "b", "Score": 2, "Notes": "x"},
            {"Name": "a", "Score": 2, "Notes": "y"},
            {"Name": "c", "Score": 9},
            {"Name": "d"},
        ]
    )
    recs = table.all(sort=["-Score", "Name"], fields=["Name", "Score"])
    assert [r["fields"] for r in recs] == [
        {"Name": "c", "Score": 9},
        {"Name": "a", "Score": 2},
        {"Name": "b", "Score": 2},
        {"Name": "d"},
    ]
    assert [r["fields"]["Name"] for r in table.all(sort=["Score"])] == ["d", "b", "a", "c"]


def test_list_parameters_rejected(http: httpx.Client, base_id: str, table: pyairtable.Table) -> None:
    bad = http.get(f"/v0/{base_id}/Leads", params={"pageSize": 101})
    assert bad.status_code == 422 and "pageSize" in bad.json()["error"]["message"]
    unknown = http.get(f"/v0/{base_id}/Leads", params={"fields[]": "Nope"})
    assert unknown.status_code == 422
    assert unknown.json() == {"error": {"type": "UNKNOWN_FIELD_NAME", "message": 'Unknown field name: "Nope"'}}
    offset = http.get(f"/v0/{base_id}/Leads", params={"offset": "garbage"})
    assert offset.status_code == 422
    assert offset.json()["error"]["type"] == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"


def test_view_is_ignored_and_trailing_slash_tolerated(http: httpx.Client, base_id: str, table) -> None:
    table.create({"Name": "Ada"})
    resp = http.get(f"/v0/{base_id}/Leads/", params={"view": "Grid view"})
    assert resp.status_code == 200
    assert [r["fields"]["Name"] for r in resp.json()["records"]] == ["Ada"]


def test_table_by_id_and_encoded_name(http: httpx.Client, api: pyairtable.Api, base_id: str) -> None:
    schema = api.base(base_id).schema()
    table_id = schema.table("Leads").id
    assert table_id.startswith("tbl") and len(table_id) == 17
    api.table(base_id, table_id).create({"Name": "by id"})
    resp = http.get(f"/v0/{base_id}/{quote('Leads')}")
    assert [r["fields"]["Name"] for r in resp.json()["records"]] == ["by id"]


def test_return_fields_by_field_id(table: pyairtable.Table, api: pyairtable.Api, base_id: str) -> None:
    rec = table.create({"Name": "Ada"})
    name_id = api.base(base_id).schema().table("Leads").field("Name").id
    assert table.get(rec["id"], use_field_ids=True)["fields"] == {name_id: "Ada"}
    assert table.all(use_field_ids=True)[0]["fields"] == {name_id: "Ada"}
    # Writes accept field IDs as keys too.
    assert table.update(rec["id"], {name_id: "Bea"})["fields"]["Name"] == "Bea"


def test_list_records_post_for_long_formulas(table: pyairtable.Table) -> None:
    table.batch_create([{"Name": "keep"}, {"Name": "drop"}])
    # A formula long enough to push the URL past 16 000 characters makes pyairtable POST listRecords.
    long_or = F.OR(*[F.EQ(F.Field("Name"), f"nobody-{i:05d}") for i in range(900)], F.EQ(F.Field("Name"), "keep"))
    assert len(str(long_or)) > 16000
    recs = table.all(formula=long_or, fields=["Name"], sort=["Name"])
    assert [r["fields"]["Name"] for r in recs] == ["keep"]


def test_list_records_post_rejects_unknown_parameters(http: httpx.Client, base_id: str) -> None:
    resp = http.post(f"/v0/{base_id}/Leads/listRecords", json={"pageSize": 5, "bogus": 1})
    assert resp.status_code == 422 and "bogus" in resp.json()["error"]["message"]


def test_create_limits(http: httpx.Client, base_id: str) -> None:
    eleven = {"records": [{"fields": {"Name": str(i)}} for i in range(11)]}
    resp = http.post(f"/v0/{base_id}/Leads", json=eleven)
    assert resp.status_code == 422 and resp.json()["error"]["type"] == "INVALID_RECORDS"
    assert http.post(f"/v0/{base_id}/Leads", json={"records": []}).status_code == 422
    assert http.get(f"/v0/{base_id}/Leads").json() == {"records": []}


def test_update_patch_put_and_missing_id(table: pyairtable.Table, http: httpx.Client, base_id: str) -> None:
    a = table.create({"Name": "a", "Score": 1, "Notes": "keep me"})
    b = table.create({"Name": "b", "Score": 2})
    patched = table.batch_update([{"id": a["id"], "fields": {"Score": 10}}])
    assert patched[0]["fields"] == {"Name": "a", "Score": 10, "Notes": "keep me"}
    replaced = table.batch_update([{"id": b["id"], "fields": {"Notes": "only"}}], replace=True)
    assert replaced[0]["fields"] == {"Notes": "only"}
    # One unknown ID fails the whole request; nothing is changed.
    resp = http.patch(
        f"/v0/{base_id}/Leads",
        json={"records": [{"id": a["id"], "fields": {"Score": 99}}, {"id": "recDoesNotExist01", "fields": {}}]},
    )
    assert resp.status_code == 404
    assert resp.json() == {"error": {"type": "MODEL_ID_NOT_FOUND", "message": "Record not found"}}
    assert table.get(a["id"])["fields"]["Score"] == 10
    no_id = http.patch(f"/v0/{base_id}/Leads", json={"records": [{"fields": {"Score": 1}}]})
    assert no_id.status_code == 422


def test_upsert_creates_updates_and_rejects_several_matches(table: pyairtable.Table) -> None:
    first = table.batch_upsert(
        [{"fields": {"Client ID": "Acme-Co", "Score": 1}}, {"fields": {"Client ID": "Globex", "Score": 2}}],
        key_fields=["Client ID"],
    )
    assert len(first["createdRecords"]) == 2 and first["updatedRecords"] == []
    second = table.batch_upsert(
        [{"fields": {"Client ID": "Acme-Co", "Score": 5}}, {"fields": {"Client ID": "Initech", "Score": 3}}],
        key_fields=["Client ID"],
    )
    assert second["updatedRecords"] == [first["createdRecords"][0]]
    assert len(second["createdRecords"]) == 1
    by_client = {r["fields"]["Client ID"]: r["fields"].get("Score") for r in table.all()}
    assert by_client == {"Acme-Co": 5, "Globex": 2, "Initech": 3}

    table.create({"Client ID": "Globex", "Score": 7})  # now two records match Globex
    with pytest.raises(HTTPError) as info:
        table.batch_upsert(
            [{"fields": {"Client ID": "Umbrella"}}, {"fields": {"Client ID": "Globex", "Score": 0}}],
            key_fields=["Client ID"],
        )
    assert info.value.response.status_code == 422
    assert "2 records match" in error_of(info.value)["message"]
    # The failed request created nothing, not even its first record.
    assert [r for r in table.all() if r["fields"].get("Client ID") == "Umbrella"] == []


def test_upsert_with_several_merge_fields_and_replace(table: pyairtable.Table) -> None:
    table.create({"Client ID": "Acme-Co", "Name": "x", "Score": 1, "Notes": "old"})
    table.create({"Client ID": "Acme-Co", "Name": "y", "Score": 2})
    out = table.batch_upsert(
        [{"fields": {"Client ID": "Acme-Co", "Name": "x", "Score": 3}}], key_fields=["Client ID", "Name"], replace=True
    )
    assert len(out["updatedRecords"]) == 1
    assert out["records"][0]["fields"] == {"Client ID": "Acme-Co", "Name": "x", "Score": 3}


def test_upsert_rejects_duplicate_keys_and_missing_merge_field(http: httpx.Client, base_id: str) -> None:
    dup = {
        "records": [{"fields": {"Client ID": "A"}}, {"fields": {"Client ID": "A"}}],
        "performUpsert": {"fieldsToMergeOn": ["Client ID"]},
    }
    assert http.patch(f"/v0/{base_id}/Leads", json=dup).status_code == 422
    missing = {"records": [{"fields": {"Name": "A"}}], "performUpsert": {"fieldsToMergeOn": ["Client ID"]}}
    assert http.patch(f"/v0/{base_id}/Leads", json=missing).status_code == 422
    unknown = {"records": [{"fields": {"Name": "A"}}], "performUpsert": {"fieldsToMergeOn": ["Nope"]}}
    resp = http.patch(f"/v0/{base_id}/Leads", json=unknown)
    assert resp.status_code == 422 and resp.json()["error"]["type"] == "UNKNOWN_FIELD_NAME"
    assert http.get(f"/v0/{base_id}/Leads").json() == {"records": []}


def test_batch_delete_and_limits(table: pyairtable.Table, http: httpx.Client, base_id: str) -> None:
    ids = [r["id"] for r in table.batch_create([{"Name": str(i)} for i in range(12)])]
    deleted = table.batch_delete(ids[:11])  # pyairtable sends two requests of 10 and 1
    assert [d["id"] for d in deleted] == ids[:11] and all(d["deleted"] for d in deleted)
    assert [r["id"] for r in table.all()] == [ids[11]]
    resp = http.delete(f"/v0/{base_id}/Leads", params={"records[]": [ids[11], "recDoesNotExist01"]})
    assert resp.status_code == 404
    assert [r["id"] for r in table.all()] == [ids[11]]
    too_many = http.delete(f"/v0/{base_id}/Leads", params={"records[]": [ids[11]] * 11})
    assert too_many.status_code == 422


def test_single_record_routes(table: pyairtable.Table, http: httpx.Client, base_id: str) -> None:
    rec = table.create({"Name": "Ada", "Score": 1, "Notes": "n"})
    assert table.update(rec["id"], {"Score": 2})["fields"] == {"Name": "Ada", "Score": 2, "Notes": "n"}
    assert table.update(rec["id"], {"Name": "Bea"}, replace=True)["fields"] == {"Name": "Bea"}
    assert table.delete(rec["id"]) == {"id": rec["id"], "deleted": True}
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        kwargs = {"json": {"fields": {}}} if method in ("PATCH", "PUT") else {}
        resp = http.request(method, f"/v0/{base_id}/Leads/{rec['id']}", **kwargs)
        assert resp.status_code == 404, method
        assert resp.json() == {"error": {"type": "MODEL_ID_NOT_FOUND", "message": "Record not found"}}


# ---------------------------------------------------------------------------------- field types


def test_select_option_needs_typecast(table: pyairtable.Table, api: pyairtable.Api, base_id: str) -> None:
    with pytest.raises(HTTPError) as info:
        table.create({"Name": "x", "Status": "Archived"})
    assert info.value.response.status_code == 422
    assert error_of(info.value) == {
        "type": "INVALID_MULTIPLE_CHOICE_OPTIONS",
        "message": 'Insufficient permissions to create new select option ""Archived""',
    }
    assert table.all() == []
    rec = table.create({"Name": "x", "Status": "Archived"}, typecast=True)
    assert rec["fields"]["Status"] == "Archived"
    choices = [c.name for c in api.base(base_id).schema().table("Leads").field("Status").options.choices]
    assert choices == ["New", "Pending", "Done", "Archived"]
    assert table.create({"Status": "Archived"})["fields"] == {"Status": "Archived"}


def test_unknown_field_and_wrong_types(table: pyairtable.Table) -> None:
    with pytest.raises(HTTPError) as info:
        table.create({"Nmae": "typo"})
    assert error_of(info.value) == {"type": "UNKNOWN_FIELD_NAME", "message": 'Unknown field name: "Nmae"'}
    for fields in ({"Score": "three"}, {"Active": "yes"}, {"Last Run": "yesterday"}, {"Name": 5}):
        with pytest.raises(HTTPError) as info:
            table.create(fields)
        assert info.value.response.status_code == 422, fields
        assert error_of(info.value)["type"] == "INVALID_VALUE_FOR_COLUMN"
    assert table.all() == []


def test_typecast_converts_values(table: pyairtable.Table) -> None:
    rec = table.create({"Score": "42", "Cost": "1.234", "Name": 7, "Active": "true"}, typecast=True)
    assert rec["fields"] == {"Score": 42, "Cost": 1.23, "Name": "7", "Active": True}


def test_dates_are_normalised(table: pyairtable.Table) -> None:
    rec = table.create({"Last Run": "2025-09-25T20:18:45+02:00", "Day": "2025-09-25"})
    assert rec["fields"] == {"Last Run": "2025-09-25T18:18:45.000Z", "Day": "2025-09-25"}


def test_formula_field_is_computed_and_read_only(api: pyairtable.Api, base_id: str) -> None:
    table = api.table(base_id, "Leads")
    table.create_field("Label", "formula", options={"formula": "{Name} & '-' & {Score}"})
    rec = table.create({"Name": "Ada", "Score": 3})
    assert rec["fields"]["Label"] == "Ada-3"
    assert [r["id"] for r in table.all(formula="{Label}='Ada-3'")] == [rec["id"]]
    with pytest.raises(HTTPError) as info:
        table.update(rec["id"], {"Label": "x"})
    assert error_of(info.value)["type"] == "INVALID_VALUE_FOR_COLUMN"


# ------------------------------------------------------------------------------------------ meta


def test_meta_whoami_bases_tables_fields(api: pyairtable.Api, sandbox: Sandbox) -> None:
    assert api.whoami()["id"].startswith("usr")
    ws = api.workspace("wspSandbox0000001")
    base = ws.create_base("Globex", [{"name": "Leads", "fields": [{"name": "Name", "type": "singleLineText"}]}])
    assert base.id.startswith("app") and len(base.id) == 17
    assert base.id in [b.id for b in api.bases(force=True)]
    runs = base.create_table(
        "Runs",
        [
            {"name": "Run ID", "type": "singleLineText"},
            {"name": "Status", "type": "singleSelect", "options": {"choices": [{"name": "Running"}]}},
        ],
    )
    runs.create_field("Posts", "number", options={"precision": 0})
    schema = base.schema(force=True)
    assert [t.name for t in schema.tables] == ["Leads", "Runs"]
    assert [f.name for f in schema.table("Runs").fields] == ["Run ID", "Status", "Posts"]
    assert schema.table("Runs").primary_field_id == schema.table("Runs").fields[0].id
    assert runs.create({"Run ID": "250925-201845-Acme-Co", "Posts": 4})["fields"]["Posts"] == 4


def test_meta_rejects_bad_definitions(http: httpx.Client, base_id: str) -> None:
    bad_type = http.post(
        f"/v0/meta/bases/{base_id}/tables", json={"name": "T", "fields": [{"name": "X", "type": "hologram"}]}
    )
    assert bad_type.status_code == 422 and "hologram" in bad_type.json()["error"]["message"]
    dup = http.post(
        f"/v0/meta/bases/{base_id}/tables", json={"name": "Leads", "fields": [{"name": "X", "type": "url"}]}
    )
    assert dup.status_code == 422
    dup_field = http.post(f"/v0/meta/bases/{base_id}/tables/Leads/fields", json={"name": "Name", "type": "email"})
    assert dup_field.status_code == 422


# ---------------------------------------------------------------------------------- auth and errors


def test_missing_and_unknown_token_get_401(sandbox: Sandbox, base_id: str) -> None:
    expected = {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}}
    with httpx.Client(base_url=sandbox.airtable_url) as client:
        for headers in ({}, {"Authorization": "Bearer tokNotAKnownToken"}):
            for path in (f"/v0/{base_id}/Leads", "/v0/meta/whoami"):
                resp = client.get(path, headers=headers)
                assert resp.status_code == 401, (headers, path)
                assert resp.json() == expected
    with pytest.raises(HTTPError) as info:
        pyairtable.Api("tokNotAKnownToken", endpoint_url=sandbox.airtable_url).table(base_id, "Leads").all()
    assert info.value.response.status_code == 401


def test_limited_token_gets_403_outside_its_bases(sandbox: Sandbox, base_id: str, limited_token: str) -> None:
    other = sandbox.airtable.create_base("Initech", [{"name": "Leads", "fields": [{"name": "Name", "type": "url"}]}])
    sandbox.airtable.grant(limited_token, other)
    limited = pyairtable.Api(limited_token, endpoint_url=sandbox.airtable_url, timeout=(5, 30))
    assert limited.table(other, "Leads").all() == []
    with pytest.raises(HTTPError) as info:
        limited.table(base_id, "Leads").all()
    assert info.value.response.status_code == 403
    assert error_of(info.value)["type"] == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"
    assert [b.id for b in limited.bases(force=True)] == [other]


def test_unknown_base_table_record_and_route(http: httpx.Client, base_id: str) -> None:
    for path in ("/v0/appDoesNotExist000/Leads", f"/v0/{base_id}/NoSuchTable"):
        resp = http.get(path)
        assert resp.status_code == 403, path
        assert resp.json()["error"]["type"] == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"
    rec = http.get(f"/v0/{base_id}/Leads/recDoesNotExist01")
    assert rec.status_code == 404
    assert rec.json() == {"error": {"type": "MODEL_ID_NOT_FOUND", "message": "Record not found"}}
    for path in ("/v1/whatever", "/", f"/v0/{base_id}/Leads/recDoesNotExist01/extra", "/v0/meta/nothing"):
        resp = http.get(path)
        assert resp.status_code == 404, path
        assert resp.json() == {"error": "NOT_FOUND"}


def test_invalid_json_gets_400(http: httpx.Client, base_id: str) -> None:
    resp = http.post(f"/v0/{base_id}/Leads", content=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "INVALID_REQUEST_UNKNOWN"


def test_token_in_query_string_and_keep_alive(sandbox: Sandbox, base_id: str, token: str) -> None:
    with httpx.Client(base_url=sandbox.airtable_url) as client:
        for _ in range(20):
            assert client.get(f"/v0/{base_id}/Leads", params={"token": token}).status_code == 200
    # Twenty requests over one pooled keep-alive connection all answered.
    assert sandbox.state.stats.count(base=base_id) == 20


# ------------------------------------------------------------------------------------ rate limit


def test_rate_limit_per_base_with_penalty(sandbox: Sandbox, http: httpx.Client, base_id: str) -> None:
    other = sandbox.airtable.create_base("Globex", [{"name": "Leads", "fields": [{"name": "Name", "type": "url"}]}])
    sandbox.set_rate_limit(5, 0.6)
    assert [http.get(f"/v0/{base_id}/Leads").status_code for _ in range(5)] == [200] * 5
    blocked = http.get(f"/v0/{base_id}/Leads")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["message"] == "Rate limit exceeded. Please try again later"
    assert blocked.headers["Retry-After"] == "1"
    # Every request to that base is refused during the penalty; other bases and whoami are not.
    assert http.get(f"/v0/{base_id}/Leads").status_code == 429
    assert http.get(f"/v0/{other}/Leads").status_code == 200
    assert http.get("/v0/meta/whoami").status_code == 200
    time.sleep(0.7)
    assert http.get(f"/v0/{base_id}/Leads").status_code == 200


def test_pyairtable_waits_out_a_short_penalty(sandbox: Sandbox, api: pyairtable.Api, base_id: str) -> None:
    sandbox.set_rate_limit(5, 0.3)
    table = api.table(base_id, "Leads")
    started = time.monotonic()
    for i in range(7):  # the 6th is refused; urllib3 honours Retry-After (1 s) and retries
        table.create({"Name": f"r{i}"})
    assert time.monotonic() - started >= 0.9
    assert len(table.all()) == 7
    assert sandbox.stats()["by_status"].get("429", 0) >= 1


def test_rate_limit_off(sandbox: Sandbox, http: httpx.Client, base_id: str) -> None:
    sandbox.set_rate_limit(0)
    assert {http.get(f"/v0/{base_id}/Leads").status_code for _ in range(30)} == {200}


# ------------------------------------------------------------------------------- foreground server


def test_serve_forever_prints_urls_and_a_generated_token() -> None:
    code = "from leadkit_sandbox.server import serve_forever; serve_forever(airtable_port=0, apify_port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        airtable_url = re.search(r"Airtable sandbox: (http://127\.0\.0\.1:\d+)", lines[0])
        token = re.search(r"Token \(generated\): (tok[0-9a-f]{32})", lines[3])
        assert airtable_url and token, lines
        assert "Rate limit:       5 req/s per base, 30 s penalty" in lines[2]
        resp = httpx.get(
            f"{airtable_url.group(1)}/v0/meta/whoami", headers={"Authorization": f"Bearer {token.group(1)}"}
        )
        assert resp.status_code == 200 and resp.json()["id"].startswith("usr")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
