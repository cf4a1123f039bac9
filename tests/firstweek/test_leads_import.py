"""Leads files people have: `LinkedIn URL`, `Profile URL`, `First Name` + `Last Name`, a file with only the URL,
and one file for several clients (a client_id column), through the real command line; all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadkit.cli import run
from leadkit.workspace import Workspace


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def leads_of(ws: Workspace, client_id: str) -> dict[str, tuple[str, str]]:
    base = ws.store.lead_base(ws.store.get_client(client_id))
    return {lead.profile_url: (lead.name, lead.company) for lead in base.list_leads()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "LinkedIn URL,First Name,Last Name,Company Name\n"
            "https://www.linkedin.com/in/jane-roe-fw/,Jane,Roe,Vandelay\n",
            ("Jane Roe", "Vandelay"),
        ),
        ("Profile URL;Name\nhttps://www.linkedin.com/in/jane-roe-fw/;Jane Roe\n", ("Jane Roe", "")),
        ("profile_url\nhttps://www.linkedin.com/in/jane-roe-fw/\n", ("", "")),
    ],
)
def test_common_headers_are_read(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: tuple[str, str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(text)
    code, out, err = cli(capsys, "leads", "import", "Globex", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["created"] == 1
    assert leads_of(workspace, "Globex")["https://www.linkedin.com/in/jane-roe-fw/"] == expected


def test_one_file_for_several_clients(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "client_id,LinkedIn URL,Name\n"
        "Globex,https://www.linkedin.com/in/ann-fw/,Ann\n"
        "Initech,https://www.linkedin.com/in/bob-fw/,Bob\n"
        "Initech,https://www.linkedin.com/company/initech/,Not a person\n"
    )
    code, out, err = cli(capsys, "leads", "import", str(path))
    assert code == 0, err
    assert out.startswith("2 lead(s) created, 0 already there, 1 skipped (2 clients)")
    assert "https://www.linkedin.com/in/ann-fw/" in leads_of(workspace, "Globex")
    assert "https://www.linkedin.com/in/bob-fw/" in leads_of(workspace, "Initech")
    assert "https://www.linkedin.com/in/bob-fw/" not in leads_of(workspace, "Globex")
    assert "company page" in err


def test_a_file_naming_an_unknown_client_imports_nothing(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "client_id,profile_url\nGlobex,https://www.linkedin.com/in/ann-fw/\nNobody,https://www.linkedin.com/in/x-fw/\n"
    )
    before = leads_of(workspace, "Globex")
    code, _, err = cli(capsys, "leads", "import", str(path))
    assert code == 2 and "line 3: no client 'Nobody'" in err and "nothing was imported" in err
    assert leads_of(workspace, "Globex") == before
    no_client = tmp_path / "plain.csv"
    no_client.write_text("profile_url\nhttps://www.linkedin.com/in/ann-fw/\n")
    code, _, err = cli(capsys, "leads", "import", str(no_client))
    assert code == 2 and "no client_id column and no CLIENT_ID" in err
    assert leads_of(workspace, "Globex") == before
