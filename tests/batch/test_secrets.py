"""No secret anywhere: canary values for every secret setting, a passing batch that harvests through the sandbox
and one where the sandbox answers 401; the workspace, the logs and the --json outputs never contain a canary."""

from __future__ import annotations

from pathlib import Path

from leadkit.config import SECRET_SETTINGS
from leadkit_sandbox.server import Sandbox

from .conftest import Env

CANARIES = {name.upper(): f"tokCanary{name.replace('_', '')}{'7' * 12}" for name in SECRET_SETTINGS}


def leaks(texts: list[str], root: Path) -> list[str]:
    found = []
    for canary in CANARIES.values():
        found += [f"output #{i}" for i, text in enumerate(texts) if canary in text]
        for path in root.rglob("*"):
            if path.is_file() and canary.encode() in path.read_bytes():
                found.append(str(path))
    return found


def test_no_canary_in_workspace_logs_or_json_for_a_passing_and_a_401_batch(batch_env: Env) -> None:
    outputs: list[str] = []
    with Sandbox(tokens=[CANARIES["APIFY_TOKEN"]], rate_limit=0) as sandbox:
        sandbox.apify.run_duration_s = 0.05
        env = {**CANARIES, "APIFY_API_URL": sandbox.apify_url}
        ok = batch_env.cli("batch", "--clients", "Acme-Co,Hooli", "--json", extra=env)
        outputs += [ok.stdout, ok.stderr]
        assert ok.returncode == 0, ok.stderr
        assert '"posts_harvested"' in ok.stdout  # it did harvest, with the canary as its token

        sandbox.add_fault(service="apify", mode="json_401", times=-1)
        denied = batch_env.cli("batch", "--clients", "Acme-Co,Hooli", "--json", extra=env)
        outputs += [denied.stdout, denied.stderr]
        assert denied.returncode == 2, denied.stderr
        assert "401" in denied.stderr or "token" in denied.stderr.lower()

        sandbox.clear_faults()
        sandbox.add_fault(service="apify", mode="json_401", path="/acts/", times=-1)  # 401 inside the kernels
        mid = batch_env.cli("batch", "--clients", "Globex,Hooli", "--json", extra=env)
        outputs += [mid.stdout, mid.stderr]
        assert mid.returncode == 1, mid.stderr
        shown = batch_env.cli("runs", "--json", extra=env)
        outputs += [shown.stdout, shown.stderr]
    assert leaks(outputs, batch_env.ws.home) == []
