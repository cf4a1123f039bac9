"""Say it once, on a real SQLite workspace: a failed client's Reason says what its stage did (the Error column
has the upstream's answer, the Hint column the fix: neither is repeated, no markup), and a refused shared
credential is one banner for the Client health view while each client keeps its own reason."""

from __future__ import annotations

from pathlib import Path

from dashboards import client_data as cd
from leadkit.classify import failure_from
from leadkit.config import get_settings
from leadkit.demo import seed
from leadkit.errors import UpstreamError
from leadkit.models import AuthCheck, ClientRunStatus
from leadkit.runids import RunId
from leadkit.workspace import Workspace

BODY = "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
HINT = "The Apify token was refused: set APIFY_TOKEN to a valid API token."


def _workspace(home: Path) -> Workspace:
    settings = get_settings().model_copy(update={"leadkit_home": home, "leadkit_store": ""})
    return Workspace.create(home, settings=settings)


def test_a_failed_clients_reason_says_what_its_stage_did_once(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    try:
        seed(ws.store, 4)
        run = ws.records.start_run()
        (record,) = ws.records.open_many(RunId.parse(run.run_id), ["Globex"], "batch")
        exc = UpstreamError(
            f"Apify answered 404 for http://127.0.0.1:9/v2/acts; the body is not JSON (content type text/html, "
            f"starts with {BODY!r})."
        )
        failure = failure_from(exc, run_id=run.run_id, client_id="Globex", stage="harvest")
        # what the workflow records: the stage, then the failure's whole message (and here its hint too)
        reason = f"stage harvest failed: {failure.message} {failure.hint}"
        ws.records.update(record, status=ClientRunStatus.FAILED, reason=reason, failure=failure)
        ws.records.finish_run(run)
        row = cd.run_clients(ws, run.run_id).clients.iloc[0]
        assert row["Reason"] == "stage harvest failed"
        assert "<" not in row["Error"] and "404 Not Found" in row["Error"]
        assert row["Hint"] == failure.hint and failure.hint not in row["Reason"]
        page = cd.client_page(ws, "Globex")
        assert page.runs.iloc[0]["Reason"] == "stage harvest failed"
    finally:
        ws.close()


def test_a_refused_shared_credential_is_one_banner_and_each_client_keeps_its_reason(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    try:
        seed(ws.store, 8)
        before = cd.health_rows(ws).set_index("Client")
        ws.store.add_auth_checks([AuthCheck("apify", False, "auth", 401, 20.0, HINT)])
        after = cd.health_rows(ws).set_index("Client")
        # no client's verdict changed: Hooli still says its Post Access is off, not "credential refused"
        assert list(after["Severity"]) == list(before["Severity"])
        assert list(after["Why"]) == list(before["Why"])
        assert not after["Why"].str.contains("credential").any()
        assert "Post Access" in after.loc["Hooli", "Next step"]
        banner = cd.credential_banner(cd.failed_credentials(ws))
        assert banner.count("\n") == 0 and "apify credential failed (HTTP 401)" in banner
        assert HINT in banner and "`leadkit auth-check`" in banner
        assert cd.credential_banner({}) == ""
    finally:
        ws.close()
