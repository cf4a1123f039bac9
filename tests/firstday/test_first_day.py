"""A real agency's first day, without the demo: init, settings precedence, clients from a CSV, changes that touch
only what is given, pause and remove, leads as Excel writes them, harvested posts out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadkit.cli import run
from leadkit.config import get_settings
from leadkit.workspace import Workspace


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("LEADKIT_STORE", "APIFY_TOKEN", "AIRTABLE_API_KEY", "APIFY_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "agency"
    monkeypatch.setenv("LEADKIT_HOME", str(home))
    return home


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_no_workspace_names_init_first(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "clients")
    assert code == 2 and "no leadkit workspace" in err and err.split("hint: ")[1].startswith("Run `leadkit init`")
    assert not home.exists()


def test_init_creates_an_empty_workspace_with_a_template(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "init")
    assert code == 0 and "next steps" in out and "leadkit clients import" in out
    assert (home / "leadkit.sqlite").is_file()
    env = (home / ".env").read_text()
    assert "# APIFY_TOKEN=" in env and "# AIRTABLE_API_KEY=" in env and "LEADKIT_HOME" not in env
    code, out, _ = cli(capsys, "clients", "--json")
    assert code == 0 and json.loads(out) == []
    before = (home / ".env").read_text()
    code, out, _ = cli(capsys, "init")  # again: nothing changes
    assert code == 0 and "already a leadkit workspace" in out and (home / ".env").read_text() == before


def test_init_refuses_a_folder_with_other_files(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home.mkdir()
    (home / "thesis.docx").write_text("mine")
    code, _, err = cli(capsys, "init")
    assert code == 2 and "refusing" in err
    assert sorted(p.name for p in home.iterdir()) == ["thesis.docx"]


def test_settings_precedence(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home.mkdir()
    (home / ".env").write_text("APIFY_ACTOR_ID=from-workspace\nAPIFY_TIMEOUT_S=11\nAPIFY_MAX_WAIT_S=12\n")
    (tmp_path / ".env").write_text("APIFY_ACTOR_ID=from-cwd\nAPIFY_TIMEOUT_S=21\n")
    monkeypatch.setenv("APIFY_ACTOR_ID", "from-env")
    settings = get_settings()
    assert settings.apify_actor_id == "from-env"
    assert settings.apify_timeout_s == 21  # ./.env beats the workspace's
    assert settings.apify_max_wait_s == 12  # the workspace's .env fills in the rest


def test_a_bad_setting_is_a_clear_error(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APIFY_TIMEOUT_S", "soon")
    code, _, err = cli(capsys, "runs")
    assert code == 2 and "APIFY_TIMEOUT_S='soon'" in err


CLIENTS_CSV = """Client ID;Name;Status;Service Level;Post Access;Daily Target;batch_size;MAX_BATCHES;stream;base
Acme-Co;Acme Corporation;active;2;Yes;30;5;3;1;
Globex;Globex Corp;Paused;3;no;10;;;2;appAAAAAAAAAAAAAA
Initech;Initech;ACTIVE;1;1;0;;;;
"""


def test_clients_import_update_and_reimport(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "init")[0] == 0
    path = tmp_path / "clients.csv"
    path.write_text(CLIENTS_CSV)
    code, out, _ = cli(capsys, "clients", "import", str(path))
    assert code == 0 and "3 client(s) added, 0 updated" in out, out
    code, out, _ = cli(capsys, "clients", "--json")
    clients = {c["client_id"]: c for c in json.loads(out)}
    assert clients["Acme-Co"] | {} == {
        "client_id": "Acme-Co",
        "name": "Acme Corporation",
        "status": "Active",
        "service_level": 2,
        "post_access": "yes",
        "daily_target": 30,
        "batch_size": 5,
        "max_batches": 3,
        "stream": 1,
        "base_id": None,
        **{k: v for k, v in clients["Acme-Co"].items() if k not in CORE},
    }
    assert clients["Globex"]["status"] == "Paused" and clients["Globex"]["base_id"] == "appAAAAAAAAAAAAAA"
    assert clients["Globex"]["post_access"] == "no" and clients["Initech"]["post_access"] == "yes"
    assert clients["Globex"]["batch_size"] == 20  # blank: the default for a new client

    path.write_text("client_id,daily_target\nAcme-Co,45\nGlobex,10\n")
    code, out, _ = cli(capsys, "clients", "import", str(path))
    assert code == 0 and "0 client(s) added, 1 updated, 1 unchanged" in out, out
    acme = {c["client_id"]: c for c in json.loads(cli(capsys, "clients", "--json")[1])}["Acme-Co"]
    assert acme["daily_target"] == 45 and acme["batch_size"] == 5 and acme["name"] == "Acme Corporation"


CORE = {"client_id", "name", "status", "service_level", "post_access", "daily_target", "batch_size", "max_batches"}
CORE |= {"stream", "base_id"}


def test_clients_import_is_all_or_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "init")[0] == 0
    path = tmp_path / "clients.csv"
    path.write_text(
        "client_id,name,post_access,daily_target,base\n"
        "Acme-Co,Acme,yes,30,\n"
        "Globex,Globex,maybe,10,\n"
        "../etc,Bad,yes,1,\n"
        "Initech,Initech,yes,-3,appNOPE\n"
        "Hooli,,yes,1,\n"
    )
    code, _, err = cli(capsys, "clients", "import", str(path))
    assert code == 2 and "nothing was imported" in err
    assert "row 3: post_access 'maybe' is not accepted; use yes or no" in err
    assert "row 4: client_id '../etc' is not accepted" in err
    assert "row 5: daily_target '-3' is not accepted; use a whole number from 0" in err
    assert "row 5: base 'appNOPE' is not accepted; use an Airtable base ID" in err
    assert "row 6: name is required for the new client 'Hooli'" in err
    assert json.loads(cli(capsys, "clients", "--json")[1]) == []
    path.write_text("client_id,name,colour\nAcme-Co,Acme,red\n")
    code, _, err = cli(capsys, "clients", "import", str(path))
    assert code == 2 and "colour" in err and "accepted: client_id, name" in err


def test_set_add_pause_activate_remove(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from leadkit.models import Client

    workspace.store.save_client(
        Client(
            "Vandelay",
            "Vandelay",
            service_level=3,
            post_access=True,
            daily_target=7,
            batch_size=4,
            max_batches=2,
            stream=2,
            base_id="appBBBBBBBBBBBBBB",
        )
    )
    code, out, _ = cli(capsys, "clients", "add", "Vandelay", "--name", "Vandelay Industries")
    assert code == 0 and "updated client Vandelay: name=Vandelay Industries" in out
    client = workspace.store.get_client("Vandelay")
    assert (client.name, client.service_level, client.daily_target, client.base_id) == (
        "Vandelay Industries",
        3,
        7,
        "appBBBBBBBBBBBBBB",
    )
    assert cli(capsys, "clients", "set", "Vandelay", "--daily-target", "12", "--post-access", "NO")[0] == 0
    client = workspace.store.get_client("Vandelay")
    assert (client.daily_target, client.post_access, client.batch_size, client.stream) == (12, False, 4, 2)
    code, _, err = cli(capsys, "clients", "set", "Vandelay", "--batch-size", "0")
    assert code == 2 and "--batch-size '0' is not accepted; use a whole number from 1" in err
    assert cli(capsys, "clients", "set", "Nobody", "--daily-target", "1")[0] == 2  # not found
    assert cli(capsys, "clients", "pause", "Vandelay")[0] == 0
    assert workspace.store.get_client("Vandelay").status == "Paused"
    assert cli(capsys, "clients", "activate", "Vandelay")[0] == 0
    assert workspace.store.get_client("Vandelay").status == "Active"

    run_ = workspace.records.start_run()
    from leadkit.models import Source
    from leadkit.runids import RunId

    workspace.records.open_many(RunId.parse(run_.run_id), ["Acme-Co"], Source.BATCH)
    code, _, err = cli(capsys, "clients", "remove", "Acme-Co")
    assert code == 2 and "has runs" in err and "--keep-records" in err
    assert workspace.store.get_client("Acme-Co").status == "Active"
    assert cli(capsys, "clients", "remove", "Acme-Co", "--keep-records")[0] == 0
    listed = [c["client_id"] for c in json.loads(cli(capsys, "clients", "--json")[1])]
    assert "Acme-Co" not in listed and "Acme-Co" in json.loads(cli(capsys, "clients", "--all", "--json")[1])[0].values()
    assert workspace.records.store.list_client_runs(client_id="Acme-Co")  # its records are kept

    base_file = workspace.home / "bases" / "Globex.sqlite"
    assert base_file.exists()
    assert cli(capsys, "clients", "remove", "Globex")[0] == 0
    assert not base_file.exists() and "Globex" not in [c.client_id for c in workspace.store.list_clients()]


def test_leads_from_excel_cp1252_semicolons(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(
        "Profile URL;Name;Company\r\n"
        "https://www.linkedin.com/in/jose-munoz/;José Muñoz;Café Société\r\n"
        "https://www.linkedin.com/company/globex/;Globex;Globex\r\n"
        "https://www.linkedin.com/in/ann-lee?trk=x;Ann Lee;Initech – EU\r\n".encode("cp1252")
    )
    code, out, err = cli(capsys, "leads", "import", "Globex", str(path))
    assert code == 0 and "2 lead(s) created" in out and "1 skipped" in out
    assert "read as cp1252" in err and "company page" in err
    code, out, _ = cli(capsys, "leads", "list", "Globex")
    assert "José Muñoz" in out and "Café Société" in out and "Initech – EU" in out

    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffprofile_url,NAME , company\nhttps://linkedin.com/in/zoe/,Zoë,Hooli\n".encode())
    code, out, err = cli(capsys, "leads", "import", "Globex", str(bom), "--json")
    assert code == 0 and json.loads(out)["created"] == 1 and json.loads(out)["encoding"] == "utf-8" and not err


def test_leads_export(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from leadkit.models import HarvestStatus

    base = workspace.store.lead_base(workspace.store.get_client("Acme-Co"))
    lead = base.list_leads()[0]
    post = {
        "postUrl": "https://www.linkedin.com/posts/x-activity-1",
        "authorUrl": lead.profile_url,
        "text": "Hi, all",
        "postedAt": "2026-12-01T10:00:00Z",
        "likes": 3,
        "comments": 1,
        "reposts": 0,
        "isRepost": False,
    }
    base.update_leads({lead.lead_id: {"posts": [post], "harvest_status": HarvestStatus.DONE, "posts_found": 1}})
    out_file = tmp_path / "posts.csv"
    code, _, err = cli(capsys, "leads", "export", "Acme-Co", "--output", str(out_file))
    assert code == 0 and "wrote 1 post(s)" in err
    import csv

    rows = list(csv.DictReader(out_file.open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["text"] == "Hi, all" and rows[0]["lead_name"] == lead.name
    code, out, _ = cli(capsys, "leads", "export", "Acme-Co", "--format", "json")
    assert code == 0 and json.loads(out)[0]["post_url"] == post["postUrl"]
    assert cli(capsys, "leads", "export", "Acme-Co", "--format", "xml")[0] == 2


def test_a_first_batch_of_a_fresh_workspace_against_the_sandbox(tmp_path: Path) -> None:
    """init, clients import, leads import, doctor, batch: the README's first day, with the Apify sandbox."""
    import os
    import subprocess
    import sys

    from leadkit_sandbox.server import Sandbox

    home = tmp_path / "agency"
    (tmp_path / "clients.csv").write_text("client_id,name,daily_target,batch_size\nAcme-Co,Acme,10,5\n")
    (tmp_path / "leads.csv").write_text(
        "profile_url,name,company\n"
        + "".join(f"https://www.linkedin.com/in/acme-lead-{n:02d}/,Lead {n},Acme\n" for n in range(1, 4))
    )
    with Sandbox(rate_limit=0) as sandbox:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APIFY_", "AIRTABLE_", "LEADKIT_"))}
        env.update(LEADKIT_HOME=str(home), APIFY_API_URL=sandbox.apify_url, APIFY_TOKEN=sandbox.token)

        def leadkit(*argv: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                [sys.executable, "-m", "leadkit.cli", *argv],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=600,
            )
            assert "Traceback" not in done.stdout + done.stderr, done.stderr
            return done

        assert leadkit("init").returncode == 0
        assert leadkit("clients", "import", "clients.csv").returncode == 0
        assert leadkit("leads", "import", "Acme-Co", "leads.csv").returncode == 0
        doctor = leadkit("doctor")
        assert doctor.returncode == 0, doctor.stdout
        batch = leadkit("batch", "--json")
        assert batch.returncode == 0, batch.stderr[-2000:]
        shown = json.loads(batch.stdout)
        assert shown["status"] == "Completed" and [c["client_id"] for c in shown["clients"]] == ["Acme-Co"]
        assert shown["clients"][0]["metrics"].get("profiles_submitted", 0) == 3


def test_lab_links_to_executed_notebooks(workspace: Workspace, tmp_path: Path) -> None:
    """`leadkit lab` is rooted in the workspace: an executed notebook opens at /lab/tree/<run id>/<client>.ipynb."""
    notebook = workspace.home / "251128-093000" / "Acme Co.ipynb"
    assert workspace.lab_path(notebook) == "251128-093000/Acme Co.ipynb"
    assert workspace.lab_link(notebook) == "/lab/tree/251128-093000/Acme%20Co.ipynb"
    assert workspace.lab_link("251128-093000/Acme-Co.ipynb") == "/lab/tree/251128-093000/Acme-Co.ipynb"
    assert workspace.lab_link(tmp_path / "elsewhere.ipynb") is None
